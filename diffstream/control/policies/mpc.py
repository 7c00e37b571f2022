"""Robust model-predictive control (Yin et al., SIGCOMM'15), as in Pensieve's baseline.

Plan ``horizon`` frames ahead over a small ladder of bits-per-pixel levels, score every level
sequence by predicted quality minus quality switches minus predicted lateness, send the first
level of the best plan, and re-plan at the next frame. "Robust" = the throughput prediction is
discounted by the worst recent relative prediction error, so a jumpy link is planned for
pessimistically.
"""

from __future__ import annotations

import contextlib
import math
from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from diffstream.control.policies.base import (
    PROBE_AFTER_SKIPS,
    Observation,
    PolicyModel,
    clamp_bits,
    escape_floor,
    fmt,
    is_playback,
    queued_bytes,
    startup_bits,
)
from diffstream.control.predictors import (
    PredictorModel,
    PredictorSpec,
    check_predictor_options,
    harmonic_predictor,
)

MAX_SEQUENCES = 500_000
"""Cap on ``len(levels_bpp) ** horizon``: the plans are enumerated in one numpy array."""

_SAFE_THROUGHPUT_BPS = 1e-200
"""Above this a plan's send time (at most 8 x 64 MiB bits / thr) cannot overflow a float."""

FALLBACK_QUALITY_FLOOR_DB = 25.0
"""Quality given to the lowest level when the codec has no rate-quality model."""


@lru_cache(maxsize=16)
def level_sequences(n_levels: int, horizon: int) -> np.ndarray:
    """All ``n_levels ** horizon`` plans as rows of level indices, in lexicographic order.

    Lexicographic order makes ``argmax`` tie-break to the lowest first level (the cautious
    choice). Cached and read-only because it only depends on the option values.
    """
    seqs = np.indices((n_levels,) * horizon).reshape(horizon, -1).T.copy()
    seqs.setflags(write=False)
    return seqs


class MPCPolicy(PolicyModel):
    """Robust MPC over a bits-per-pixel ladder.

    Objective of a plan q_0..q_{h-1} (qualities in dB):
    ``sum q_i - switch_weight * sum_{i>=1} |q_i - q_{i-1}| - stall_weight * stall_s``.
    The switch penalty starts at the first planned frame (the previous frame's level is not in
    the observation, and a policy must stay pure). Quality comes from the codec's
    ``rate_quality`` model; without one a log utility ``10*log10(bpp / levels[0]) + 25`` dB
    is used (diminishing returns, +3 dB per doubling, as in BOLA/MPC's log utility).

    Predicted stall seconds:
    * interactive: frame i is sent at ``now + i*interval + encode_s`` into a FIFO that starts
      with ``queued_bytes(obs)`` queued and drains at the predicted throughput; it is delivered
      when its last byte clears, plus one-way delay and decode. A frame delivered after
      ``deadline_s + i*interval`` is never shown, so it scores as a skipped slot (quality
      ``skip_quality_db``) and adds one frame interval of stall: lateness is all or nothing,
      as it is for the viewer (a linear lateness cost would trade a lost frame for a fraction
      of a dB).
    * playback (Pensieve): download ``d_i = wire_bits_i / thr``; rebuffer
      ``max(0, d_i - buffer)``; then ``buffer = max(buffer - d_i, 0) + interval``.

    Skips: a level whose bits fall below the codec's floor (``obs.min_bits``) cannot be
    encoded; the codec would skip the frame. Such a level is planned as exactly that: a
    header-only frame whose slot repeats the last image, scored ``skip_penalty_db`` below the
    floor's quality. This is what lets MPC drain a queue when even the smallest frame the
    codec can make is too big for the link (without it, it keeps sending floor-sized frames
    into a growing queue). With ``floor_level`` (off by default) the sub-floor levels collapse
    into one skip level followed by the floor itself (``ladder``), so the smallest frame the
    codec can make is always a choice. For an arm that calibrates, the floor and the
    rate-quality curve are measured on the scenario's own frames (``FrameEncoder.
    _calibrate``), not on the codec's pink-noise guess.

    Codec compute: frame i starts ``encode_s`` after its capture and is shown ``decode_s``
    after its last byte arrives; where the codec's cost depends on the budget
    (``obs.compute_at``: per-step costs), each level has its own (``level_compute_s``).

    Its skips are not a dead end (``escape_floor``): the startup budget is at least the floor
    and, after ``probe_after_skips`` skips in a row with no queue ahead and no heavy loss,
    the next frame probes at the floor (the ladder may have no level between a skip and a
    frame too big for the link).
    """

    kind: Literal["mpc"] = "mpc"
    horizon: int = Field(3, ge=1, description="Frames planned ahead (enumerated exhaustively).")
    levels_bpp: tuple[float, ...] = Field(
        (0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0),
        min_length=1,
        description="Bits-per-pixel ladder the planner chooses from, strictly increasing.",
    )
    window: int = Field(5, ge=1, description="Throughput samples (and past errors) considered.")
    switch_weight: float = Field(
        1.0, ge=0, description="Penalty in dB per dB of quality change between planned frames."
    )
    stall_weight: float = Field(
        50.0,
        ge=0,
        description="Penalty in dB per second of predicted lateness (interactive) or "
        "rebuffering (playback).",
    )
    startup_bpp: float = Field(
        0.25, gt=0, description="Bits per pixel used until the first throughput sample arrives."
    )
    skip_penalty_db: float = Field(
        5.0, ge=0, description="A skipped slot's quality: this many dB below the codec floor's."
    )
    probe_after_skips: int | None = Field(
        PROBE_AFTER_SKIPS, ge=1, description="After this many consecutive skipped frames, "
        "probe at the codec's floor (see policy.base.escape_floor); null: never."
    )
    floor_level: bool = Field(
        False, description="Plan with the codec's floor as a level: the ladder's levels below "
        "it become one skip level and the floor itself (false: each is a skip level). On "
        "lte_trace WebP it skips 2-3 % fewer frames, QoE within noise over 3 seeds "
        "(docs/policies/predictors_mpc.md)."
    )
    predictor: PredictorSpec | None = Field(
        None, description="Throughput predictor: {kind: harmonic|ewma|kalman, ...} "
        "(control/predictors.py); null: robust MPC's, the harmonic mean of the last "
        "`window` samples discounted by its worst recent relative error."
    )

    @model_validator(mode="after")
    def _check_levels(self) -> MPCPolicy:
        levels = self.levels_bpp
        if any(not (b > 0 and math.isfinite(b)) for b in levels):
            raise ValueError(f"levels_bpp must be positive and finite, got {list(levels)}")
        if any(b1 <= b0 for b0, b1 in zip(levels, levels[1:], strict=False)):
            raise ValueError(f"levels_bpp must be strictly increasing, got {list(levels)}")
        if len(levels) ** self.horizon > MAX_SEQUENCES:
            raise ValueError(
                f"{len(levels)} levels over a horizon of {self.horizon} is "
                f"{len(levels) ** self.horizon} plans (max {MAX_SEQUENCES}); "
                "use fewer levels or a shorter horizon"
            )
        check_predictor_options(self, ("window",))
        return self

    @property
    def label(self) -> str:
        est = f"k={self.window}" if self.predictor is None else f"p={self.predictor.label}"
        return (
            f"mpc(h={self.horizon},L={len(self.levels_bpp)},{est},"
            f"sw={fmt(self.switch_weight)},st={fmt(self.stall_weight)})"
        )

    def throughput_predictor(self) -> PredictorModel:
        """The predictor in use: ``predictor``, else robust MPC's harmonic mean."""
        return self.predictor or harmonic_predictor(self.window, True)

    def predicted_throughput_bps(self, obs: Observation) -> float | None:
        """Throughput the plan is made for (None before any sample)."""
        return self.throughput_predictor().predict(obs.throughput_bps)

    def ladder(self, obs: Observation) -> list[tuple[int, float]]:
        """The levels planned over, as (bits, bpp for the fallback utility).

        A ladder level below the codec's floor (``obs.min_bits``) cannot be coded: it is an
        explicit skip, 0 bits. With ``floor_level`` the sub-floor levels collapse into one
        skip level followed by the floor itself, so the smallest frame the codec can make
        is always a choice (with a floor of 0.63 bpp and the default ladder, the cheapest
        frame would otherwise be the 0.75 level, 20 % more)."""
        levels = [(obs.bits_for_bpp(b), b) for b in self.levels_bpp]
        floor = obs.min_bits
        if self.floor_level and 0 < floor <= obs.max_bits and levels[0][0] < floor:
            above = [(clamp_bits(bits, obs), b) for bits, b in levels if bits >= floor]
            out = [(0, self.levels_bpp[0])]
            if not above or above[0][0] != floor:
                out.append((floor, floor / obs.pixels))
            return out + above
        return [(0 if bits < floor else clamp_bits(bits, obs), b) for bits, b in levels]

    def level_quality_db(self, obs: Observation,
                         ladder: list[tuple[int, float]] | None = None) -> np.ndarray:
        """Quality (dB) the planner expects at each ladder level; skip levels (0 bits) get the
        floor's quality minus ``skip_penalty_db``. ``ladder``: ``self.ladder(obs)``, when the
        caller has it already."""
        ladder = self.ladder(obs) if ladder is None else ladder
        skip_q = self.skip_quality_db(obs)
        if obs.rate_quality is not None:
            rq = obs.rate_quality
            return np.array([rq.quality_at(b / obs.pixels) if b > 0 else skip_q
                             for b, _ in ladder])
        bpp = np.array([b for _, b in ladder])
        q = 10.0 * np.log10(bpp / self.levels_bpp[0]) + FALLBACK_QUALITY_FLOOR_DB
        return np.where(np.array([b for b, _ in ladder]) > 0, q, skip_q)

    def skip_quality_db(self, obs: Observation) -> float:
        """Quality of a slot that repeats the last image: the floor's minus the penalty."""
        floor_bpp = max(obs.min_bits, 1) / obs.pixels
        if obs.rate_quality is not None:
            floor_q = obs.rate_quality.quality_at(floor_bpp)
        else:
            floor_q = 10.0 * math.log10(floor_bpp / self.levels_bpp[0]) + FALLBACK_QUALITY_FLOOR_DB
        return floor_q - self.skip_penalty_db

    def level_bits(self, obs: Observation) -> list[int]:
        """Budget each ladder level sends (``ladder``): 0 (an explicit skip) below the
        codec's floor, else its bits clamped to the observation's range."""
        return [bits for bits, _ in self.ladder(obs)]

    def level_compute_s(self, obs: Observation,
                        bits: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(encode_s, decode_s) per ladder level: the codec's budget-dependent cost where
        the observation has one (``compute_at``), else the same estimate for every level."""
        bits = self.level_bits(obs) if bits is None else bits
        if obs.compute_at is None:
            return np.full(len(bits), obs.encode_s), np.full(len(bits), obs.decode_s)
        costs = [obs.compute_at(b) for b in bits]
        return np.array([c[0] for c in costs]), np.array([c[1] for c in costs])

    def objectives(self, obs: Observation, thr_bps: float,
                   ladder: list[tuple[int, float]] | None = None) -> np.ndarray:
        """Objective of every plan in ``level_sequences`` order, vectorised over plans.
        ``ladder``: ``self.ladder(obs)``, when the caller has it already (it is the costly
        part of a small plan table, so ``plan`` builds it once per frame)."""
        ladder = self.ladder(obs) if ladder is None else ladder
        bits = [b for b, _ in ladder]
        seqs = level_sequences(len(bits), self.horizon)
        quality = self.level_quality_db(obs, ladder)[seqs]  # (plans, horizon)
        wire_bits = 8.0 * np.array([obs.wire_bytes(b) for b in bits])[seqs]
        # a throughput so small that wire_bits / thr overflows (an infinite send time) is
        # the one case that needs numpy's warnings silenced; entering np.errstate costs
        # about 10 us, so the common case skips it (same values either way)
        extreme = not thr_bps > _SAFE_THROUGHPUT_BPS
        with np.errstate(over="ignore") if extreme else contextlib.nullcontext():
            send_s = wire_bits / thr_bps
        stall = np.zeros(len(seqs))
        interval = obs.frame_interval_s
        if is_playback(obs):
            buffer = np.full(len(seqs), float(obs.buffer_s))
            for i in range(self.horizon):
                stall += np.maximum(0.0, send_s[:, i] - buffer)
                buffer = np.maximum(buffer - send_s[:, i], 0.0) + interval
        else:
            assert obs.deadline_s is not None  # is_playback() is False
            owd = obs.one_way_delay_s or 0.0
            enc, dec = (c[seqs] for c in self.level_compute_s(obs, bits))
            clear = np.full(len(seqs), obs.now_s + queued_bytes(obs) * 8.0 / thr_bps)
            skip_q = self.skip_quality_db(obs)
            quality = quality.copy()
            for i in range(self.horizon):
                start = obs.now_s + i * interval + enc[:, i]
                clear = np.maximum(clear, start) + send_s[:, i]
                late = clear + owd + dec[:, i] > obs.deadline_s + i * interval + 1e-12
                # a late frame is never shown: its slot repeats the last image and freezes
                quality[:, i] = np.where(late, skip_q, quality[:, i])
                stall += np.where(late, interval, 0.0)
        switches = np.abs(np.diff(quality, axis=1)).sum(axis=1)
        # 0 weight x infinite stall: no usable score (only with an infinite send time)
        with np.errstate(invalid="ignore") if extreme else contextlib.nullcontext():
            value = quality.sum(axis=1) - self.switch_weight * switches - self.stall_weight * stall
        return np.where(np.isnan(value), -np.inf, value)

    def plan(self, obs: Observation) -> tuple[int, ...] | None:
        """Level indices of the best plan, or None before any throughput sample."""
        best = self._plan(obs)
        return None if best is None else best[0]

    def _plan(self, obs: Observation) -> tuple[tuple[int, ...], list[int]] | None:
        """(the best plan, the ladder's bits), the ladder built once."""
        thr = self.predicted_throughput_bps(obs)
        if thr is None:
            return None
        ladder = self.ladder(obs)
        bits = [b for b, _ in ladder]
        if not thr > 0:  # samples so small their harmonic mean underflows: send the least
            return (0,) * self.horizon, bits
        seqs = level_sequences(len(bits), self.horizon)
        best = int(np.argmax(self.objectives(obs, thr, ladder)))
        return tuple(int(i) for i in seqs[best]), bits

    def budget_bits(self, obs: Observation) -> int:
        best = self._plan(obs)
        if best is None:
            bits = startup_bits(obs, self.startup_bpp)
        else:
            bits = best[1][best[0][0]]
        return escape_floor(bits, obs, self.probe_after_skips)
