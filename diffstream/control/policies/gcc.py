"""``policy: {kind: gcc}``: Google Congestion Control (draft-ietf-rmcat-gcc-02, libwebrtc's
goog_cc) as a per-frame budget controller.

Unlike the other built-ins this policy is stateful: GCC's filters must see every delivery
report once, in order, so it implements the ``on_report(report, now_s)`` hook that
``SenderCore.on_report`` calls, and keeps its ``GccController`` in a private attribute. Each
``SenderCore`` works on its own deep copy of the arm's policy, so arms, sweep runs and
repeated runs never share that state (and a run stays a function of scenario and seed).

Budget: the GCC rate (min of the delay-based and the loss-based estimates, clamped to
[min_rate_bps, max_rate_bps]) times one frame interval is the frame's on-link byte budget,
turned into payload bits with ``payload_bits_for_wire_budget``, clamped, and passed through
``escape_floor`` like every adaptive policy. The components and every constant's source are
in ``control/gcc/`` and docs/policies/gcc.md.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, PrivateAttr, model_validator

from diffstream.control.feedback import DeliveryReport
from diffstream.control.gcc.aimd import BACKOFF_FACTOR
from diffstream.control.gcc.controller import MIN_RATE_BPS, GccConfig, GccController
from diffstream.control.gcc.loss_based import HIGH_LOSS_THRESHOLD, LOW_LOSS_THRESHOLD
from diffstream.control.gcc.overuse import THRESHOLD_GAIN
from diffstream.control.gcc.receive_rate import RATE_WINDOW_S
from diffstream.control.gcc.trendline import SMOOTHING_COEF, WINDOW_SIZE, WINDOW_SIZE_RANGE
from diffstream.control.policies.base import (
    PROBE_AFTER_SKIPS,
    Observation,
    PolicyModel,
    clamp_bits,
    escape_floor,
    fmt,
    payload_bits_for_wire_budget,
)


class GccPolicy(PolicyModel):
    """GCC's sending rate, spent one frame interval at a time (see the module docstring)."""

    kind: Literal["gcc"] = "gcc"
    startup_bpp: float = Field(
        0.25, gt=0, description="Start rate as bits per pixel per frame (used unless "
        "start_rate_bps is set; raised to the codec's floor when below it).")
    start_rate_bps: float | None = Field(
        None, gt=0, description="Start rate in bit/s (libwebrtc's start bitrate); null: "
        "startup_bpp x pixels x fps.")
    min_rate_bps: float = Field(
        MIN_RATE_BPS, gt=0, description="Floor of the rate (libwebrtc: 5 kbit/s).")
    max_rate_bps: float | None = Field(
        None, gt=0, description="Ceiling of the rate; null: none beyond the scenario's "
        "max_bpp.")
    backoff_factor: float = Field(
        BACKOFF_FACTOR, gt=0, lt=1, description="beta: on over-use the rate becomes this "
        "times the received rate (libwebrtc field trial WebRTC-BweBackOffFactor).")
    window_size: int = Field(
        WINDOW_SIZE, ge=WINDOW_SIZE_RANGE[0], le=WINDOW_SIZE_RANGE[1],
        description="Trendline window in packet groups, here frames "
        "(WebRTC-Bwe-TrendlineEstimatorSettings window_size, 10-200).")
    smoothing_coef: float = Field(
        SMOOTHING_COEF, gt=0, lt=1, description="Trendline's exponential smoothing of the "
        "accumulated delay.")
    threshold_gain: float = Field(
        THRESHOLD_GAIN, gt=0, description="Scale of the trend against the adaptive threshold.")
    low_loss_threshold: float = Field(
        LOW_LOSS_THRESHOLD, ge=0, le=1, description="Loss at or below which the loss-based "
        "rate grows 8 %/s (WebRTC-BweLossExperiment).")
    high_loss_threshold: float = Field(
        HIGH_LOSS_THRESHOLD, ge=0, le=1, description="Loss above which the loss-based rate "
        "drops by half the loss fraction (WebRTC-BweLossExperiment).")
    rate_window_s: float = Field(
        RATE_WINDOW_S, gt=0, le=5, description="Window of the received-rate measurement "
        "(the draft's T, 0.5-1 s).")
    probe_after_skips: int | None = Field(
        PROBE_AFTER_SKIPS, ge=1, description="After this many consecutive skipped frames, "
        "probe at the codec's floor (policy.base.escape_floor); null: never.")

    _gcc: GccController | None = PrivateAttr(None)
    _pending: list[tuple[DeliveryReport, float]] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _ordered(self) -> GccPolicy:
        if self.max_rate_bps is not None and self.max_rate_bps < self.min_rate_bps:
            raise ValueError(f"max_rate_bps ({self.max_rate_bps}) must be >= min_rate_bps "
                             f"({self.min_rate_bps})")
        if self.high_loss_threshold < self.low_loss_threshold:
            raise ValueError(f"high_loss_threshold ({self.high_loss_threshold}) must be >= "
                             f"low_loss_threshold ({self.low_loss_threshold})")
        return self

    @property
    def label(self) -> str:
        return f"gcc(b={fmt(self.backoff_factor)})"

    @property
    def controller(self) -> GccController | None:
        """The GCC state (None until the first budget: the start rate needs the frame)."""
        return self._gcc

    def start_rate_for(self, obs: Observation) -> float:
        if self.start_rate_bps is not None:
            return self.start_rate_bps
        return obs.bits_for_bpp(self.startup_bpp) / obs.frame_interval_s

    def _controller(self, obs: Observation) -> GccController:
        if self._gcc is None:
            self._gcc = GccController(GccConfig(
                start_bps=self.start_rate_for(obs), min_bps=self.min_rate_bps,
                max_bps=self.max_rate_bps if self.max_rate_bps is not None else math.inf,
                backoff_factor=self.backoff_factor, window_size=self.window_size,
                smoothing_coef=self.smoothing_coef, threshold_gain=self.threshold_gain,
                low_loss=self.low_loss_threshold, high_loss=self.high_loss_threshold,
                rate_window_s=self.rate_window_s))
            for report, now_s in self._pending:  # reports that came before the first budget
                self._gcc.on_report(report, now_s)
            self._pending.clear()
        return self._gcc

    def on_report(self, report: DeliveryReport, now_s: float) -> None:
        """Every delivery report, once, in the order the sender receives them."""
        if self._gcc is None:
            self._pending.append((report, now_s))
        else:
            self._gcc.on_report(report, now_s)

    def rate_bps(self, obs: Observation) -> float:
        return self._controller(obs).target_bps

    def budget_bits(self, obs: Observation) -> int:
        wire_budget = self.rate_bps(obs) * obs.frame_interval_s / 8.0
        bits = clamp_bits(payload_bits_for_wire_budget(obs, wire_budget), obs)
        return escape_floor(bits, obs, self.probe_after_skips)
