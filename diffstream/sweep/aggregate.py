"""The sweep's aggregate: per arm (and link share), mean and 95 % confidence interval over
traces and seeds, plus how close each arm comes to the oracle.

**Confidence interval.** Student's t: ``mean ± t(0.975, n-1) · s / sqrt(n)`` with ``s`` the
sample standard deviation (ddof 1), over the arm's finished runs (every trace × seed). It
treats runs as independent draws; runs of one trace under different seeds share the trace,
so with few traces the interval is optimistic about trace-to-trace variation. Runs where a
metric is undefined (no frame shown: no latency; network-only: no quality) are left out of
that metric, and its ``n`` says how many remained. One run gives no interval.

**Share of the oracle's QoE.** QoE is a difference of dB terms and goes negative when
stalls dominate, so a plain ratio ``QoE / QoE_oracle`` is meaningless (it flips sign, and
explodes near zero). We measure the arm's QoE *gain over a baseline* as a share of the
oracle's gain over the same baseline, on paired runs (same trace, share and seed):

    oracle_share = Σ (QoE_arm − QoE_base) / Σ (QoE_oracle − QoE_base)

1 means the arm matches the oracle, 0 means no better than the baseline, below 0 worse.
The baseline is the fixed-budget arm (``report.baseline: auto``: same codec first), the
usual "no adaptation" reference; with ``baseline: none`` it is 0 dB, i.e. the plain ratio
of summed QoE (reported only when the oracle's sum is positive). Summing before dividing
keeps one trace where the oracle barely beats the baseline from dominating. It is left
empty when the denominator is not positive. The paired difference ``QoE_oracle − QoE_arm``
(dB) is reported with its own t interval: that one needs no baseline.

The rows are sorted in the sweep's arm order and every sum runs over runs sorted by id, so
the same finished runs give the same numbers bit for bit, whatever executor ran them and
in whatever order they finished.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from diffstream.sweep.plan import Plan, grid_text

#: (key, column label, format): the metrics the aggregate reports per arm.
METRICS: list[tuple[str, str, str]] = [
    ("qoe", "QoE", "{:.2f}"),
    ("quality", "quality dB", "{:.2f}"),
    ("latency_p95_ms", "p95 ms", "{:.0f}"),
    ("deadline_miss_pct", "miss %", "{:.1f}"),
    ("freezes", "freezes", "{:.1f}"),
    ("utilisation", "util", "{:.3f}"),
    # throughput prediction error (metrics.prediction): mean relative over-/under-estimate
    ("pred_over_err", "over-est", "{:.2f}"),
    ("pred_under_err", "under-est", "{:.2f}"),
]


@dataclass(frozen=True)
class Stat:
    mean: float
    ci95: float  # half-width; NaN with fewer than two values
    n: int

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Stat:
        v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=float)
        if v.size == 0:
            return cls(math.nan, math.nan, 0)
        if v.size == 1:
            return cls(float(v[0]), math.nan, 1)
        half = float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
        return cls(float(v.mean()), half, int(v.size))


@dataclass
class RunRow:
    """One finished run, flattened: grid coordinates plus the numbers the report uses."""

    id: str
    arm: str
    codec: str
    policy: str
    trace: str
    share: float
    seed: int
    values: dict[str, float | None]
    trace_mean_mbps: float | None
    stream_mean_kbps: float | None
    summary: dict[str, Any]


@dataclass
class ArmRow:
    arm: str
    codec: str
    policy: str
    share: float
    runs: int
    failed: int
    stats: dict[str, Stat]
    oracle_share: float = math.nan
    oracle_pairs: int = 0
    oracle_gap: Stat = field(default_factory=lambda: Stat(math.nan, math.nan, 0))
    oracle_ref: str = ""
    baseline_ref: str = ""


@dataclass
class Aggregate:
    rows: list[ArmRow]
    runs: list[RunRow]
    quality_label: str
    planned: int
    missing: int  # planned runs without a successful attempt


def run_rows(plan: Plan, finished: dict[str, dict[str, Any]]) -> list[RunRow]:
    metric = "mean_psnr_db" if plan.qoe_metric == "psnr" else "mean_ssim_db"
    rows = []
    for spec in sorted(plan.runs, key=lambda r: r.id):
        e = finished.get(spec.id)
        if e is None or not e.get("summary"):
            continue
        s = e["summary"]
        p = spec.params
        values = {"qoe": s.get("qoe"), "quality": s.get(metric),
                  "latency_p95_ms": s.get("latency_p95_ms"),
                  "deadline_miss_pct": s.get("deadline_miss_pct"),
                  "freezes": s.get("freezes"),
                  "utilisation": s.get("utilisation"),
                  "pred_over_err": s.get("pred_over_err"),
                  "pred_under_err": s.get("pred_under_err")}
        rows.append(RunRow(spec.id, p["arm"], p["codec"], p["policy"], p["trace"],
                           float(p["share"]), int(p["seed"]), values,
                           e.get("trace_mean_mbps"), e.get("stream_mean_kbps"), s))
    return rows


def _reference(kind: str, setting: str, arm: str, codec: str, arms: dict[str, tuple[str, str]]
               ) -> str:
    """The arm a row is compared with: an explicit label, none, or auto by policy kind."""
    if setting == "none":
        return ""
    if setting != "auto":
        return setting
    same = [a for a, (c, p) in arms.items() if p == kind and c == codec]
    every = [a for a, (_, p) in arms.items() if p == kind]
    if same:
        return same[0]
    return every[0] if len(every) == 1 else ""


def aggregate(plan: Plan, finished: dict[str, dict[str, Any]],
              failed_ids: set[str] | None = None) -> Aggregate:
    """Reduce the finished runs of ``plan`` (id -> results.jsonl entry) to the report."""
    runs = run_rows(plan, finished)
    failed_ids = failed_ids or set()
    arm_info = {r.params["arm"]: (r.params["codec"], r.params["policy"]) for r in plan.runs}
    by_cell: dict[tuple[str, float, str, int], float | None] = {
        (r.arm, r.share, r.trace, r.seed): r.values["qoe"] for r in runs}
    rows = []
    for arm in plan.arms:
        codec, policy = arm_info[arm]
        for share in sorted(plan.shares):
            mine = [r for r in runs if r.arm == arm and r.share == share]
            planned = [s for s in plan.runs
                       if s.params["arm"] == arm and s.params["share"] == share]
            row = ArmRow(arm, codec, policy, share, runs=len(mine),
                         failed=sum(1 for s in planned if s.id in failed_ids),
                         stats={k: Stat.of([r.values[k] for r in mine]) for k, _, _ in METRICS})
            row.oracle_ref = _reference("oracle", plan.sweep.report.oracle, arm, codec, arm_info)
            row.baseline_ref = _reference("fixed", plan.sweep.report.baseline, arm, codec,
                                          arm_info)
            if row.oracle_ref:
                _oracle_share(row, mine, by_cell)
            rows.append(row)
    return Aggregate(rows, runs, "PSNR dB" if plan.qoe_metric == "psnr" else "SSIM dB",
                     planned=len(plan.runs), missing=len(plan.runs) - len(runs))


def _oracle_share(row: ArmRow, mine: list[RunRow],
                  by_cell: dict[tuple[str, float, str, int], float | None]) -> None:
    gains, oracle_gains, gaps = [], [], []
    for r in mine:
        q, qo = r.values["qoe"], by_cell.get((row.oracle_ref, r.share, r.trace, r.seed))
        qb = by_cell.get((row.baseline_ref, r.share, r.trace, r.seed)) if row.baseline_ref else 0.0
        if q is None or qo is None or qb is None:
            continue
        gaps.append(qo - q)
        gains.append(q - qb)
        oracle_gains.append(qo - qb)
    row.oracle_pairs = len(gains)
    row.oracle_gap = Stat.of(gaps)
    denominator = math.fsum(oracle_gains)
    if gains and denominator > 0:
        row.oracle_share = math.fsum(gains) / denominator


# --------------------------------------------------------------------------- outputs
def _g(x: float) -> Any:
    """Six significant digits in CSVs (as summary.csv), empty for undefined values."""
    return "" if x is None or not math.isfinite(x) else float(f"{x:.6g}")


def write_aggregate_csv(path: Path, agg: Aggregate) -> None:
    cols = ["arm", "codec", "policy", "share", "runs", "failed"]
    for key, _, _ in METRICS:
        cols += [f"{key}_mean", f"{key}_ci95", f"{key}_n"]
    cols += ["oracle_share", "oracle_pairs", "oracle_gap_mean", "oracle_gap_ci95", "oracle_ref",
             "baseline_ref"]
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in agg.rows:
            line: list[Any] = [r.arm, r.codec, r.policy, r.share, r.runs, r.failed]
            for key, _, _ in METRICS:
                s = r.stats[key]
                line += [_g(s.mean), _g(s.ci95), s.n]
            line += [_g(r.oracle_share), r.oracle_pairs, _g(r.oracle_gap.mean),
                     _g(r.oracle_gap.ci95), r.oracle_ref, r.baseline_ref]
            w.writerow(line)


def write_runs_csv(path: Path, agg: Aggregate) -> None:
    """Every finished run, one row: the flat table for one's own analysis."""
    from dataclasses import fields

    from diffstream.pipeline.records import ArmSummary

    summary_keys = [f.name for f in fields(ArmSummary) if f.name not in ("arm", "codec", "policy")]
    cols = ["id", "arm", "codec", "policy", "trace", "share", "seed", "trace_mean_mbps",
            "stream_mean_kbps", *summary_keys]
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in agg.runs:
            w.writerow([r.id, r.arm, r.codec, r.policy, r.trace, r.share, r.seed,
                        _g(r.trace_mean_mbps) if r.trace_mean_mbps is not None else "",
                        _g(r.stream_mean_kbps) if r.stream_mean_kbps is not None else "",
                        *[_cell(r.summary.get(k)) for k in summary_keys]])


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    return _g(v) if isinstance(v, float) else v


def _pm(s: Stat, fmt: str) -> str:
    if s.n == 0:
        return "–"
    mean = fmt.format(s.mean)
    return mean if not math.isfinite(s.ci95) else f"{mean} ± {fmt.format(s.ci95)}"


def reference_name(agg: Aggregate) -> str:
    """What the gap column measures against: the reference arms' policy kind when they share
    one (``oracle`` the greedy bound, ``optimal`` the DP optimum), else "reference"."""
    policy = {r.arm: r.policy for r in agg.rows}
    kinds = {policy.get(r.oracle_ref, "") for r in agg.rows if r.oracle_ref}
    return kinds.pop() if len(kinds) == 1 and "" not in kinds else "reference"


def trace_gaps(agg: Aggregate) -> tuple[list[str], list[str], dict[tuple[str, str], float]]:
    """Per trace and arm, the mean paired QoE gap to the arm's reference over shares and
    seeds (the reference's QoE minus the arm's): (traces, arms, {(trace, arm): gap})."""
    ref_of = {r.arm: r.oracle_ref for r in agg.rows if r.oracle_ref}
    qoe = {(r.arm, r.share, r.trace, r.seed): r.values["qoe"] for r in agg.runs}
    cells: dict[tuple[str, str], list[float]] = {}
    for r in agg.runs:
        ref = ref_of.get(r.arm)
        q, qr = r.values["qoe"], qoe.get((ref, r.share, r.trace, r.seed)) if ref else None
        if q is not None and qr is not None and math.isfinite(q) and math.isfinite(qr):
            cells.setdefault((r.trace, r.arm), []).append(qr - q)
    traces = sorted({t for t, _ in cells})
    arms = [r.arm for r in agg.rows if r.arm in ref_of and any((t, r.arm) in cells
                                                                for t in traces)]
    arms = list(dict.fromkeys(arms))
    return traces, arms, {k: math.fsum(v) / len(v) for k, v in cells.items()}


def trace_gap_table(agg: Aggregate) -> str:
    """Markdown: one row per trace, one column per arm, the QoE gap to the reference (dB)."""
    traces, arms, gap = trace_gaps(agg)
    if not traces:
        return ""
    mean_mbps = {r.trace: r.trace_mean_mbps for r in agg.runs}
    head = ["trace", "mean Mbit/s", *arms]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in traces:
        mb = mean_mbps.get(t)
        cells = [t, "–" if mb is None else f"{mb:.2f}"]
        cells += [f"{gap[(t, a)]:.2f}" if (t, a) in gap else "–" for a in arms]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown_table(agg: Aggregate) -> str:
    """The aggregate as a GitHub Markdown table (means ± 95 % CI half-widths)."""
    labels = [lab if key != "quality" else agg.quality_label for key, lab, _ in METRICS]
    ref = reference_name(agg)
    head = ["arm", "share", "runs", *labels, f"{ref} share", f"gap to {ref} dB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in agg.rows:
        cells = [r.arm, f"{r.share:g}", f"{r.runs}" + (f" ({r.failed} failed)" if r.failed else "")]
        cells += [_pm(r.stats[key], fmt) for key, _, fmt in METRICS]
        share = "–" if not math.isfinite(r.oracle_share) else f"{r.oracle_share:.2f}"
        cells += [share, _pm(r.oracle_gap, "{:.2f}")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, agg: Aggregate, plan: Plan, *, note: str = "") -> None:
    refs = sorted({(r.oracle_ref, r.baseline_ref) for r in agg.rows if r.oracle_ref})
    ref_txt = "; ".join(f"oracle {o}, baseline {b or '0 dB'}" for o, b in refs) or "no oracle arm"
    text = [
        f"# Sweep {plan.sweep.name}",
        "",
        f"{grid_text(plan)}; {agg.planned - agg.missing} finished"
        + (f", {agg.missing} missing" if agg.missing else "") + ".",
        "Mean ± 95 % CI half-width (Student's t) over traces and seeds. Oracle share = "
        "Σ(QoE − QoE_baseline) / Σ(QoE_oracle − QoE_baseline) over paired runs "
        f"({ref_txt}); see docs/sweeps.md.",
    ]
    if note:
        text += ["", note]
    text += ["", markdown_table(agg)]
    per_trace = trace_gap_table(agg)
    if per_trace:
        text += [f"Per trace: QoE gap to the {reference_name(agg)} arm (dB, mean over shares "
                 "and seeds; positive = behind it).", "", per_trace]
    path.write_text("\n".join(text), encoding="utf-8")
