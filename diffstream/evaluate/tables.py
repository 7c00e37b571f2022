"""Rate-distortion rows from coded items of any source: the common and the sent subsets.

The input is a flat list of ``Coded`` results: one item (a crop, a generation request)
coded by one codec at one target, with its original, the reconstruction the receiver
decoded (None when the codec skipped), and the payload bits. ``benchmarks/bench_badiff.py``
feeds generated requests against their reference images; ``diffstream evaluate`` feeds crops.

For every codec x target there are two rows:

- ``subset=common``: the items *every* listed codec sent at that target. It is the only fair
  comparison (a codec that skips the hard crops would otherwise look better), and the
  summary table, the plot and the BD figures use only it.
- ``subset=sent``: the items this codec sent, whatever the others did.

``n`` is the number of items in the subset; ``sent`` is how many of all ``total`` items this
codec sent at that target. Skips are counted, never averaged in as zeros. ``bpp`` is the
mean of payload bits / pixels over the subset; PSNR, MS-SSIM and LPIPS are means of per-item
values; SWD and the spectral ratio are computed once on the subset as a set.

``subset=fixed`` rows (``fixed_rows``): one set of items, the same at every target, that every
codec sent at every target of a range (``fixed_items``). Per-target common subsets change
with the target (at low targets only the easy items survive), so a curve through them can
fall as the rate rises; a Bjøntegaard fit needs one curve per codec on one set of images,
which these rows give (bpp, PSNR, MS-SSIM; the set metrics stay on ``common``).

``codec=real`` rows hold the real-vs-real SWD floor (two disjoint halves of the originals,
``metrics.realism.swd_floor``): one per target on that target's common items, and one
(``subset=all``, no target) on every item. It is the SWD between two *different* samples of
real images, N/2 against N/2. Compare it with ``swd_unpaired`` (one half of the
reconstructions against the other half of the originals, the same split: a perfect codec
scores the floor), not with ``swd``, which is *paired* (each reconstruction against its own
original, N against N; 0 for a perfect codec) and so usually lies below the floor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from diffstream.evaluate.scoring import EMPTY_SET, Scorer, SetScores

NAN = float("nan")
REAL = "real"


@dataclass(frozen=True)
class Coded:
    """One item coded by one codec at one target."""

    codec: str
    target: float  # the budget in bpp, or any ordered key (bench_diffc: the stopping step)
    item: str  # what the common subset intersects on: the same id in every codec's results
    original: np.ndarray  # H x W x 3 uint8
    recon: np.ndarray | None  # what the receiver decoded; None when not sent
    bits: int  # payload bits (0 when skipped)
    sent: bool

    def __post_init__(self) -> None:
        if self.sent and self.recon is None:
            raise ValueError(f"{self.codec} {self.item}: sent but no reconstruction")

    @property
    def bpp(self) -> float:
        return self.bits / (self.original.shape[0] * self.original.shape[1])


@dataclass(frozen=True)
class RdRow:
    codec: str
    target: float  # the budget in bpp (CSV column target_bpp); NaN on the overall floor
    subset: str  # common | sent | all (real rows only)
    n: int
    sent: int | None  # None on real rows
    total: int | None
    bpp: float
    psnr_db: float
    ms_ssim: float
    swd: float
    swd_ci_low: float
    swd_ci_high: float
    swd_unpaired: float  # comparable with the floor (same split); NaN on real rows
    spectral_ratio: float
    lpips: float


@dataclass(frozen=True)
class ItemScore:
    """The scalars of one ``Coded`` result, kept across targets (its images are not)."""

    codec: str
    target: float
    item: str
    sent: bool
    bpp: float
    psnr_db: float
    ms_ssim: float


# rd.csv's columns, in order (RdRow.target is written as target_bpp)
COLUMNS: tuple[str, ...] = tuple("target_bpp" if f.name == "target" else f.name
                                 for f in fields(RdRow))


def _key(target: float) -> float:
    return round(float(target), 9)  # 0.1 from a CSV and from a sum compare equal


def targets_of(results: Sequence[Coded]) -> list[float]:
    return sorted({_key(r.target) for r in results})


def common_items(results: Sequence[Coded], codecs: Sequence[str]) -> dict[float, list[str]]:
    """Per target: the items every codec in ``codecs`` sent, in first-seen order."""
    out: dict[float, list[str]] = {}
    for t in targets_of(results):
        here = [r for r in results if _key(r.target) == t]
        order = list(dict.fromkeys(r.item for r in here))
        sent_by = {c: {r.item for r in here if r.codec == c and r.sent} for c in codecs}
        out[t] = [i for i in order if all(i in sent_by[c] for c in codecs)]
    return out


def _check_unique(results: Sequence[Coded]) -> None:
    seen: set[tuple[str, float, str]] = set()
    for r in results:
        k = (r.codec, _key(r.target), r.item)
        if k in seen:
            raise ValueError(f"{r.codec} at target {r.target}: item {r.item!r} given twice")
        seen.add(k)


def rd_table(results: Sequence[Coded], codecs: Sequence[str], scorer: Scorer) -> list[RdRow]:
    """Every row: ``rd_rows`` and the floor over every item (``overall_floor``)."""
    everything = list(dict.fromkeys(r.item for r in results))
    return [*rd_rows(results, codecs, scorer),
            overall_floor(_originals(results, everything), scorer, everything)]


def rd_rows(results: Sequence[Coded], codecs: Sequence[str], scorer: Scorer, *,
            floor: bool = True, collect: list[ItemScore] | None = None) -> list[RdRow]:
    """Every codec x target x subset row, and (``floor``) each target's real floor row on
    its common items. The results may hold any targets: a caller short of memory can call
    this once per target and concatenate, passing ``collect`` to keep each result's scalars
    for ``fixed_rows``."""
    _check_unique(results)
    item_scores = {id(r): scorer.item(r.original, r.recon) for r in results if r.sent}
    if collect is not None:
        for r in results:
            sc = item_scores.get(id(r), {})
            collect.append(ItemScore(r.codec, _key(r.target), r.item, r.sent, r.bpp,
                                     sc.get("psnr_db", NAN), sc.get("ms_ssim", NAN)))
    common = common_items(results, codecs)
    rows: list[RdRow] = []
    for t, common_ids in common.items():
        here = [r for r in results if _key(r.target) == t]
        for codec in codecs:
            mine = [r for r in here if r.codec == codec]
            sent = [r for r in mine if r.sent]
            by_item = {r.item: r for r in sent}
            subsets = {"common": [by_item[i] for i in common_ids], "sent": sent}
            for name, subset in subsets.items():
                rows.append(_row(codec, t, name, subset, len(sent), len(mine), item_scores,
                                 scorer))
        if floor:
            originals = _originals(here, common_ids)
            rows.append(_floor_row(t, "common", originals, scorer, tuple(common_ids)))
    return rows


def overall_floor(originals: Sequence[np.ndarray], scorer: Scorer,
                  items: Sequence[str] | None = None) -> RdRow:
    """The ``codec=real, subset=all`` row: the floor over every original (``items``, their
    ids, lets a per-target floor on the same items be reused)."""
    return _floor_row(NAN, "all", list(originals), scorer,
                      tuple(items) if items is not None else None)


def _originals(results: Sequence[Coded], items: Sequence[str]) -> list[np.ndarray]:
    first: dict[str, np.ndarray] = {}
    for r in results:
        first.setdefault(r.item, r.original)
    return [first[i] for i in items]


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else NAN


def _row(codec: str, target: float, subset: str, items: list[Coded], sent: int, total: int,
         item_scores: dict[int, dict[str, float]], scorer: Scorer) -> RdRow:
    scores = [item_scores[id(r)] for r in items]
    key = ("set", codec, target, tuple(r.item for r in items))
    sets: SetScores = (scorer.set([r.original for r in items], [r.recon for r in items], key)
                       if items else EMPTY_SET)
    return RdRow(
        codec=codec, target=target, subset=subset, n=len(items), sent=sent, total=total,
        bpp=_mean([r.bpp for r in items]),
        psnr_db=_mean([s["psnr_db"] for s in scores]),
        ms_ssim=_mean([s["ms_ssim"] for s in scores]),
        swd=sets.swd, swd_ci_low=sets.swd_ci_low, swd_ci_high=sets.swd_ci_high,
        swd_unpaired=sets.swd_unpaired, spectral_ratio=sets.spectral_ratio,
        lpips=_mean([s["lpips"] for s in scores if "lpips" in s]))


def _floor_row(target: float, subset: str, originals: list[np.ndarray], scorer: Scorer,
               items: tuple[str, ...] | None) -> RdRow:
    res = scorer.floor(originals, None if items is None else ("floor", items))
    v, lo, hi = (res.value, res.ci_low, res.ci_high) if res is not None else (NAN, NAN, NAN)
    return RdRow(codec=REAL, target=target, subset=subset, n=len(originals), sent=None,
                 total=None, bpp=NAN, psnr_db=NAN, ms_ssim=NAN, swd=v, swd_ci_low=lo,
                 swd_ci_high=hi, swd_unpaired=NAN, spectral_ratio=NAN, lpips=NAN)


def common_rows(rows: Sequence[RdRow], codec: str | None = None) -> list[RdRow]:
    """The codec rows of the common subset (optionally one codec's), by target."""
    out = [r for r in rows if r.subset == "common" and r.codec != REAL
           and (codec is None or r.codec == codec)]
    return sorted(out, key=lambda r: r.target)


def has_common(rows: Sequence[RdRow]) -> bool:
    return any(r.n > 0 for r in common_rows(rows))



def fixed_items(scores: Sequence[ItemScore], codecs: Sequence[str], min_targets: int = 4
                ) -> tuple[list[float], list[str]]:
    """(targets, items) of the fixed set: the items every codec sent at every one of the
    targets kept. The lowest targets are dropped, one at a time, until those items are at
    least half of all items; failing that, the range (of at least ``min_targets`` targets)
    with the most items wins (the lower range on a tie). ([], []) when none has any."""
    targets = sorted({s.target for s in scores})
    everything = list(dict.fromkeys(s.item for s in scores))
    sent = {(s.codec, s.target, s.item) for s in scores if s.sent}
    best: tuple[list[float], list[str]] = ([], [])
    for start in range(len(targets) - min_targets + 1):
        kept = targets[start:]
        items = [i for i in everything
                 if all((c, t, i) in sent for c in codecs for t in kept)]
        if 2 * len(items) >= len(everything):
            return kept, items
        if len(items) > len(best[1]):
            best = (kept, items)
    return best


def fixed_rows(scores: Sequence[ItemScore], codecs: Sequence[str], min_targets: int = 4
               ) -> list[RdRow]:
    """The ``subset=fixed`` rows: each codec at each target of ``fixed_items``, on its items
    (per-item means only; SWD and the spectral ratio stay NaN)."""
    targets, items = fixed_items(scores, codecs, min_targets)
    chosen = set(items)
    rows = []
    for codec in codecs:
        for t in targets:
            mine = [s for s in scores if s.codec == codec and s.target == t]
            here = [s for s in mine if s.item in chosen]
            rows.append(RdRow(
                codec=codec, target=t, subset="fixed", n=len(here),
                sent=sum(s.sent for s in mine), total=len(mine),
                bpp=_mean([s.bpp for s in here]), psnr_db=_mean([s.psnr_db for s in here]),
                ms_ssim=_mean([s.ms_ssim for s in here]), swd=NAN, swd_ci_low=NAN,
                swd_ci_high=NAN, swd_unpaired=NAN, spectral_ratio=NAN, lpips=NAN))
    return rows
