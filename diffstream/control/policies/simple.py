"""The closed-form controllers: fixed, rate-based, deadline-aware and buffer-based (BBA).

Each one is a few lines of arithmetic on the observation, so a table of results can be traced
back to a formula. The search-based MPC and the clairvoyant oracle live in their own modules.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from diffstream.control.policies.base import (
    PROBE_AFTER_SKIPS,
    Observation,
    PolicyModel,
    clamp_bits,
    escape_floor,
    fmt,
    payload_bits_for_wire_budget,
    queued_bytes,
    room_for_probe,
    startup_bits,
    time_to_deadline_s,
)
from diffstream.control.predictors import (
    PredictorModel,
    PredictorSpec,
    check_predictor_options,
    harmonic_predictor,
)

_WINDOW = Field(5, ge=1, description="Number of most recent throughput samples averaged.")
_STARTUP = Field(
    0.25, gt=0, description="Bits per pixel used until the first throughput sample arrives "
    "(raised to the codec's floor when below it)."
)
_PREDICTOR = Field(
    None, description="Throughput predictor: {kind: harmonic|ewma|kalman, ...} "
    "(control/predictors.py); null: the harmonic mean of the last `window` samples."
)
_PROBE = Field(
    PROBE_AFTER_SKIPS, ge=1, description="After this many consecutive skipped frames, probe "
    "at the codec's floor (doubling while the probes are skipped too); null: never. See "
    "policy.base.escape_floor."
)


class FixedPolicy(PolicyModel):
    """Constant bits per pixel: the no-adaptation baseline every other policy must beat.

    It does not apply ``escape_floor``: a fixed budget is the scenario's choice, not an
    estimate that can be stuck, and lifting it to the codec's floor would make the baseline
    adaptive. A ``bpp`` below the floor skips every frame, and each record says why.
    """

    kind: Literal["fixed"] = "fixed"
    bpp: float = Field(0.5, gt=0, description="Bits per pixel for every frame.")

    @property
    def label(self) -> str:
        return f"fixed(bpp={fmt(self.bpp)})"

    def budget_bits(self, obs: Observation) -> int:
        return clamp_bits(obs.bits_for_bpp(self.bpp), obs)


class RatePolicy(PolicyModel):
    """Throughput-based: spend one frame interval's worth of the sustainable link rate.

    The sustainable rate is the harmonic mean of recent samples times a safety factor (the
    FESTIVE/Pensieve "rate-based" baseline). It ignores queued bytes and deadlines, so it keeps
    up on average but does not recover from a backlog.

    No dead end below the codec's floor (``escape_floor``): the startup budget is at least
    the floor, and after ``probe_after_skips`` skipped frames in a row the next frame probes
    at the floor (doubling while probes are skipped too), unless loss or a growing queue
    says the link is already full.
    """

    kind: Literal["rate"] = "rate"
    window: int = _WINDOW
    safety: float = Field(
        0.85, gt=0, le=1, description="Fraction of the estimated throughput the budget may use."
    )
    startup_bpp: float = _STARTUP
    probe_after_skips: int | None = _PROBE
    predictor: PredictorSpec | None = _PREDICTOR

    @model_validator(mode="after")
    def _one_estimator(self) -> RatePolicy:
        check_predictor_options(self, ("window",))
        return self

    @property
    def label(self) -> str:
        if self.predictor is not None:
            return f"rate(p={self.predictor.label},s={fmt(self.safety)})"
        return f"rate(k={self.window},s={fmt(self.safety)})"

    def throughput_predictor(self) -> PredictorModel:
        """The predictor in use: ``predictor``, else the harmonic mean of ``window``."""
        return self.predictor or harmonic_predictor(self.window)

    def predicted_throughput_bps(self, obs: Observation) -> float | None:
        """The throughput the budget is made for (None before any sample)."""
        return self.throughput_predictor().predict(obs.throughput_bps)

    def budget_bits(self, obs: Observation) -> int:
        thr = self.predicted_throughput_bps(obs)
        if thr is None:
            bits = startup_bits(obs, self.startup_bpp)
        else:
            wire_budget = thr * self.safety * obs.frame_interval_s / 8.0
            bits = clamp_bits(payload_bits_for_wire_budget(obs, wire_budget), obs)
        return escape_floor(bits, obs, self.probe_after_skips)


class DeadlinePolicy(PolicyModel):
    """Largest budget whose expected delivery still meets this frame's deadline.

    Expected delivery = drain the bytes already in flight plus this frame at the (discounted)
    harmonic-mean throughput, plus encode, one-way delay and decode:
    ``(queued + wire(b)) * 8 / thr + encode + owd + decode <= deadline - now``, where
    ``queued`` is the sender's backlog estimate (``queued_bytes``).
    In playback mode the window is ``buffer_s`` plus one frame interval (see
    ``time_to_deadline_s``). Returns 0 (skip) when even an empty payload would be late.

    ``burst_frames`` caps the frame at that many frame intervals' worth of throughput. The
    pure rule (``burst_frames: null``) spends the whole latency window on one frame whenever
    the queue is empty, which starves the next frames (they see that frame in flight and
    skip): a stream of alternating huge frames and skips. Real-time senders bound a frame's
    size by the rate for the same reason (WebRTC's frame-size limit, Salsify's per-frame
    budget); the default allows two intervals' worth.

    Below the codec's floor it probes like every adaptive policy (``escape_floor``): the
    floor at startup, and after ``probe_after_skips`` skips in a row, unless the queue
    ahead, loss or the fixed latency already rule the frame out.
    """

    kind: Literal["deadline"] = "deadline"
    window: int = _WINDOW
    safety: float = Field(
        0.9, gt=0, le=1, description="Fraction of the estimated throughput the budget may use."
    )
    startup_bpp: float = _STARTUP
    burst_frames: float | None = Field(
        2.0, gt=0, description="Cap: this many frame intervals of throughput (null: no cap)."
    )
    robust: bool = Field(
        True, description="Discount throughput by the recent prediction error (robust MPC's "
        "estimator), so the margin grows with the link's variability."
    )
    probe_after_skips: int | None = _PROBE
    predictor: PredictorSpec | None = _PREDICTOR

    @model_validator(mode="after")
    def _one_estimator(self) -> DeadlinePolicy:
        check_predictor_options(self, ("window", "robust"))
        return self

    @property
    def label(self) -> str:
        if self.predictor is not None:
            return f"deadline(p={self.predictor.label},s={fmt(self.safety)})"
        return f"deadline(k={self.window},s={fmt(self.safety)})"

    def throughput_predictor(self) -> PredictorModel:
        """The predictor in use: ``predictor``, else the harmonic mean of ``window``
        (robust as ``robust`` says)."""
        return self.predictor or harmonic_predictor(self.window, self.robust)

    def predicted_throughput_bps(self, obs: Observation) -> float | None:
        """The throughput (before ``safety``) the budget is made for (None before any
        sample)."""
        return self.throughput_predictor().predict(obs.throughput_bps)

    def budget_bits(self, obs: Observation) -> int:
        hm = self.predicted_throughput_bps(obs)
        if hm is None:
            return escape_floor(startup_bits(obs, self.startup_bpp), obs, self.probe_after_skips)
        thr = hm * self.safety
        window_s = time_to_deadline_s(obs)
        owd = obs.one_way_delay_s or 0.0
        slack_s = window_s - obs.encode_s - owd - obs.decode_s
        wire_budget = slack_s * thr / 8.0 - queued_bytes(obs)
        if self.burst_frames is not None:
            wire_budget = min(wire_budget, self.burst_frames * obs.frame_interval_s * thr / 8.0)
        bits = clamp_bits(payload_bits_for_wire_budget(obs, wire_budget), obs)
        return escape_floor(bits, obs, self.probe_after_skips)


class BufferPolicy(PolicyModel):
    """Buffer-based adaptation, BBA-0's rate map (Huang et al., SIGCOMM'14).

    The playout buffer level alone picks the rate: ``min_bpp`` up to ``reservoir_s``,
    ``max_bpp`` from ``reservoir_s + cushion_s`` on, linear in between. It needs no throughput
    estimate, which is its point. Meant for playback mode: in interactive mode the buffer stays
    near 0, so it always returns ``min_bpp``.

    BBA's R_min is the lowest rate the codec can produce: a ``min_bpp`` below the codec's
    floor (``obs.min_bits``) is raised to it (when the floor fits ``max_bits``), since a
    budget the codec cannot meet is no rate at all - in interactive mode it would skip every
    frame for good. BBA reads no link estimate, so the raise waits while the link has no
    room (``room_for_probe``: queue ahead over a frame interval, heavy loss); the frame is
    then skipped, which drains the queue. ``escape_floor`` handles a floor that is an
    underestimate for the content (budgets double while frames at it are still skipped).
    """

    kind: Literal["buffer"] = "buffer"
    reservoir_s: float = Field(
        1.0, ge=0, description="Buffer level (s) at or below which the minimum rate is used."
    )
    cushion_s: float = Field(
        2.0, gt=0, description="Buffer span (s) over which the rate ramps from min to max."
    )
    min_bpp: float = Field(0.1, gt=0, description="Bits per pixel at an empty reservoir.")
    max_bpp: float = Field(2.0, gt=0, description="Bits per pixel above reservoir + cushion.")
    probe_after_skips: int | None = _PROBE

    @model_validator(mode="after")
    def _ordered(self) -> BufferPolicy:
        if self.max_bpp < self.min_bpp:
            raise ValueError(f"max_bpp ({self.max_bpp}) must be >= min_bpp ({self.min_bpp})")
        return self

    @property
    def label(self) -> str:
        return (
            f"buffer(r={fmt(self.reservoir_s)},c={fmt(self.cushion_s)},"
            f"bpp={fmt(self.min_bpp)}-{fmt(self.max_bpp)})"
        )

    def bpp_for_buffer(self, buffer_s: float) -> float:
        """BBA-0's piecewise-linear map from buffer level to bits per pixel."""
        if buffer_s <= self.reservoir_s:
            return self.min_bpp
        if buffer_s >= self.reservoir_s + self.cushion_s:
            return self.max_bpp
        frac = (buffer_s - self.reservoir_s) / self.cushion_s
        return self.min_bpp + (self.max_bpp - self.min_bpp) * frac

    def budget_bits(self, obs: Observation) -> int:
        bits = clamp_bits(obs.bits_for_bpp(self.bpp_for_buffer(obs.buffer_s)), obs)
        if bits < obs.min_bits <= obs.max_bits and room_for_probe(obs):
            bits = obs.min_bits  # R_min: the codec's lowest rate, while the link has room
        return escape_floor(bits, obs, self.probe_after_skips)
