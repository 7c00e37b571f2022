"""AIMD: additive increase, multiplicative decrease, TCP Reno's rule applied to a frame
budget. While the path looks clear the budget grows by ``step_bpp`` per frame; on loss, or a
queue that takes longer than ``max_queue_s`` to drain at the measured throughput, it is cut
by ``beta``, at most once per round trip (the reports that caused the cut lag one RTT, so a
second cut before then would punish the same congestion twice).
"""

from __future__ import annotations

from pydantic import Field, PrivateAttr

from diffstream.control.policies import Observation, PolicyModel, clamp_bits, harmonic_mean


class AIMDPolicy(PolicyModel):
    # `kind` is inherited (kind: str): diffstream stores the reference the scenario used.
    start_bpp: float = Field(0.25, gt=0, description="budget before any report")
    step_bpp: float = Field(0.05, gt=0, description="additive increase per frame")
    beta: float = Field(0.5, gt=0, lt=1, description="multiplicative decrease")
    max_queue_s: float = Field(0.05, gt=0, description="queueing delay counted as congestion")
    max_loss: float = Field(0.02, ge=0, le=1, description="loss rate counted as congestion")
    _bits: float | None = PrivateAttr(None)  # state: one policy object per arm
    _hold_until_s: float = PrivateAttr(-1.0)

    @property
    def label(self) -> str:
        return f"aimd(+{self.step_bpp:g},x{self.beta:g})"

    def budget_bits(self, obs: Observation) -> int:
        bits = self._bits if self._bits is not None else obs.bits_for_bpp(self.start_bpp)
        rate = harmonic_mean(obs.throughput_bps[-5:])
        queued = obs.backlog_bytes if obs.backlog_bytes is not None else obs.inflight_bytes
        congested = obs.loss_rate > self.max_loss or (
            rate is not None and queued * 8 / rate > self.max_queue_s)
        if congested and obs.now_s >= self._hold_until_s:
            bits *= self.beta
            self._hold_until_s = obs.now_s + (obs.rtt_s or obs.frame_interval_s)
        elif not congested:
            bits += obs.bits_for_bpp(self.step_bpp)
        self._bits = min(max(bits, obs.min_bits), obs.max_bits)  # never below the floor
        return clamp_bits(self._bits, obs)
