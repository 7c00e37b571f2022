"""The evaluation's files: rd.csv, bd.csv and summary.md (rd.png is plots.py's)."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import astuple, dataclass
from pathlib import Path

from diffstream.evaluate.bd import BD_COLUMNS, BdRow
from diffstream.evaluate.run import Timing
from diffstream.evaluate.tables import COLUMNS, REAL, RdRow, has_common


def fmt(value: object, digits: int = 6) -> str:
    """CSV cell: '' for not applicable (None), 'nan' for a number that could not be had."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}g}"
    return str(value)


def write_csv(path: Path, header: Sequence[str], rows: Sequence[tuple]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow([fmt(v) for v in r])


def rd_csv(path: Path, rows: Sequence[RdRow], lpips: bool) -> None:
    """One row per codec x target x subset, and the real floor rows."""
    keep = [i for i, c in enumerate(COLUMNS) if lpips or c != "lpips"]
    write_csv(path, [COLUMNS[i] for i in keep],
              [tuple(astuple(r)[i] for i in keep) for r in rows])


def bd_csv(path: Path, rows: Sequence[BdRow]) -> None:
    write_csv(path, BD_COLUMNS, [astuple(r) for r in rows])


@dataclass(frozen=True)
class RunInfo:
    """What the summary says about how the numbers were made."""

    command: str
    seed: int
    images: str
    n_images: int
    n_crops: int
    crop_size: str  # "64x64" or "whole images"
    codecs: dict[str, str]  # label -> options description
    lpips: bool


def _num(v: float, spec: str) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _swd(r: RdRow) -> str:
    if math.isnan(r.swd):
        return "–"
    return f"{r.swd:.1f} [{r.swd_ci_low:.1f}, {r.swd_ci_high:.1f}]"


def common_table(rows: Sequence[RdRow], codecs: Sequence[str], lpips: bool) -> str:
    """The markdown table of the common subset, target by target, with each target's floor."""
    head = ["codec", "target bpp", "n", "sent", "bpp", "PSNR dB", "MS-SSIM",
            "SWD ×1e3 [95 % CI]", "SWD unpaired (floor)", "spectral"] + (
        ["LPIPS"] if lpips else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    common = [r for r in rows if r.subset == "common"]
    order = {c: i for i, c in enumerate([*codecs, REAL])}
    for r in sorted(common, key=lambda r: (r.target, order.get(r.codec, len(order)))):
        if r.codec == REAL:
            cells = ["*real (floor)*", f"{r.target:g}", str(r.n), "", "", "", "", "", _swd(r),
                     ""]
            cells += [""] if lpips else []
        else:
            cells = [r.codec, f"{r.target:g}", str(r.n), f"{r.sent}/{r.total}",
                     _num(r.bpp, ".3f"), _num(r.psnr_db, ".2f"), _num(r.ms_ssim, ".4f"),
                     _swd(r), _num(r.swd_unpaired, ".1f"), _num(r.spectral_ratio, ".2f")]
            cells += [_num(r.lpips, ".3f")] if lpips else []
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bd_table(rows: Sequence[BdRow]) -> str:
    if not rows:
        return "BD needs at least two codecs."
    lines = [f"Anchor: **{rows[0].anchor}** (BD-rate < 0: fewer bits for the same PSNR; "
             "BD-PSNR > 0: more PSNR at the same rate).", "",
             "| codec | method | points | items | BD-rate % | BD-PSNR dB | note |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        items = f"{r.items} ({r.subset})"
        lines.append(f"| {r.codec} | {r.method} | {r.points} | {items} | "
                     f"{_num(r.bd_rate_pct, '+.1f')} | {_num(r.bd_psnr_db, '+.2f')} | "
                     f"{r.reason} |")
    return "\n".join(lines)


def timing_table(timings: dict[str, Timing]) -> str:
    lines = ["| codec | encode ms | decode ms | over budget |", "|---|---|---|---|"]
    for label, t in timings.items():
        lines.append(f"| {label} | {t.encode_ms:.2f} | {t.decode_ms:.2f} | {t.over_budget} |")
    return "\n".join(lines)


def warnings_for(rows: Sequence[RdRow], timings: dict[str, Timing]) -> list[str]:
    out = []
    if not has_common(rows):
        out.append("No crop was sent by every codec at any target: there is no common subset, "
                   "so the comparison table and BD are empty. The `sent` rows of rd.csv still "
                   "hold each codec's own results; raise the targets or drop the codec that "
                   "skips.")
    else:
        empty = sorted({r.target for r in rows if r.subset == "common" and r.codec != REAL
                        and r.n == 0})
        if empty:
            out.append("No common subset at " + ", ".join(f"{t:g}" for t in empty)
                       + " bpp (some codec skipped every crop there).")
    for label, t in timings.items():
        if t.over_budget:
            out.append(f"{label} sent {t.over_budget} payloads larger than their budget.")
    return out


def summary_md(path: Path, rows: Sequence[RdRow], bd: Sequence[BdRow],
               timings: dict[str, Timing], info: RunInfo, codecs: Sequence[str]) -> None:
    floor = next((r for r in rows if r.codec == REAL and r.subset == "all"), None)
    parts = ["# Rate–distortion evaluation", "",
             f"Command: `{info.command}`", "",
             f"Seed: {info.seed}. Images: `{info.images}` ({info.n_images} images), "
             f"{info.n_crops} crops ({info.crop_size}).",
             "Codecs: " + "; ".join(f"{k} ({v})" for k, v in info.codecs.items()) + ".",
             "Bits are payload bits (`len(payload) * 8`); the codec's header metadata is not "
             "counted. A crop a codec skipped is counted in `sent`, never averaged in.", ""]
    for w in warnings_for(rows, timings):
        parts += [f"**Warning:** {w}", ""]
    parts += ["## The common subset", "",
              "The crops every codec sent at that target (the only fair comparison). n: crops "
              "in it; sent: crops this codec sent of all. PSNR, MS-SSIM"
              + (", LPIPS" if info.lpips else "") + ": means over the crops. SWD: sliced "
              "Wasserstein distance (×1e3, lower is closer) of the reconstructions to their "
              "originals, paired (each against its own original; 0 for a perfect codec). "
              "SWD unpaired: one half of the reconstructions against the other half of the "
              "originals, the split of the *real (floor)* row (two disjoint halves of the "
              "originals), so a perfect codec scores the floor: compare these two. spectral: "
              "reconstruction / original power over the top two octaves (< 1 blur, > 1 "
              "invented detail).", "",
              common_table(rows, codecs, info.lpips), ""]
    if floor is not None and not math.isnan(floor.swd):
        parts += [f"SWD floor over all {floor.n} crops: {_swd(floor)}.", ""]
    parts += ["## Bjøntegaard deltas (PSNR, one fixed set of crops)", "", bd_table(bd), "",
              "## Timings (CPU wall time per call, one torch thread)", "",
              timing_table(timings), ""]
    path.write_text("\n".join(parts))
