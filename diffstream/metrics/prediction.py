"""Throughput prediction error, as Sabre reports it (over- and under-estimates).

Per frame, the policy's prediction at decision time (``FrameRecord.throughput_pred_bps``) is
compared with what that frame then measured (``throughput_bps``: the receiver's busy-time
sample). Sabre (``sabre.py``, Spiteri et al.) counts an over-estimate when the prediction
is above the measured throughput and otherwise a good (under-)estimate, and reports each
kind's count and mean error. Here the errors are relative to the measured throughput, so
arms on different links compare (Sabre's are absolute, kbit/s):

* over-estimate: ``pred > measured``; error ``(pred - measured) / measured``;
* under-estimate: ``pred <= measured``; error ``(measured - pred) / measured``.

Frames without a prediction (start-up, policies that predict nothing) or without a sample
(lost, or no measurable busy time) are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from diffstream.pipeline.records import FrameRecord


@dataclass(frozen=True)
class PredictionError:
    frames: int  # frames with both a prediction and a measured sample
    over_pct: float  # share of them over-estimated (%), NaN when frames == 0
    over_err: float  # mean relative error of the over-estimates, NaN when none
    under_pct: float
    under_err: float


def _usable(v: float | None) -> bool:
    return v is not None and math.isfinite(v) and v > 0


def prediction_error(records: Iterable[FrameRecord]) -> PredictionError:
    over: list[float] = []
    under: list[float] = []
    for r in records:
        pred, got = r.throughput_pred_bps, r.throughput_bps
        if not (_usable(got) and pred is not None and math.isfinite(pred)):
            continue
        assert got is not None
        if pred > got:
            over.append((pred - got) / got)
        else:
            under.append((got - pred) / got)
    n = len(over) + len(under)

    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs) if xs else math.nan

    return PredictionError(
        frames=n,
        over_pct=100.0 * len(over) / n if n else math.nan, over_err=mean(over),
        under_pct=100.0 * len(under) / n if n else math.nan, under_err=mean(under))
