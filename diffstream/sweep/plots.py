"""Sweep plots (matplotlib Agg, no pyplot, as ``diffstream/output/report.py``): per-arm box plots
of the aggregate's metrics, and QoE against the bandwidth each run was offered."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from diffstream.output.report import _colors, _save
from diffstream.sweep.aggregate import METRICS, Aggregate

BOX_NAME = "boxplots.png"
BANDWIDTH_NAME = "qoe_vs_bandwidth.png"


def _group(agg: Aggregate) -> list[tuple[str, str, float]]:
    """(label, arm, share) per aggregate row; the share shows only when it varies."""
    several = len({r.share for r in agg.rows}) > 1
    return [(f"{r.arm} @{r.share:g}" if several else r.arm, r.arm, r.share) for r in agg.rows]


def plot_boxes(agg: Aggregate, out_png: Path) -> Path:
    groups = _group(agg)
    fig = Figure(figsize=(max(8.0, 0.75 * len(groups) + 3), 13))
    axes = fig.subplots(len(METRICS), 1, sharex=True)
    colors = _colors(len(groups))
    for ax, (key, label, _) in zip(axes, METRICS, strict=True):
        data, pos = [], []
        for i, (_, arm, share) in enumerate(groups):
            v = [r.values[key] for r in agg.runs if r.arm == arm and r.share == share]
            v = [x for x in v if x is not None and math.isfinite(x)]
            if v:
                data.append(v)
                pos.append(i)
        if data:
            bp = ax.boxplot(data, positions=pos, widths=0.6, patch_artist=True, showmeans=True)
            for patch, i in zip(bp["boxes"], pos, strict=True):
                patch.set_facecolor(colors[i])
                patch.set_alpha(0.55)
        else:
            ax.text(0.5, 0.5, "no values (network-only runs have no quality scores)",
                    transform=ax.transAxes, ha="center", va="center", color="0.4")
        ax.set_ylabel(agg.quality_label if key == "quality" else label)
        ax.grid(True, axis="y", alpha=0.3)
    axes[-1].set_xticks(range(len(groups)))
    axes[-1].set_xticklabels([g[0] for g in groups], rotation=30, ha="right")
    axes[-1].set_xlim(-0.6, len(groups) - 0.4)
    axes[0].set_title("per arm over traces and seeds (box: quartiles, whiskers 1.5 IQR, "
                      "triangle: mean)")
    fig.tight_layout()
    return _save(fig, out_png)


def plot_qoe_vs_bandwidth(agg: Aggregate, out_png: Path) -> Path:
    """One point per run; the line joins each arm's mean over seeds per trace (and share)."""
    groups = _group(agg)
    colors = _colors(len(groups))
    fig = Figure(figsize=(10, 6))
    ax = fig.subplots()
    for (label, arm, share), color in zip(groups, colors, strict=True):
        pts = [(r.stream_mean_kbps, r.values["qoe"], r.trace) for r in agg.runs
               if r.arm == arm and r.share == share and r.stream_mean_kbps is not None
               and r.values["qoe"] is not None]
        if not pts:
            continue
        x = np.array([p[0] for p in pts], dtype=float)
        y = np.array([p[1] for p in pts], dtype=float)
        ax.scatter(x, y, s=14, color=color, alpha=0.5)
        cells: dict[str, list[tuple[float, float]]] = {}
        for bx, q, trace in pts:
            cells.setdefault(trace, []).append((bx, q))
        means = sorted((float(np.mean([c[0] for c in v])), float(np.mean([c[1] for c in v])))
                       for v in cells.values())
        ax.plot([m[0] for m in means], [m[1] for m in means], "-o", ms=4, color=color,
                label=label)
    ax.set_xlabel("mean capacity offered to the stream over the run (kbit/s, trace × share)")
    ax.set_ylabel("QoE")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    ax.set_title("QoE vs bandwidth: points are runs, lines join per-trace means over seeds")
    fig.tight_layout()
    return _save(fig, out_png)
