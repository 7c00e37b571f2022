"""Outputs of a scenario run: frame log (JSONL), summary CSV, comparison table, PNG plots.

The frame log is the source of truth: every figure here is drawn from ``FrameRecord``s, so
any of them can be regenerated from ``frames.jsonl`` alone. JSON has no NaN or infinity, so
non-finite floats are written as ``null``; on reading, ``null`` in a field typed plain
``float`` comes back as NaN (an infinite value, e.g. the PSNR of an identical frame, comes
back as NaN or ``None`` as well).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from rich.table import Table

from diffstream.metrics.qoe import webrtc_freezes
from diffstream.pipeline.records import ArmSummary, FrameRecord

FRAMES_NAME = "frames.jsonl"
SUMMARY_NAME = "summary.csv"
TIMELINE_NAME = "timeline.png"
QUALITY_NAME = "quality.png"
LATENCY_NAME = "latency_cdf.png"

# Record fields typed plain ``float``: ``null`` in the log means NaN there, not "absent".
_PLAIN_FLOAT_FIELDS = frozenset(f.name for f in fields(FrameRecord) if f.type in ("float", float))


# ------------------------------------------------------------------------------ JSONL


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


_RECORD_FIELDS = tuple(f.name for f in fields(FrameRecord))


def _record_line(record: FrameRecord) -> str:
    # the fields are plain values: a shallow read is ``to_dict()`` without asdict's deep copy
    # (which was most of the cost of logging a frame)
    data = {k: _json_safe(getattr(record, k)) for k in _RECORD_FIELDS}
    return json.dumps(data, allow_nan=False, separators=(",", ":")) + "\n"


def _write_records(path: str | Path, records: Iterable[FrameRecord], mode: str) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open(mode, encoding="utf-8") as fh:
        for r in records:
            fh.write(_record_line(r))
        fh.flush()


def write_frames_jsonl(path: str | Path, records: Iterable[FrameRecord]) -> None:
    """Write one JSON object per frame, replacing the file (NaN/inf written as null)."""
    _write_records(path, records, "w")


def append_frames_jsonl(path: str | Path, records: Iterable[FrameRecord]) -> None:
    """Append frames and flush, so everything recorded so far survives a crash."""
    _write_records(path, records, "a")


class FrameLogStream:
    """An append-only frames.jsonl written as records settle (same lines as
    ``append_frames_jsonl``), flushed every ``flush_every`` records and on ``close``: a run
    that keeps no record list in memory (``sim.fastpath`` with ``keep_records=False``)."""

    def __init__(self, path: str | Path, flush_every: int = 1024) -> None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        self._fh = p.open("a", encoding="utf-8")
        self._every, self._n = flush_every, 0
        self.written = 0

    def write(self, record: FrameRecord) -> None:
        self._fh.write(_record_line(record))
        self.written += 1
        self._n += 1
        if self._n >= self._every:
            self._fh.flush()
            self._n = 0

    def close(self) -> None:
        self._fh.flush()
        self._fh.close()


def read_frames_jsonl(path: str | Path) -> list[FrameRecord]:
    """Read a frame log; a torn last line (crash mid-write) is ignored, other bad lines raise."""
    out: list[FrameRecord] = []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path}:{i + 1}: not a JSON object: {exc}") from exc
        for name in _PLAIN_FLOAT_FIELDS:
            if name in data and data[name] is None:
                data[name] = math.nan
        out.append(FrameRecord.from_dict(data))
    return out


# ------------------------------------------------------------------------------- CSV


def write_summary_csv(path: str | Path, summaries: Sequence[ArmSummary]) -> None:
    """One row per arm, columns in ``ArmSummary`` field order (NaN written as ``nan``)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    names = [f.name for f in fields(ArmSummary)]
    with p.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=names)
        writer.writeheader()
        for s in summaries:
            writer.writerow({k: _csv_value(v) for k, v in s.to_dict().items()})


def _csv_value(value: Any) -> Any:
    """Six significant digits: float noise such as 102.00000000000387 helps no reader."""
    return float(f"{value:.6g}") if isinstance(value, float) and math.isfinite(value) else value


# ----------------------------------------------------------------------------- table

# (header, getter, format, better: "max" | "min" | None)
_COLUMNS: list[tuple[str, str, str, str | None]] = [
    ("PSNR dB", "mean_psnr_db", "{:.2f}", "max"),
    ("MS-SSIM", "mean_ms_ssim", "{:.4f}", "max"),
    ("SSIM dB", "mean_ssim_db", "{:.2f}", "max"),
    ("p50 ms", "latency_p50_ms", "{:.0f}", "min"),
    ("p95 ms", "latency_p95_ms", "{:.0f}", "min"),
    ("p99 ms", "latency_p99_ms", "{:.0f}", "min"),
    ("miss %", "deadline_miss_pct", "{:.1f}", "min"),
    ("freezes n / s", "freeze_s", "", "min"),  # formatted specially
    ("bpp", "mean_bpp", "{:.3f}", None),
    ("kbit/s", "delivered_kbps", "{:.1f}", None),
    ("util", "utilisation", "{:.2f}", "max"),
    ("QoE", "qoe", "{:.2f}", "max"),
]


def _fmt(value: float, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return fmt.format(value)


def _best(values: list[float], better: str | None) -> float | None:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    if better is None or len(finite) < 2 or min(finite) == max(finite):
        return None  # nothing to single out
    return max(finite) if better == "max" else min(finite)


def _caption(summaries: Sequence[ArmSummary]) -> str:
    """Which QoE the QoE column is, and where the rest is (the table keeps its width)."""
    presets = " / ".join(sorted({s.qoe_preset for s in summaries})) or "–"
    return (f"QoE: the {presets} preset. summary.csv has every preset, the rebuffer ratio "
            "and WebRTC freeze and pause counts")


def comparison_table(summaries: Sequence[ArmSummary], *, title: str = "") -> Table:
    """Arms as rows, the best value of each column in bold green (ties all highlighted); the
    caption names the QoE preset."""
    table = Table(title=title or None, caption=_caption(summaries), header_style="bold",
                  show_lines=False)
    table.add_column("arm", style="cyan", no_wrap=True)
    table.add_column("codec")
    table.add_column("policy")
    for header, *_ in _COLUMNS:
        table.add_column(header, justify="right")
    bests = {
        attr: _best([float(getattr(s, attr)) for s in summaries], better)
        for _, attr, _, better in _COLUMNS
    }
    for s in summaries:
        cells = [s.arm, s.codec, s.policy]
        for _, attr, fmt, _better in _COLUMNS:
            value = float(getattr(s, attr))
            text = f"{s.freezes} / {s.freeze_s:.2f}" if attr == "freeze_s" else _fmt(value, fmt)
            if bests[attr] is not None and value == bests[attr]:
                text = f"[bold green]{text}[/]"
            cells.append(text)
        table.add_row(*cells)
    return table


# ----------------------------------------------------------------------------- plots


def _colors(n: int) -> list[Any]:
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _fps(records: Sequence[FrameRecord]) -> float:
    """Frame rate from capture times (median spacing); 10 fps when it cannot be told."""
    caps = np.sort(np.array([r.capture_s for r in records], dtype=float))
    d = np.diff(caps)
    d = d[d > 0]
    return float(1.0 / np.median(d)) if d.size else 10.0


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` samples (the first ones over fewer)."""
    if window <= 1 or values.size == 0:
        return values
    c = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, values.size + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def _save(fig: Figure, out_png: str | Path) -> Path:
    p = Path(out_png)
    p.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)  # Agg, never pyplot: no display, no global state, thread-safe
    fig.savefig(p, dpi=110)
    return p


def _arm_axes(n: int, height: float) -> tuple[Figure, list[Any]]:
    n = max(n, 1)
    fig = Figure(figsize=(11, 1.2 + height * n), layout="constrained")
    axes = fig.subplots(n, 1, sharex=True, squeeze=False)
    return fig, list(axes[:, 0])


def plot_timeline(
    records_by_arm: dict[str, list[FrameRecord]],
    capacity: tuple[np.ndarray, np.ndarray],
    out_png: str | Path,
) -> Path:
    """One panel per arm (readable with ~9 arms): link capacity, budget and delivered rate.

    Budget is ``budget_bits * fps``; delivered is ``delivered_bytes * 8 * fps`` smoothed
    over about one second of frames. Both are placed at the frame's capture time.
    """
    t_cap, bps = (np.asarray(a, dtype=float) for a in capacity)
    peak = float(np.nanmax(bps)) if bps.size else 0.0
    for recs in records_by_arm.values():
        if recs:
            peak = max(peak, max(r.budget_bits for r in recs) * _fps(recs))
    scale, unit = (1e6, "Mbit/s") if peak >= 1e6 else (1e3, "kbit/s")
    fig, axes = _arm_axes(len(records_by_arm), 1.5)
    for ax, (arm, recs) in zip(axes, records_by_arm.items(), strict=False):
        recs = sorted(recs, key=lambda r: r.capture_s)
        if t_cap.size:
            # extend the last step to the end of the run so the final segment is drawn
            t_end = max([t_cap[-1]] + [r.capture_s for r in recs[-1:]])
            ax.step(
                np.append(t_cap, t_end),
                np.append(bps, bps[-1]) / scale,
                where="post",
                color="0.55",
                lw=1.2,
                label="link capacity",
            )
        if recs:
            fps = _fps(recs)
            t = np.array([r.capture_s for r in recs])
            budget = np.array([r.budget_bits for r in recs], dtype=float) * fps
            deliv = np.array([r.delivered_bytes for r in recs], dtype=float) * 8.0 * fps
            ax.plot(t, budget / scale, color="tab:blue", lw=1.0, label="budget (bits × fps)")
            ax.plot(
                t,
                _smooth(deliv, max(1, round(fps))) / scale,
                color="tab:orange",
                lw=1.2,
                label="delivered (1 s avg)",
            )
        ax.set_ylabel(unit)
        ax.set_title(arm, loc="left", fontsize=9)
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside upper right", fontsize=8, ncol=len(labels))
    axes[-1].set_xlabel("time (s)")
    return _save(fig, out_png)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Index ranges [start, end) where ``mask`` is True."""
    out: list[tuple[int, int]] = []
    start = None
    for i, m in enumerate(mask):
        if m and start is None:
            start = i
        elif not m and start is not None:
            out.append((start, i))
            start = None
    if start is not None:
        out.append((start, len(mask)))
    return out


_METRIC_LABEL = {
    "psnr_db": "PSNR (dB)",
    "ssim_db": "SSIM (dB)",
    "ms_ssim": "MS-SSIM",
    "ssim": "SSIM",
}


def _freezes_in_capture_time(recs: Sequence[FrameRecord], fps: float) -> list[tuple[float, float]]:
    """Interactive arms' WebRTC freezes, shifted from display to capture time by the lag."""
    first = recs[0]
    if first.deadline_s is None:
        return []
    lag = first.deadline_s - first.capture_s
    start = first.capture_s + lag
    shown = [r.display_s for r in recs if r.shown and r.display_s is not None]
    found = webrtc_freezes(shown, 1.0 / fps, start, start + len(recs) / fps)
    return [(t - lag, d) for t, d in found]


def plot_quality(
    records_by_arm: dict[str, list[FrameRecord]],
    out_png: str | Path,
    metric: str = "psnr_db",
) -> Path:
    """Quality of what the viewer saw per slot, one panel per arm, stalls shaded.

    Shaded: slots where the viewer saw a stale image (``stall``, light) and interactive
    freezes by the WebRTC rule (darker, moved to capture time by the target latency); dark
    red ticks: playback rebuffer events (``stall_s > 0``) at the frame played after them.
    """
    fig, axes = _arm_axes(len(records_by_arm), 1.3)
    for ax, color, (arm, recs) in zip(
        axes, _colors(len(records_by_arm)), records_by_arm.items(), strict=False
    ):
        recs = sorted(recs, key=lambda r: r.capture_s)
        if recs:
            fps = _fps(recs)
            t = np.array([r.capture_s for r in recs])
            q = np.array(
                [np.nan if getattr(r, metric) is None else getattr(r, metric) for r in recs],
                dtype=float,
            )
            ax.plot(t, q, color=color, lw=1.0)
            for a, b in _runs(np.array([r.stall for r in recs])):
                ax.axvspan(
                    t[a],
                    t[b - 1] + 1.0 / fps,
                    color="tab:orange",
                    alpha=0.2,
                    lw=0,
                    label="stale frame shown",
                )
            for start, dur in _freezes_in_capture_time(recs, fps):
                ax.axvspan(
                    start,
                    start + dur,
                    color="tab:red",
                    alpha=0.3,
                    lw=0,
                    label="freeze (WebRTC rule)",
                )
            rebuf = [r.capture_s for r in recs if r.stall_s and r.stall_s > 0]
            if rebuf:
                ax.vlines(
                    rebuf,
                    0,
                    1,
                    transform=ax.get_xaxis_transform(),
                    color="darkred",
                    lw=1.5,
                    label="rebuffer",
                )
        ax.set_title(arm, loc="left", fontsize=9)
        ax.set_ylabel(_METRIC_LABEL.get(metric, metric))
        ax.grid(alpha=0.3)
    legend: dict[str, Any] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, h)
    if legend:
        fig.legend(
            list(legend.values()),
            list(legend.keys()),
            loc="outside upper right",
            fontsize=8,
            ncol=len(legend),
        )
    axes[-1].set_xlabel("capture time (s)")
    return _save(fig, out_png)


def plot_latency_cdf(
    records_by_arm: dict[str, list[FrameRecord]],
    out_png: str | Path,
    deadline_s: float | None,
) -> Path:
    """Empirical CDF of shown frames' latency (ms), one line per arm, deadline marked."""
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.subplots()
    for color, (arm, recs) in zip(
        _colors(len(records_by_arm)), records_by_arm.items(), strict=False
    ):
        lat = np.sort(
            [
                r.latency_s * 1000.0
                for r in recs
                if r.shown and r.latency_s is not None and math.isfinite(r.latency_s)
            ]
        )
        if lat.size == 0:
            ax.plot([], [], color=color, label=f"{arm} (nothing shown)")
            continue
        frac = np.arange(1, lat.size + 1) / lat.size
        ax.step(
            np.insert(lat, 0, lat[0]),
            np.insert(frac, 0, 0.0),
            where="post",
            color=color,
            lw=1.3,
            label=arm,
        )
    if deadline_s is not None:
        ax.axvline(
            deadline_s * 1000.0,
            color="k",
            ls="--",
            lw=1.0,
            label=f"deadline {deadline_s * 1000:.0f} ms",
        )
    ax.set_xlabel("latency of shown frames (ms)")
    ax.set_ylabel("fraction of shown frames")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, out_png)


def _deadline_of(records_by_arm: dict[str, list[FrameRecord]]) -> float | None:
    for recs in records_by_arm.values():
        for r in recs:
            if r.deadline_s is not None:
                return r.deadline_s - r.capture_s
    return None


def write_report(
    out_dir: str | Path,
    records_by_arm: dict[str, list[FrameRecord]],
    summaries: Sequence[ArmSummary],
    capacity: tuple[np.ndarray, np.ndarray],
) -> list[Path]:
    """Write frames.jsonl, summary.csv and the three PNGs into ``out_dir``; return paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frames = out / FRAMES_NAME
    write_frames_jsonl(frames, (r for recs in records_by_arm.values() for r in recs))
    summary = out / SUMMARY_NAME
    write_summary_csv(summary, summaries)
    return [
        frames,
        summary,
        plot_timeline(records_by_arm, capacity, out / TIMELINE_NAME),
        plot_quality(records_by_arm, out / QUALITY_NAME),
        plot_latency_cdf(records_by_arm, out / LATENCY_NAME, _deadline_of(records_by_arm)),
    ]
