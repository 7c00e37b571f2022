"""Bjøntegaard delta rate and PSNR of each codec against an anchor, on one fixed set of items.

The points of every curve are the ``subset=fixed`` rows (``tables.fixed_rows``): the same
items at every target, sent by every codec. Per-target common subsets would hold different
items at different targets (only the easy ones at low rates), and a curve through them is
not one codec's R-D curve. Callers that have no fixed rows (benchmarks passing only
per-target rows) fall back to the common rows, and the reason column says so.

We use the ``bjontegaard`` package (FAU-LMS, BSD). Its ``cubic`` method is the classic
VCEG-M33 calculation: a third-order ``numpy.polyfit`` of log-rate against PSNR (BD-rate) or
of PSNR against log-rate (BD-PSNR), both integrated over the overlap of the two curves;
it works in log10 where VCEG-M33 uses ln, which gives the same percentages. Its ``pchip``
method is the piecewise cubic Hermite interpolation of the JCT-VC/JVET common test
conditions (the package matches their Excel sheet), more robust to oddly shaped curves.
bd.csv reports both.

Our checks before calling it (the package would fit anything): each curve needs >= 4
points with distinct rates and >= 4 distinct PSNRs (a cubic through fewer is not
determined); otherwise NaN with the reason. PCHIP needs a strictly increasing abscissa, so
the points are sorted by rate before BD-PSNR and by PSNR before BD-rate, and points that
share an abscissa are merged (the mean of the other coordinate; noted in the reason). The
package's warnings (curves that do not overlap, or overlap by less than 75 %) are kept in
the reason column too, and a curve whose PSNR does not rise with rate is flagged
"non-monotonic" (the values are then shaky).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from diffstream.evaluate.tables import RdRow, common_rows

MIN_POINTS = 4
METHODS: tuple[str, ...] = ("cubic", "pchip")
NAN = float("nan")


@dataclass(frozen=True)
class BdRow:
    codec: str
    anchor: str
    method: str
    points: int  # RD points of the test codec (the anchor's are the same targets)
    subset: str  # fixed (one set of items at every point) or common (per-target fallback)
    items: int  # items behind each point (fixed); the smallest per-target n (common)
    bd_rate_pct: float  # < 0: the codec needs fewer bits for the same PSNR
    bd_psnr_db: float  # > 0: the codec gives more PSNR at the same rate
    reason: str  # why a value is NaN, or what to be wary of; empty when clean


BD_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(BdRow))


def _points(rows: Sequence[RdRow], codec: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r.bpp, r.psnr_db) for r in rows
           if r.n > 0 and math.isfinite(r.bpp) and math.isfinite(r.psnr_db) and r.bpp > 0]
    arr = np.array(sorted(pts), dtype=np.float64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def _curve_rows(rows: Sequence[RdRow], codec: str) -> tuple[list[RdRow], str]:
    fixed = sorted((r for r in rows if r.subset == "fixed" and r.codec == codec),
                   key=lambda r: r.target)
    if fixed:
        return fixed, "fixed"
    return common_rows(rows, codec), "common"


def _merge(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Sorted by x, points sharing an x merged into one (mean y): the interpolants need a
    strictly increasing abscissa. Returns whether anything was merged."""
    ux, inverse = np.unique(x, return_inverse=True)
    uy = np.bincount(inverse, weights=y) / np.bincount(inverse)
    return ux, uy, len(ux) < len(x)


def _unusable(rate: np.ndarray, psnr: np.ndarray, who: str) -> str:
    if len(rate) < MIN_POINTS:
        return f"{who} has {len(rate)} RD points (needs {MIN_POINTS})"
    if len(np.unique(rate)) < MIN_POINTS:
        return f"{who} has {len(np.unique(rate))} distinct rates (needs {MIN_POINTS})"
    if len(np.unique(psnr)) < MIN_POINTS:
        return f"{who} has {len(np.unique(psnr))} distinct PSNRs (needs {MIN_POINTS})"
    return ""


def bd_pair(anchor: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
            method: str) -> tuple[float, float, str]:
    """(BD-rate %, BD-PSNR dB, reason) of ``test`` against ``anchor``; each a (rate, psnr)
    pair of arrays. NaN with a reason when it cannot be computed."""
    import bjontegaard

    curves = ((anchor, "the anchor"), (test, "the codec"))
    for (rate, psnr), who in curves:
        why = _unusable(np.asarray(rate), np.asarray(psnr), who)
        if why:
            return NAN, NAN, why
    notes = []
    by_psnr, by_rate = [], []
    for (rate, psnr), who in curves:
        rate, psnr = np.asarray(rate, dtype=float), np.asarray(psnr, dtype=float)
        if np.any(np.diff(psnr[np.argsort(rate, kind="stable")]) <= 0):
            notes.append(f"{who} is non-monotonic (PSNR does not rise with rate)")
        r, p, merged_r = _merge(rate, psnr)  # rate as the abscissa: BD-PSNR
        by_rate.append((r, p))
        p2, r2, merged_p = _merge(psnr, rate)  # PSNR as the abscissa: BD-rate
        by_psnr.append((r2, p2))
        if merged_r or merged_p:
            notes.append(f"{who} has repeated rates or PSNRs (merged: mean of the other)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            rate = float(bjontegaard.bd_rate(*by_psnr[0], *by_psnr[1], method=method,
                                             require_matching_points=False))
            psnr = float(bjontegaard.bd_psnr(*by_rate[0], *by_rate[1], method=method,
                                             require_matching_points=False))
        except (ValueError, np.linalg.LinAlgError) as exc:  # a fit the data cannot carry
            return NAN, NAN, "; ".join([*notes, f"{method} fit failed: {exc}"])
    notes += list(dict.fromkeys(str(w.message) for w in caught))
    return rate, psnr, "; ".join(notes)


def bd_rows(rows: Sequence[RdRow], codecs: Sequence[str],
            methods: Sequence[str] = METHODS) -> list[BdRow]:
    """Each codec after the first against the first (the anchor), per method, on the fixed
    rows when ``rows`` has them (else the per-target common rows, noted)."""
    if len(codecs) < 2:
        return []
    anchor = codecs[0]
    a_rows, subset = _curve_rows(rows, anchor)
    a = _points(a_rows, anchor)
    out = []
    for codec in codecs[1:]:
        t_rows, _ = _curve_rows(rows, codec)
        t = _points(t_rows, codec)
        n = min((r.n for r in t_rows if r.n > 0), default=0)
        for method in methods:
            rate, psnr, reason = bd_pair(a, t, method)
            if subset == "common":
                reason = "; ".join(x for x in ("per-target common subsets (no fixed set of "
                                               "items): points hold different items", reason)
                                   if x)
            out.append(BdRow(codec, anchor, method, len(t[0]), subset, n, rate, psnr, reason))
    return out
