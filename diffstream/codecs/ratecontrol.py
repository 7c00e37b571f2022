"""Rate control shared by the codecs: the largest payload that fits a bit budget, found by
searching one integer knob (quality, a quantiser index, ...) with few real encodes.

A codec supplies ``encode(knob) -> bytes``, the knob range ``lo..hi`` (payload size must
grow, at least nearly, with the knob: map a "coarser is higher" knob to ``hi - index``) and
a rate model: its guess of the payload bits at any knob, as ``log_bits(knobs)`` (natural
log). ``fit_budget`` then runs the search below and returns the best fitting payload of all
the probes, with the number of real encodes made.

The search (first written for the Pillow codecs, which still behave exactly as before):

- Every probe is kept. The answer is bracketed by ``fit_lo`` (the last knob that fitted)
  and ``fail_hi`` (the last that did not); probes always fall strictly between the two,
  so no knob is encoded twice and the bracket only shrinks.
- Prediction: the model corrected by this call's probes (their log-ratio to the model,
  interpolated between probes and held flat beyond them) gives the largest knob predicted
  to fit ``aim * budget``. On small ranges (at most ``DENSE_LIMIT`` knobs) every candidate
  is evaluated; on larger ones the search walks down from the top in doubling steps to the
  first knob predicted to fit and bisects back up (the topmost fitting region, so a model
  that is not monotone everywhere still works), so a model evaluation may cost real work
  (a closed-form code length) without 4096 of them.
- While one side of the bracket is unknown, the probe aims past the prediction by a margin
  that doubles (1, 2, 4, ... times ``margin_unit``) until the answer is bracketed; once
  bracketed, corrected prediction alternates with bisection so a skewed model cannot
  stall the search.
- It stops when the bracket is closed (on a monotone size curve that is the exact
  optimum), when a fitting payload is within ``tolerance`` of the budget or less than
  ``slack_bits`` under it (both off by default), or after ``max_probes`` encodes. If
  nothing fitted by then, ``lo`` is still probed, so a skip always rests on a real encode
  at the coarsest knob.
- Non-monotone sizes are safe: the payload returned is the largest fitting one among all
  probes (ties: the higher knob), and it is never over the budget.

``TableModel`` is a rate model kept across calls (knob -> bits points, interpolated in log
bits), with ``updated`` to rescale it to the frame just coded; ``FunctionModel`` wraps a
closed-form estimate (say, an ideal code length) with a calibration factor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

DENSE_LIMIT = 256  # knob ranges up to this size are predicted by evaluating every candidate
LOG_FLOOR_BITS = 8  # sizes are logged as max(bits, 8): an empty payload has no log
GAP_GRID = 16  # grid points searched when the downward walk overshoots (see predict_knob)


class RateModel(Protocol):
    """A codec's guess of its payload size: natural log of the bits at each knob."""

    def log_bits(self, knobs: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class TableModel:
    """Rate model from points (knob -> bits), interpolated in log(bits), flat beyond."""

    points: Mapping[int, float]

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError("a TableModel needs at least one point")

    def _table(self) -> tuple[np.ndarray, np.ndarray]:
        ks = np.array(sorted(self.points))
        return ks, np.log([self.points[k] for k in ks])

    def log_bits(self, knobs: np.ndarray) -> np.ndarray:
        ks, logb = self._table()
        return np.interp(knobs, ks, logb)

    def updated(self, probed: Mapping[int, int]) -> TableModel:
        """The model rescaled to the frame just coded (by the median log-ratio of its probes
        to the model), with the probed points overwriting it: it tracks a stream."""
        if not probed:
            return self
        ks, logb = self._table()
        ratios = [np.log(max(b, LOG_FLOOR_BITS)) - np.interp(k, ks, logb)
                  for k, b in probed.items()]
        factor = float(np.exp(np.median(ratios)))
        points = {k: b * factor for k, b in self.points.items()}
        points.update({k: float(max(b, LOG_FLOOR_BITS)) for k, b in probed.items()})
        return TableModel(points)


@dataclass
class FunctionModel:
    """Rate model ``scale * bits_at(knob)`` (say, a closed-form code length times a
    calibration ratio); evaluations are cached, as each may cost real work."""

    bits_at: Callable[[int], float]
    scale: float = 1.0
    _cache: dict[int, float] = field(default_factory=dict, repr=False)

    def bits(self, knob: int) -> float:
        k = int(knob)
        if k not in self._cache:
            self._cache[k] = float(self.bits_at(k))
        return self._cache[k]

    def log_bits(self, knobs: np.ndarray) -> np.ndarray:
        return np.log([max(self.scale * self.bits(int(k)), 1e-9)
                       for k in np.atleast_1d(knobs)])


@dataclass
class RateSearch:
    """The outcome of one search."""

    knob: int | None  # None: nothing fitted (the payload is empty)
    payload: bytes
    probes: int  # real encodes made
    probed: dict[int, int]  # knob -> payload bits, every probe
    floor_bits: int | None  # bits at ``lo`` when it was probed and did not fit

    @property
    def bits(self) -> int:
        return 8 * len(self.payload)


def _corrected(model: RateModel, probed: Mapping[int, int]) -> Callable[[np.ndarray], np.ndarray]:
    """log-bits predicted by the model, corrected by this call's probes."""
    if not probed:
        return model.log_bits
    fk = np.array(sorted(probed))
    err = (np.log([max(probed[k], LOG_FLOOR_BITS) for k in fk]) - model.log_bits(fk))

    def predict(knobs: np.ndarray) -> np.ndarray:
        return model.log_bits(knobs) + np.interp(knobs, fk, err)

    return predict


def predict_knob(model: RateModel, probed: Mapping[int, int], target_bits: float,
                 lo: int, hi: int) -> int:
    """The largest knob strictly inside (lo, hi) predicted to fit ``target_bits``; lo + 1
    when none is."""
    predict = _corrected(model, probed)
    target = float(np.log(max(target_bits, 1)))
    if hi - lo - 1 <= DENSE_LIMIT:
        cand = np.arange(lo + 1, hi)
        ok = cand[predict(cand) <= target]
        return int(ok[-1]) if ok.size else lo + 1

    def fits(k: int) -> bool:
        return bool(predict(np.array([k]))[0] <= target)

    # Walk down from the top with doubling steps to the first knob predicted to fit, then
    # bisect between it and the last one that did not: the largest fitting knob of the
    # topmost region that fits, without assuming the model monotone over the whole range
    # (GIC's code length grows again at its coarsest q).
    top, step = hi - 1, 1
    if fits(top):
        return top
    above = top  # predicted not to fit
    k = top - step
    while k > lo + 1 and not fits(k):
        above, step = k, 2 * step
        k = top - step
    if k <= lo + 1:
        k = lo + 1
        if not fits(k):
            # The walk stepped over everything down to the bottom: a region that fits may
            # still hide in its last gap (a U-shaped model); look on a grid there.
            grid = [int(g) for g in np.linspace(lo + 1, above, GAP_GRID + 2)[1:-1]]
            ok = [g for g in grid if fits(g)]
            if not ok:
                return lo + 1
            k = max(ok)
            above = min((g for g in grid if g > k), default=above)
    while above - k > 1:  # fits(k), not fits(above)
        mid = (k + above) // 2
        if fits(mid):
            k = mid
        else:
            above = mid
    return k


def fit_budget(encode: Callable[[int], bytes], budget_bits: int, lo: int, hi: int,
               model: RateModel, *, max_probes: int = 8, aim: float = 1.0,
               tolerance: float = 0.0, slack_bits: int = 0, margin_unit: int | None = None
               ) -> RateSearch:
    """The largest payload <= ``budget_bits`` over knobs ``lo..hi`` (see the module notes).

    aim: predictions aim at ``aim * budget`` (below 1: land under the budget first time).
    tolerance / slack_bits: stop once a fitting payload is within this fraction of the
    budget, or fewer than this many bits under it (0: search until the bracket closes).
    margin_unit: knob units per step of the bracketing margin (default: range / 100).
    """
    if hi < lo:
        raise ValueError(f"empty knob range {lo}..{hi}")
    if max_probes < 1:
        raise ValueError(f"max_probes must be >= 1, got {max_probes}")
    budget = int(budget_bits)
    unit = margin_unit if margin_unit is not None else max(1, (hi - lo + 1) // 100)
    target = budget * aim
    fit_lo, fail_hi = lo - 1, hi + 1  # the answer is in [fit_lo, fail_hi)
    probed: dict[int, int] = {}
    best_k: int | None = None
    best = b""
    margin = 0  # margin steps past the prediction while only one side is known
    bracketed_steps = 0

    def close_enough() -> bool:
        if best_k is None or not (tolerance > 0 or slack_bits > 0):
            return False
        bits = 8 * len(best)
        return bits >= budget * (1 - tolerance) or budget - bits < slack_bits

    while fail_hi - fit_lo > 1:
        if close_enough():
            break
        if len(probed) >= max_probes:
            if best_k is not None:
                break
            k = lo  # must still settle the skip decision on a real encode
        elif fit_lo >= lo and fail_hi <= hi:
            if bracketed_steps % 2:
                k = (fit_lo + fail_hi) // 2
            else:
                k = predict_knob(model, probed, target, fit_lo, fail_hi)
            bracketed_steps += 1
        else:
            k = predict_knob(model, probed, target, fit_lo, fail_hi)
            k = k + margin * unit if fit_lo >= lo else k - max(margin - 1, 0) * unit
            margin = max(1, 2 * margin)
        k = min(max(k, fit_lo + 1), fail_hi - 1)
        payload = bytes(encode(k))
        probed[k] = 8 * len(payload)
        if probed[k] <= budget:
            fit_lo = k
            if best_k is None or len(payload) > len(best) or (
                    len(payload) == len(best) and k > best_k):
                best_k, best = k, payload
        else:
            fail_hi = k
    floor = probed.get(lo) if best_k is None else None
    return RateSearch(knob=best_k, payload=best, probes=len(probed), probed=probed,
                      floor_bits=floor)
