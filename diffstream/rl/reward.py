"""The environment's reward: the arm's ``diffstream`` QoE, split over the frames.

The run is network-only (``rl/endpoints.py``), so no frame is decoded or scored. Each slot's
quality comes from the codec's measured rate-quality curve instead (``modelled_records``):

* a frame that was shown and whose payload reaches the codec's floor (``min_bits``) shows
  ``rate_quality.quality_at(bpp)`` dB (the curve MPC plans with: psnr or ssim_db, the
  scenario's ``qoe.metric``);
* a frame below the floor would have been skipped by the codec (a header-only frame): it
  is not shown, and its slot repeats the last shown frame, as a stale slot does in a real
  run (deviation: the network-only link still carried its payload bytes);
* a slot before anything was shown scores 0 dB, as in ``metrics.qoe``.

The score of the preset (``metrics/qoe_presets.py``) is

    QoE = mean_k Q_k - switch_weight * mean_k |Q_k - Q_{k-1}| - stall_weight * S / duration_s

which is a sum over slots: ``Q_k / n - switch_weight * |Q_k - Q_{k-1}| / (n - 1) -
stall_weight * S_k / duration_s`` with ``S_k`` the stall seconds placed on slot ``k``
(``metrics.qoe.slot_stalls_s``). ``cumulative_qoe(prefix)`` is that sum over the frames
whose outcome is known so far (the stall placement recomputed on the prefix, whose
display timeline ends after ``len(prefix)`` slots); the reward of a step is the change of
it since the previous step. The rewards of an episode therefore add up to exactly the
QoE of the finished arm's modelled records (the prefix of the last step is the whole arm).
A stall that a later frame ends can move the placement, so single rewards can be revised
by later ones; the sum cannot.

The weights are the scenario's ``qoe:`` when it is the ``diffstream`` preset, otherwise the
preset's defaults (``DiffstreamQoE()``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from diffstream.control.policies.base import RateQualityModel
from diffstream.metrics.qoe import slot_stalls_s
from diffstream.metrics.qoe_presets import DiffstreamQoE
from diffstream.pipeline.records import FrameRecord
from diffstream.scenario.schema import Scenario


def qoe_spec(scenario: Scenario) -> DiffstreamQoE:
    q = scenario.qoe
    return q if isinstance(q, DiffstreamQoE) else DiffstreamQoE()


class SlotQuality:
    """Fills the slot quality of an arm's records in sequence order (module docstring);
    keeps the last shown frame's quality between calls, so a prefix can grow a frame at a
    time. ``metric`` is ``psnr`` or ``ssim_db``."""

    def __init__(self, rq: RateQualityModel, min_bits: int, metric: str) -> None:
        self.rq, self.min_bits = rq, int(min_bits)
        self.key = "psnr_db" if metric == "psnr" else "ssim_db"
        self.last: float | None = None  # quality of the last frame shown, None before one

    def next(self, r: FrameRecord) -> FrameRecord:
        coded = r.payload_bytes * 8 >= self.min_bits and not r.skipped
        shown = r.shown and coded
        if shown:
            self.last = self.rq.quality_at(r.bpp)
        changes: dict[str, object] = {"shown": shown, self.key: self.last}
        if not shown:
            changes.update(display_s=None, latency_s=None, stall=True)
        return dataclasses.replace(r, **changes)


def modelled_records(records: Sequence[FrameRecord], rq: RateQualityModel, min_bits: int,
                     metric: str) -> list[FrameRecord]:
    """The records with the slot quality filled from the rate-quality curve."""
    fill = SlotQuality(rq, min_bits, metric)
    return [fill.next(r) for r in sorted(records, key=lambda r: r.seq)]


def cumulative_qoe(prefix: Sequence[FrameRecord], scenario: Scenario) -> float:
    """The ``diffstream`` QoE terms of the modelled records ``prefix`` (frames 0..m-1 of the
    arm, in order) summed over those slots; equals the arm's QoE when m = all frames."""
    spec = qoe_spec(scenario)
    n = scenario.frames_per_arm
    m = len(prefix)
    if m == 0:
        return 0.0
    key = "psnr_db" if spec.metric == "psnr" else "ssim_db"
    q = [0.0 if (v := getattr(r, key)) is None or math.isnan(v) else float(v) for r in prefix]
    fps = scenario.frame.fps
    duration = max(scenario.duration_s, 1e-9)
    span = duration if m >= n else m / fps
    stalls = slot_stalls_s(prefix, mode=scenario.mode.kind, fps=fps, duration_s=span)
    switches = sum(abs(b - a) for a, b in zip(q[:-1], q[1:], strict=True))
    switch_term = switches / (n - 1) if n > 1 else 0.0
    return (sum(q) / n - spec.switch_weight * switch_term
            - spec.stall_weight * sum(stalls) / duration)
