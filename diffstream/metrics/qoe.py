"""Session-level quality of experience: freezes, stalls and one QoE number per arm.

Definitions (the README quotes these):

**Freeze (interactive).** Counted the way WebRTC counts ``freezeCount``
(``RTCInboundRtpStreamStats``; ``VideoQualityObserver`` in libwebrtc). Walk the display
times of the frames that were shown, sorted. An interval ``delta`` between consecutive
displays is a freeze when ``delta > max(3 * avg, avg + 0.150 s)``, where ``avg`` is the mean
of the previous up-to-30 inter-frame intervals (``nominal_interval_s`` before there are
any). As in libwebrtc, every inter-frame interval, freezes included, enters the averaging
window. Two boundary intervals are judged by the same rule but never enter the window
(they are not inter-frame intervals): the lead-in from ``start_s`` to the first display and
the tail from the last display to ``end_s``. A stream that never shows anything is one
freeze lasting ``end_s - start_s``. Freeze time is the sum of the freeze intervals.

For a whole arm, :func:`summarise_arm` uses the viewer's display timeline: the capture
timeline shifted by the target latency ``L = deadline_s - capture_s`` of the first frame,
so ``start_s = t0 + L`` and ``end_s = t0 + L + duration_s`` (``t0`` = first capture time).
A frame displayed exactly on time then never opens a freeze, and a session that shows
nothing has ``stalled_fraction = 1``.

**Stall (playback).** Rebuffer events: ``FrameRecord.stall_s`` is the rebuffer time
charged before a frame played (Pensieve's and Sabre's rebuffer time). ``freezes`` = number
of records with ``stall_s > 0``; ``freeze_s`` = sum of ``stall_s``.

**Per-slot quality.** ``Q_k`` = the chosen metric (``psnr_db`` or ``ssim_db``) of what the
viewer saw in slot ``k``. The session fills in stale-frame scores, so a missing score means
nothing had been shown yet: the summary means skip such slots, while the QoE counts them
as ``Q_k = 0 dB``.

**QoE** (Pensieve's linear structure, quality minus smoothness minus rebuffer penalties,
normalised per slot so arms of different lengths compare)::

    QoE = mean_k Q_k - switch_weight * mean_k |Q_k - Q_{k-1}| - stall_weight * stalled_fraction
    stalled_fraction = freeze_s / duration_s

**SSIM in dB.** ``mean_ssim_db`` is the dB value of the *mean* SSIM index,
``-10 log10(1 - mean SSIM)``, as Puffer reports SSIM (averaging dB values would let one
near-lossless frame dominate).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from diffstream.pipeline.records import ArmSummary, FrameRecord

#: libwebrtc's minimum increase over the average interval for a freeze (kMinIncreaseForFreezeMs).
FREEZE_MIN_INCREASE_S = 0.150
#: libwebrtc's averaging window of inter-frame delays (frames).
FREEZE_AVG_WINDOW = 30


class QoEWeights(BaseModel):
    """Weights of the linear QoE; defaults put one second-in-fifty of stalling at 1 dB."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: Literal["psnr", "ssim_db"] = "psnr"  # per-slot quality Q_k (dB)
    switch_weight: float = 1.0  # dB of QoE lost per dB of quality change between slots
    stall_weight: float = 50.0  # dB of QoE lost per unit of stalled fraction of the session


def _is_freeze(delta: float, avg: float) -> bool:
    return delta > max(3.0 * avg, avg + FREEZE_MIN_INCREASE_S)


def webrtc_freezes(
    display_s: Sequence[float], nominal_interval_s: float, start_s: float, end_s: float
) -> list[tuple[float, float]]:
    """Freezes as WebRTC counts them, as ``(start, duration)`` pairs in display time.

    See the module docstring for the rule and the boundary intervals.
    """
    times = sorted(t for t in display_s if t is not None and math.isfinite(t))
    if not times:
        span = end_s - start_s
        return [(start_s, span)] if span > 0 else []
    freezes: list[tuple[float, float]] = []
    window: deque[float] = deque(maxlen=FREEZE_AVG_WINDOW)

    def avg() -> float:
        return sum(window) / len(window) if window else nominal_interval_s

    lead = times[0] - start_s
    if lead > 0 and _is_freeze(lead, avg()):
        freezes.append((start_s, lead))
    for prev, cur in zip(times[:-1], times[1:], strict=True):
        delta = cur - prev
        if _is_freeze(delta, avg()):
            freezes.append((prev, delta))
        window.append(delta)
    tail = end_s - times[-1]
    if tail > 0 and _is_freeze(tail, avg()):
        freezes.append((times[-1], tail))
    return freezes


def qoe_score(q: Sequence[float], stalled_fraction: float, weights: QoEWeights) -> float:
    """Linear QoE of per-slot qualities ``q`` (dB); see the module docstring."""
    qa = np.asarray(q, dtype=float)
    mean_q = float(qa.mean()) if qa.size else 0.0
    switch = float(np.abs(np.diff(qa)).mean()) if qa.size > 1 else 0.0
    return mean_q - weights.switch_weight * switch - weights.stall_weight * stalled_fraction


def _finite(x: float | None) -> bool:
    return x is not None and not math.isnan(x)


def _mean(values: Sequence[float | None]) -> float:
    kept = [v for v in values if _finite(v)]
    return float(np.mean(kept)) if kept else math.nan


def ssim_to_db(ssim: float) -> float:
    """SSIM index to dB, ``-10 log10(1 - ssim)``, as Puffer reports it (inf at 1)."""
    if math.isnan(ssim):
        return math.nan
    if ssim >= 1.0:
        return math.inf
    return -10.0 * math.log10(1.0 - ssim)


def arm_freezes(
    records: Sequence[FrameRecord],
    *,
    mode: Literal["interactive", "playback"],
    fps: float,
    duration_s: float,
) -> tuple[int, float]:
    """(count, seconds) of freezes (interactive) or rebuffer events (playback) of one arm."""
    if mode == "playback":
        stalls = [r.stall_s for r in records if r.stall_s and r.stall_s > 0]
        return len(stalls), float(sum(stalls))
    if not records:
        return 0, 0.0
    first = min(records, key=lambda r: r.seq)
    lag = first.deadline_s - first.capture_s if first.deadline_s is not None else 0.0
    start = first.capture_s + lag
    shown = [r.display_s for r in records if r.shown and r.display_s is not None]
    found = webrtc_freezes(shown, 1.0 / fps, start, start + duration_s)
    return len(found), float(sum(d for _, d in found))


def summarise_arm(
    records: Sequence[FrameRecord],
    *,
    mode: Literal["interactive", "playback"],
    fps: float,
    pixels: int,
    duration_s: float,
    weights: QoEWeights,
    offered_bytes: float,
) -> ArmSummary:
    """Reduce one arm's frame log to the numbers the comparison table shows.

    ``pixels`` is accepted so every caller passes the same context; ``bpp`` is already per
    frame in the records. Raises ``ValueError`` for an empty log (the arm has no name).
    """
    del pixels  # bpp comes per frame in the records
    if not records:
        raise ValueError("summarise_arm: no records (an arm needs at least one frame)")
    recs = sorted(records, key=lambda r: r.seq)
    n = len(recs)
    first = recs[0]

    shown = [r for r in recs if r.shown]
    lat_ms = [r.latency_s * 1000.0 for r in shown if _finite(r.latency_s)]
    if lat_ms:
        p50, p95, p99 = (float(v) for v in np.percentile(lat_ms, [50, 95, 99]))
    else:
        p50 = p95 = p99 = math.nan

    if mode == "interactive":
        missed = sum(1 for r in recs if not r.deadline_met)
    else:
        missed = sum(1 for r in recs if (r.stall_s and r.stall_s > 0) or not r.shown)

    freezes, freeze_s = arm_freezes(recs, mode=mode, fps=fps, duration_s=duration_s)
    stalled_fraction = freeze_s / duration_s if duration_s > 0 else 0.0

    def slot_q(r: FrameRecord) -> float:
        v = r.psnr_db if weights.metric == "psnr" else r.ssim_db
        return float(v) if _finite(v) else 0.0

    not_skipped = [r.bpp for r in recs if not r.skipped]
    delivered = float(sum(r.delivered_bytes for r in recs))
    return ArmSummary(
        arm=first.arm,
        codec=first.codec,
        policy=first.policy,
        frames=n,
        shown_pct=100.0 * len(shown) / n,
        mean_psnr_db=_mean([r.psnr_db for r in recs]),
        mean_ms_ssim=_mean([r.ms_ssim for r in recs]),
        mean_ssim_db=ssim_to_db(_mean([r.ssim for r in recs])),
        latency_p50_ms=p50,
        latency_p95_ms=p95,
        latency_p99_ms=p99,
        deadline_miss_pct=100.0 * missed / n,
        freezes=freezes,
        freeze_s=freeze_s,
        skipped=sum(1 for r in recs if r.skipped),
        partial=sum(1 for r in shown if r.partial),
        mean_bpp=_mean(not_skipped),
        delivered_kbps=delivered * 8.0 / duration_s / 1000.0 if duration_s > 0 else 0.0,
        utilisation=delivered / offered_bytes if offered_bytes > 0 else 0.0,
        qoe=qoe_score([slot_q(r) for r in recs], stalled_fraction, weights),
    )
