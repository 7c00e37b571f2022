"""Session-level quality of experience: freezes, pauses, stalls and the QoE presets per arm.

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

**WebRTC counters, both modes** (``freeze_count``, ``total_freezes_duration_s``, ``pauses``,
``total_pauses_duration_s``). The freeze rule above on the display timeline of either mode,
with WebRTC's pause rule added: an interval longer than 5 s is a pause, not a freeze, and
does not enter the averaging window (W3C webrtc-stats ``pauseCount``: "paused if time
passed since last rendered frame exceeds 5 seconds"; libwebrtc ``VideoQualityObserver``
skips freeze detection and the window while ``is_paused_``). The boundary intervals follow
the same rule, so a session that shows nothing for more than 5 s is one pause. In playback
the display timeline starts when playback starts (derived from the first shown frame:
``display_k = start + k / fps + sum of stall_s up to k``) and lasts ``duration_s`` plus the
rebuffer time. Interactive ``freezes``/``freeze_s`` stay as defined above (a gap over 5 s
is one freeze there), so ``freeze_count`` differs from ``freezes`` only by pauses.

**Ratios.** ``rebuffer_ratio`` = stall time / (play time + stall time): playback
``freeze_s / (duration_s + freeze_s)``; interactive the stalled time lies inside the
session, ``freeze_s / duration_s``. ``stalled_pct`` = 100 x (freeze + pause time by the
WebRTC counters) / the display timeline's length.

**Per-slot quality.** ``Q_k`` = the chosen metric (``psnr_db`` or ``ssim_db``) of what the
viewer saw in slot ``k``. The session fills in stale-frame scores, so a missing score means
nothing had been shown yet: the summary means skip such slots, while the QoE counts them
as ``Q_k = 0 dB``.

**QoE.** ``qoe`` is the scenario's preset (``qoe: {preset: ...}``, default ``diffstream``);
``qoe_<preset>`` holds every preset, the chosen one with the scenario's options, the others
with their published defaults. The presets, their formulas and sources, and how frame
slots group into the papers' chunks are in :mod:`diffstream.metrics.qoe_presets`;
:func:`slot_trace` gives them each slot's quality, delivered bitrate and stall seconds
(:func:`slot_stalls_s`: a playback rebuffer lies in the slot of the frame it delayed, an
interactive freeze is split over the slots its interval overlaps). ``diffstream``
(Pensieve's linear structure with quality in dB, normalised per slot so arms of different
lengths compare)::

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
from operator import attrgetter
from typing import Literal

import numpy as np

from diffstream.metrics.prediction import prediction_error
from diffstream.metrics.qoe_presets import (
    DiffstreamQoE,
    QoEPreset,
    QoEWeights,
    SlotTrace,
    diffstream_score,
    score_all,
)
from diffstream.pipeline.records import ArmSummary, FrameRecord

__all__ = [
    "FREEZE_AVG_WINDOW", "FREEZE_MIN_INCREASE_S", "PAUSE_S", "QoEWeights", "arm_freezes",
    "qoe_score", "slot_stalls_s", "slot_trace", "ssim_to_db", "summarise_arm", "webrtc_events",
    "webrtc_freezes",
]

_seq = attrgetter("seq")  # the records' sort key: slot order

#: libwebrtc's minimum increase over the average interval for a freeze (kMinIncreaseForFreezeMs).
FREEZE_MIN_INCREASE_S = 0.150
#: libwebrtc's averaging window of inter-frame delays (frames).
FREEZE_AVG_WINDOW = 30
#: W3C webrtc-stats ``pauseCount``: no frame rendered for more than 5 s is a pause.
PAUSE_S = 5.0


def _is_freeze(delta: float, avg: float) -> bool:
    return delta > max(3.0 * avg, avg + FREEZE_MIN_INCREASE_S)


def webrtc_events(
    display_s: Sequence[float], nominal_interval_s: float, start_s: float, end_s: float,
    pause_s: float = PAUSE_S,
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(freezes, pauses) as WebRTC counts them, ``(start, duration)`` pairs in display time.

    An interval longer than ``pause_s`` is a pause: not a freeze, and it stays out of the
    averaging window. See the module docstring for the rule and the boundary intervals.
    """
    times = sorted(t for t in display_s if t is not None and math.isfinite(t))
    freezes: list[tuple[float, float]] = []
    pauses: list[tuple[float, float]] = []

    def judge(at: float, delta: float, avg: float) -> bool:
        """Record the interval if it is a pause or a freeze; True when it was a pause."""
        if delta > pause_s:
            pauses.append((at, delta))
            return True
        if _is_freeze(delta, avg):
            freezes.append((at, delta))
        return False

    if not times:  # nothing shown: the whole span is one freeze (or one pause)
        span = end_s - start_s
        if span > 0:
            (pauses if span > pause_s else freezes).append((start_s, span))
        return freezes, pauses
    window: deque[float] = deque(maxlen=FREEZE_AVG_WINDOW)

    def avg() -> float:
        return sum(window) / len(window) if window else nominal_interval_s

    lead = times[0] - start_s
    if lead > 0:
        judge(start_s, lead, avg())
    for prev, cur in zip(times[:-1], times[1:], strict=True):
        delta = cur - prev
        if not judge(prev, delta, avg()):
            window.append(delta)
    tail = end_s - times[-1]
    if tail > 0:
        judge(times[-1], tail, avg())
    return freezes, pauses


def webrtc_freezes(
    display_s: Sequence[float], nominal_interval_s: float, start_s: float, end_s: float
) -> list[tuple[float, float]]:
    """Freezes as WebRTC counts them, as ``(start, duration)`` pairs in display time, with
    no pause rule (a gap of any length is a freeze): the interactive ``freezes`` column.

    See the module docstring for the rule and the boundary intervals.
    """
    return webrtc_events(display_s, nominal_interval_s, start_s, end_s, pause_s=math.inf)[0]


def qoe_score(q: Sequence[float], stalled_fraction: float, weights: DiffstreamQoE) -> float:
    """The ``diffstream`` QoE of per-slot qualities ``q`` (dB); see the module docstring."""
    return diffstream_score(q, stalled_fraction, weights)


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


def _interactive_freezes(recs: Sequence[FrameRecord], fps: float, duration_s: float
                         ) -> tuple[float, list[tuple[float, float]]]:
    """(start of the display timeline, freezes on it) of an interactive arm, seq-sorted."""
    first = recs[0]
    lag = first.deadline_s - first.capture_s if first.deadline_s is not None else 0.0
    start = first.capture_s + lag
    shown = [r.display_s for r in recs if r.shown and r.display_s is not None]
    return start, webrtc_freezes(shown, 1.0 / fps, start, start + duration_s)


def _stall_events(recs: Sequence[FrameRecord], mode: Literal["interactive", "playback"],
                  fps: float, duration_s: float) -> tuple[float, list[tuple[float, float]]]:
    """(start of the display timeline, freezes on it) of a seq-sorted interactive arm;
    (0, []) in playback, whose stalls are the records' ``stall_s``. The summary computes
    this once and hands it to the per-slot and total views below."""
    if mode == "playback" or not recs:
        return 0.0, []
    return _interactive_freezes(recs, fps, duration_s)


def _freeze_totals(recs: Sequence[FrameRecord], mode: Literal["interactive", "playback"],
                   found: list[tuple[float, float]]) -> tuple[int, float]:
    if mode == "playback":
        stalls = [r.stall_s for r in recs if r.stall_s and r.stall_s > 0]
        return len(stalls), float(sum(stalls))
    return len(found), float(sum(d for _, d in found))


def arm_freezes(
    records: Sequence[FrameRecord],
    *,
    mode: Literal["interactive", "playback"],
    fps: float,
    duration_s: float,
) -> tuple[int, float]:
    """(count, seconds) of freezes (interactive) or rebuffer events (playback) of one arm."""
    recs = sorted(records, key=_seq) if mode == "interactive" else records
    _, found = _stall_events(recs, mode, fps, duration_s)
    return _freeze_totals(recs, mode, found)


def _slot_stalls(recs: Sequence[FrameRecord], mode: Literal["interactive", "playback"],
                 fps: float, start: float, found: list[tuple[float, float]]) -> list[float]:
    if mode == "playback":
        return [float(r.stall_s) if r.stall_s and r.stall_s > 0 else 0.0 for r in recs]
    if not recs:
        return []
    edges = np.arange(1, len(recs)) / fps  # inner slot boundaries, relative to start
    lo = np.concatenate(([-math.inf], edges))
    hi = np.concatenate((edges, [math.inf]))
    out = np.zeros(len(recs))
    for at, d in found:
        a = at - start
        out += np.clip(np.minimum(a + d, hi) - np.maximum(a, lo), 0.0, None)
    return out.tolist()


def slot_stalls_s(
    records: Sequence[FrameRecord],
    *,
    mode: Literal["interactive", "playback"],
    fps: float,
    duration_s: float,
) -> list[float]:
    """The arm's stall seconds (``arm_freezes``) placed on its frame slots, seq order.

    Playback: a record's ``stall_s`` is the rebuffering just before its frame played, so it
    lies in that frame's slot. Interactive: each freeze interval is split over the slot
    spans ``[start + k / fps, start + (k + 1) / fps)`` it overlaps; what lies before the
    first slot or after the last (a display past the session's end) goes to that slot, so
    the slots sum to ``freeze_s``.
    """
    recs = sorted(records, key=_seq)
    start, found = _stall_events(recs, mode, fps, duration_s)
    return _slot_stalls(recs, mode, fps, start, found)


def _slot_trace(recs: Sequence[FrameRecord], mode: Literal["interactive", "playback"],
                fps: float, duration_s: float, start: float,
                found: list[tuple[float, float]]) -> SlotTrace:
    _, freeze_s = _freeze_totals(recs, mode, found)
    return SlotTrace(psnr_db=[r.psnr_db for r in recs], ssim=[r.ssim for r in recs],
                     ssim_db=[r.ssim_db for r in recs], rate_kbps=_slot_rates(recs, fps),
                     stall_s=freeze_s, duration_s=duration_s, fps=fps,
                     slot_stall_s=_slot_stalls(recs, mode, fps, start, found))


def slot_trace(
    records: Sequence[FrameRecord],
    *,
    mode: Literal["interactive", "playback"],
    fps: float,
    duration_s: float,
) -> SlotTrace:
    """What the QoE presets score of one arm: per-slot quality, bitrate and stall."""
    recs = sorted(records, key=_seq)
    start, found = _stall_events(recs, mode, fps, duration_s)
    return _slot_trace(recs, mode, fps, duration_s, start, found)


def display_window(
    records: Sequence[FrameRecord], *, mode: Literal["interactive", "playback"], fps: float,
    duration_s: float,
) -> tuple[float, float]:
    """(start, end) of the viewer's display timeline (module docstring, WebRTC counters)."""
    return _display_window(sorted(records, key=_seq), mode, fps, duration_s)


def _display_window(recs: Sequence[FrameRecord], mode: Literal["interactive", "playback"],
                    fps: float, duration_s: float) -> tuple[float, float]:
    first = recs[0]
    if mode == "interactive":
        lag = first.deadline_s - first.capture_s if first.deadline_s is not None else 0.0
        start = first.capture_s + lag
        return start, start + duration_s
    rebuffer = 0.0
    start = None
    for r in recs:  # display_k = start + (k - k0) / fps + rebuffering charged up to k
        rebuffer += r.stall_s or 0.0
        if start is None and r.shown and r.display_s is not None:
            start = r.display_s - (r.seq - first.seq) / fps - rebuffer
    total = float(sum(r.stall_s or 0.0 for r in recs))
    if start is None:
        start = first.capture_s  # nothing played: only the length matters
    return start, start + duration_s + total


def slot_rates_kbps(records: Sequence[FrameRecord], fps: float) -> list[float]:
    """Delivered bitrate of what the viewer saw per slot: the shown frame's payload bits
    (a prefix counts prefix_step / codec_steps of them) times fps, repeated while stale."""
    return _slot_rates(sorted(records, key=_seq), fps)


def _slot_rates(recs: Sequence[FrameRecord], fps: float) -> list[float]:
    out = []
    bits = 0.0  # nothing shown yet
    for r in recs:
        if r.shown:
            frac = 1.0
            if r.partial and r.prefix_step is not None and r.codec_steps > 0:
                frac = min(1.0, r.prefix_step / r.codec_steps)
            bits = 8.0 * r.payload_bytes * frac
        out.append(bits * fps / 1000.0)
    return out


def summarise_arm(
    records: Sequence[FrameRecord],
    *,
    mode: Literal["interactive", "playback"],
    fps: float,
    pixels: int,
    duration_s: float,
    weights: QoEPreset,
    offered_bytes: float,
) -> ArmSummary:
    """Reduce one arm's frame log to the numbers the comparison table shows.

    ``weights`` is the scenario's ``qoe`` spec (any preset; the name predates presets).
    ``pixels`` is accepted so every caller passes the same context; ``bpp`` is already per
    frame in the records. Raises ``ValueError`` for an empty log (the arm has no name).
    """
    del pixels  # bpp comes per frame in the records
    if not records:
        raise ValueError("summarise_arm: no records (an arm needs at least one frame)")
    recs = sorted(records, key=_seq)
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

    # the freeze intervals once, for the totals and the per-slot stalls the presets score
    slots_start, stall_found = _stall_events(recs, mode, fps, duration_s)
    freezes, freeze_s = _freeze_totals(recs, mode, stall_found)
    start, end = _display_window(recs, mode, fps, duration_s)
    found, paused = webrtc_events([r.display_s for r in shown if r.display_s is not None],
                                  1.0 / fps, start, end)
    frozen_s = float(sum(d for _, d in found))
    paused_s = float(sum(d for _, d in paused))
    if mode == "playback":
        rebuffer_ratio = freeze_s / (duration_s + freeze_s) if duration_s + freeze_s > 0 else 0.0
    else:
        rebuffer_ratio = freeze_s / duration_s if duration_s > 0 else 0.0

    scores = score_all(_slot_trace(recs, mode, fps, duration_s, slots_start, stall_found),
                       weights)

    not_skipped = [r.bpp for r in recs if not r.skipped]
    delivered = float(sum(r.delivered_bytes for r in recs))
    pe = prediction_error(recs)
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
        qoe=scores[weights.preset],
        qoe_preset=weights.preset,
        qoe_diffstream=scores["diffstream"],
        qoe_pensieve_lin=scores["pensieve-lin"],
        qoe_pensieve_log=scores["pensieve-log"],
        qoe_pensieve_hd=scores["pensieve-hd"],
        qoe_puffer=scores["puffer"],
        rebuffer_ratio=rebuffer_ratio,
        stalled_pct=100.0 * (frozen_s + paused_s) / (end - start) if end > start else 0.0,
        freeze_count=len(found),
        total_freezes_duration_s=frozen_s,
        pauses=len(paused),
        total_pauses_duration_s=paused_s,
        pred_frames=pe.frames,
        pred_over_pct=pe.over_pct,
        pred_over_err=pe.over_err,
        pred_under_pct=pe.under_pct,
        pred_under_err=pe.under_err,
    )
