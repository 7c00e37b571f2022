"""The observation vector and the action ladder that the environment and the learned
policy share (numpy only: a trained policy runs without gymnasium).

**Observation vector** (``FEATURES``; float32, one entry per name, units chosen so that
typical values are O(1) for a linear policy). It holds the numeric fields of the policy
``Observation`` (control/policies/base.py), with these transformations:

* absolute clocks (``now_s``, ``capture_s``, ``frame_index``) are left out: a policy should
  not depend on how long the stream has run; time enters as ``lag_s`` (now - capture) and
  ``time_to_deadline_s`` (``time_to_deadline_s(obs)``: deadline - now, or in playback the
  buffer plus one frame interval);
* ``None`` fields become 0 with a flag (``has_feedback``: a report has come back, so RTT
  and one-way delay are known); ``backlog_kB`` is ``queued_bytes(obs)`` (the backlog
  estimate, else the in-flight bytes, as the rule policies use it);
* bytes in kB, bits per pixel instead of bits, throughput in Mbit/s;
* the last ``SAMPLES`` throughput samples, oldest first, left-padded with zeros (the
  newest sample is always the last entry), and ``n_samples`` (how many are real);
* one derived entry, ``link_bpp``: the harmonic mean of the last 5 samples times the frame
  interval over the pixels, the bits per pixel per frame the link has been carrying (0
  before the first sample). It is the quantity a budget ladder is in.
* ``wire_bytes`` (a function) enters as ``header_kB`` = ``wire_bytes(0)``, the fixed cost
  of a frame; ``rate_quality`` and ``future`` are not in the vector.

**Actions**: an index into a ladder of bits-per-pixel levels (``DEFAULT_LEVELS_BPP``);
level ``i`` is ``clamp_bits(obs.bits_for_bpp(levels[i]), obs)`` bits, i.e. the level times
the frame's pixels, clamped to [0, max_bits] (the ``fixed`` policy's arithmetic).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from diffstream.control.policies.base import (
    Observation,
    clamp_bits,
    harmonic_mean,
    queued_bytes,
    time_to_deadline_s,
)

BOUND = 1e6  # every entry is clipped to [-BOUND, BOUND] (the Box's bounds)
SAMPLES = 8  # throughput samples in the vector (SenderCore's estimate uses the last 5)

DEFAULT_LEVELS_BPP: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)

FEATURES: tuple[str, ...] = (
    "playback", "frame_interval_s", "lag_s", "time_to_deadline_s", "has_feedback", "rtt_s",
    "one_way_delay_s", "loss_rate", "inflight_kB", "backlog_kB", "buffer_s", "encode_s",
    "decode_s", "min_bpp", "max_bpp", "header_kB", "skip_run", "skip_run_max_bpp",
    "link_bpp", "n_samples",
    *(f"throughput_mbps_{i}" for i in range(SAMPLES)),  # oldest first; _{SAMPLES-1} newest
)


def observation_vector(obs: Observation) -> np.ndarray:
    """The ``FEATURES`` vector of one observation (module docstring)."""
    px = float(obs.pixels)
    samples = list(obs.throughput_bps[-SAMPLES:])
    padded = [0.0] * (SAMPLES - len(samples)) + [s / 1e6 for s in samples]
    recent = harmonic_mean(obs.throughput_bps[-5:])
    link_bpp = recent * obs.frame_interval_s / px if recent is not None else 0.0
    values = [
        1.0 if obs.mode == "playback" else 0.0,
        obs.frame_interval_s,
        obs.now_s - obs.capture_s,
        time_to_deadline_s(obs),
        0.0 if obs.rtt_s is None else 1.0,
        obs.rtt_s or 0.0,
        obs.one_way_delay_s or 0.0,
        obs.loss_rate,
        obs.inflight_bytes / 1e3,
        queued_bytes(obs) / 1e3,
        obs.buffer_s,
        obs.encode_s,
        obs.decode_s,
        obs.min_bits / px,
        obs.max_bits / px,
        obs.wire_bytes(0) / 1e3,
        float(obs.skip_run),
        obs.skip_run_max_bits / px,
        link_bpp,
        float(len(samples)),
        *padded,
    ]
    vec = np.asarray(values, dtype=np.float64)
    # a non-finite field (an inf sample) must not poison a linear policy
    vec = np.nan_to_num(vec, nan=0.0, posinf=BOUND, neginf=-BOUND)
    return np.clip(vec, -BOUND, BOUND).astype(np.float32)


def level_bits(obs: Observation, bpp: float) -> int:
    """Bits of a ladder level for this frame: ``bpp`` x pixels, clamped to [0, max_bits]."""
    return clamp_bits(obs.bits_for_bpp(bpp), obs)


def check_levels(levels_bpp: Sequence[float]) -> tuple[float, ...]:
    """A ladder must be non-empty, positive and increasing (ValueError otherwise)."""
    levels = tuple(float(x) for x in levels_bpp)
    if not levels or any(x <= 0 for x in levels) or list(levels) != sorted(set(levels)):
        raise ValueError(f"levels_bpp must be positive and increasing, got {list(levels)}")
    return levels
