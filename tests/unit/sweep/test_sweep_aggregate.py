"""The aggregate's statistics: t intervals, the oracle share with negative QoE, determinism."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from diffstream.sweep.aggregate import (
    Stat,
    aggregate,
    markdown_table,
    reference_name,
    trace_gap_table,
    trace_gaps,
    write_aggregate_csv,
)
from diffstream.sweep.plan import Plan, load_plan
from tests.integration.sweep.test_sweep_fixtures import write_sweep


def test_t_interval_matches_the_textbook() -> None:
    values = [1.0, 2.0, 4.0, 7.0]
    s = Stat.of(values)
    lo, hi = stats.t.interval(0.95, 3, loc=np.mean(values), scale=stats.sem(values))
    assert s.n == 4 and s.mean == pytest.approx(3.5)
    assert s.mean - s.ci95 == pytest.approx(lo) and s.mean + s.ci95 == pytest.approx(hi)


def test_undefined_values_are_left_out() -> None:
    s = Stat.of([2.0, None, math.nan, 4.0])
    assert s.n == 2 and s.mean == 3.0 and math.isfinite(s.ci95)
    one = Stat.of([5.0])
    assert one.n == 1 and one.mean == 5.0 and math.isnan(one.ci95)
    assert Stat.of([]).n == 0


def plan_for(tmp_path: Path, **top: Any) -> Plan:
    """1 constant trace x {fixed, rate, oracle} x seeds 1-3 (nothing is run)."""
    grid = {"traces": [{"kind": "constant", "mbps": 2.0}], "codecs": ["jpeg"],
            "policies": [{"kind": "fixed", "bpp": 1.0}, {"kind": "rate"}, {"kind": "oracle"}],
            "seeds": [1, 2, 3]}
    return load_plan(write_sweep(tmp_path, grid=grid, **top))


def finished_with(plan: Plan, qoe: dict[tuple[str, int], float]) -> dict[str, dict]:
    out = {}
    for r in plan.runs:
        q = qoe[(r.params["arm"], r.params["seed"])]
        out[r.id] = {"id": r.id, "status": "ok", "trace_mean_mbps": 2.0,
                     "stream_mean_kbps": 100.0,
                     "summary": {"qoe": q, "mean_psnr_db": 30.0, "latency_p95_ms": 100.0,
                                 "deadline_miss_pct": 1.0, "utilisation": 0.9}}
    return out


QOE = {("jpeg-fixed", 1): -20.0, ("jpeg-fixed", 2): -30.0, ("jpeg-fixed", 3): -10.0,
       ("jpeg-rate", 1): -5.0, ("jpeg-rate", 2): -12.0, ("jpeg-rate", 3): 1.0,
       ("jpeg-oracle", 1): 5.0, ("jpeg-oracle", 2): -2.0, ("jpeg-oracle", 3): 8.0}


def test_oracle_share_with_negative_qoe(tmp_path: Path) -> None:
    plan = plan_for(tmp_path)
    agg = aggregate(plan, finished_with(plan, QOE))
    rows = {r.arm: r for r in agg.rows}
    rate = rows["jpeg-rate"]
    assert rate.oracle_ref == "jpeg-oracle" and rate.baseline_ref == "jpeg-fixed"
    # gains over fixed: rate 15, 18, 11 = 44; oracle 25, 28, 18 = 71
    assert rate.oracle_share == pytest.approx(44 / 71) and rate.oracle_pairs == 3
    assert rate.oracle_gap.mean == pytest.approx((10 + 10 + 7) / 3)
    assert rows["jpeg-oracle"].oracle_share == 1.0 and rows["jpeg-fixed"].oracle_share == 0.0
    # the plain ratio of QoE would be meaningless here: the oracle's QoE changes sign
    assert "0.62" in markdown_table(agg)


def test_no_baseline_means_a_plain_ratio_only_when_it_is_defined(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, report={"baseline": "none"})
    rows = {r.arm: r for r in aggregate(plan, finished_with(plan, QOE)).rows}
    # oracle QoE sums to 11 > 0: rate's share = -16 / 11
    assert rows["jpeg-rate"].oracle_share == pytest.approx(-16 / 11)
    negative = {k: v - 20 for k, v in QOE.items()}  # the oracle's sum is now negative
    rows = {r.arm: r for r in aggregate(plan, finished_with(plan, negative)).rows}
    assert math.isnan(rows["jpeg-rate"].oracle_share)


def test_missing_runs_are_counted_and_pairs_need_all_three(tmp_path: Path) -> None:
    plan = plan_for(tmp_path)
    done = finished_with(plan, QOE)
    gone = next(r.id for r in plan.runs
                if r.params["arm"] == "jpeg-oracle" and r.params["seed"] == 2)
    del done[gone]
    agg = aggregate(plan, done, failed_ids={gone})
    rows = {r.arm: r for r in agg.rows}
    assert agg.missing == 1 and rows["jpeg-oracle"].failed == 1
    assert rows["jpeg-rate"].oracle_pairs == 2
    assert rows["jpeg-rate"].oracle_share == pytest.approx((15 + 11) / (25 + 18))


def test_the_aggregate_does_not_depend_on_completion_order(tmp_path: Path) -> None:
    plan = plan_for(tmp_path)
    rng = np.random.default_rng(0)
    qoe = {k: float(v + rng.normal()) for k, v in QOE.items()}
    done = finished_with(plan, qoe)
    items = list(done.items())
    random.Random(1).shuffle(items)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    write_aggregate_csv(a, aggregate(plan, done))
    write_aggregate_csv(b, aggregate(plan, dict(items)))
    assert a.read_text() == b.read_text()


def test_report_must_name_a_swept_arm(tmp_path: Path) -> None:
    from diffstream.errors import ConfigError

    with pytest.raises(ConfigError, match="report.oracle: 'webp-oracle' is not an arm"):
        plan_for(tmp_path, report={"oracle": "webp-oracle"})


def test_per_trace_gaps_and_the_reference_name(tmp_path: Path) -> None:
    """Two traces: each trace's gap is its own mean over seeds, not the pooled mean."""
    grid = {"traces": [{"kind": "constant", "mbps": 2.0}, {"kind": "constant", "mbps": 4.0}],
            "codecs": ["jpeg"], "policies": [{"kind": "rate"}, {"kind": "oracle"}],
            "seeds": [1, 2]}
    plan = load_plan(write_sweep(tmp_path, grid=grid))
    qoe = {}
    for r in plan.runs:
        fast = r.params["trace"] != plan.traces[0].label
        q = (10.0 if r.params["arm"] == "jpeg-oracle" else 6.0 + r.params["seed"]) + 5 * fast
        if fast and r.params["arm"] == "jpeg-rate":
            q -= 3.0  # gap 6 on the fast trace
        qoe[r.id] = q
    finished = {rid: {"id": rid, "status": "ok", "trace_mean_mbps": 2.0,
                      "stream_mean_kbps": 60.0, "summary": {"qoe": q, "freezes": 2}}
                for rid, q in qoe.items()}
    agg = aggregate(plan, finished)
    traces, arms, gap = trace_gaps(agg)
    slow, fast = plan.traces[0].label, plan.traces[1].label
    assert arms == ["jpeg-rate", "jpeg-oracle"]
    assert gap[(slow, "jpeg-rate")] == pytest.approx(2.5)  # 10 - (7, 8)
    assert gap[(fast, "jpeg-rate")] == pytest.approx(5.5)
    assert gap[(slow, "jpeg-oracle")] == 0.0
    assert reference_name(agg) == "oracle"
    assert "gap to oracle dB" in markdown_table(agg)
    table = trace_gap_table(agg)
    assert "| 2.50 |" in table and "| 5.50 |" in table
    assert {r.arm: r.stats["freezes"].mean for r in agg.rows}["jpeg-rate"] == 2.0


def test_prediction_error_is_aggregated(tmp_path: Path) -> None:
    plan = plan_for(tmp_path)
    done = finished_with(plan, QOE)
    for i, e in enumerate(sorted(done.values(), key=lambda e: e["id"])):
        if "rate" in next(r.params["arm"] for r in plan.runs if r.id == e["id"]):
            e["summary"].update(pred_over_err=0.1 * (i % 3 + 1), pred_under_err=0.2)
    rows = {r.arm: r for r in aggregate(plan, done).rows}
    rate = rows["jpeg-rate"].stats
    assert rate["pred_over_err"].n == 3 and rate["pred_under_err"].mean == pytest.approx(0.2)
    # arms without predictions (fixed, oracle) have no value, not a zero
    assert rows["jpeg-fixed"].stats["pred_over_err"].n == 0
    assert "over-est" in markdown_table(aggregate(plan, done))
