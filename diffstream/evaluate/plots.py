"""rd.png: PSNR, MS-SSIM and SWD against bpp on the common subset, one line per codec."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from diffstream.evaluate.tables import REAL, RdRow, common_rows


def _label_n(ax, rows: list[RdRow]) -> None:
    """'n=…' at the top of the panel over each target: the common subset changes with the
    target, which is why a curve can dip."""
    from matplotlib.transforms import blended_transform_factory

    where = blended_transform_factory(ax.transData, ax.transAxes)
    for t in sorted({r.target for r in rows}):
        at = [r for r in rows if r.target == t]
        x = sum(r.bpp for r in at) / len(at)
        ax.text(x, 0.98, f"n={at[0].n}", transform=where, ha="center", va="top",
                fontsize=7, color="0.35")


def rd_plot(rows: Sequence[RdRow], codecs: Sequence[str], path: Path, title: str = "") -> None:
    """Four panels: PSNR, MS-SSIM, the paired SWD (shaded: its bootstrap interval) and the
    unpaired SWD beside the real-vs-real floor over every item (grey band)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
    panels = (("psnr_db", "PSNR (dB)"), ("ms_ssim", "MS-SSIM"),
              ("swd", "SWD ×1e3, paired (lower: closer)"),
              ("swd_unpaired", "SWD ×1e3, unpaired, vs real floor"))
    for codec in codecs:
        pts = [r for r in common_rows(rows, codec) if r.n > 0]
        if not pts:
            continue
        x = [r.bpp for r in pts]
        for ax, (key, _) in zip(axes, panels, strict=True):
            (line,) = ax.plot(x, [getattr(r, key) for r in pts], marker="o", label=codec)
            if key == "swd":
                ax.fill_between(x, [r.swd_ci_low for r in pts], [r.swd_ci_high for r in pts],
                                color=line.get_color(), alpha=0.12, lw=0)
    _label_n(axes[0], [r for r in common_rows(rows) if r.codec in codecs and r.n > 0])
    floor = next((r for r in rows if r.codec == REAL and r.subset == "all"), None)
    if floor is not None and not math.isnan(floor.swd):
        ax = axes[3]
        ax.axhspan(floor.swd_ci_low, floor.swd_ci_high, color="0.5", alpha=0.25, lw=0,
                   label=f"real vs real, all {floor.n} (95 % CI)")
        ax.axhline(floor.swd, color="0.3", lw=0.8, ls="--")
    for ax, (_, label) in zip(axes, panels, strict=True):
        ax.set_xlabel("bpp (payload bits / pixel)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[3].legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
