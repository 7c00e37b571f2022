"""The field's QoE definitions as scenario presets (``qoe: {preset: ...}``), scored per slot.

Every preset reduces one arm's frame slots to one number; the summary reports all of them
(``qoe_<preset>`` columns) and ``qoe`` is the scenario's choice. A "chunk" of the ABR
papers is a frame slot here, and every preset is normalised per slot (the session total
divided by the number of slots N), so arms of different lengths compare.

``diffstream`` (the default, today's project formula)::

    QoE = mean_k Q_k - switch_weight * mean_k |Q_k - Q_{k-1}| - stall_weight * S / duration_s

Pensieve (Mao et al., SIGCOMM 2017, §5.1; the MPC paper's linear QoE)::

    QoE = (sum_n q(R_n) - rebuffer_penalty * S - smooth_penalty * sum_n |q(R_n) - q(R_{n-1})|) / N

* ``pensieve-lin``: q(R) = R in Mbit/s, rebuffer_penalty = 4.3.
* ``pensieve-log``: q(R) = ln(R / R_min), R_min = 300 kbit/s, rebuffer_penalty = 2.66.
* ``pensieve-hd``: q from the published ladder 300, 750, 1200, 1850, 2850, 4300 kbit/s ->
  1, 2, 3, 12, 15, 20, rebuffer_penalty = 8.

Puffer (Yan et al., NSDI 2020, "Learning in situ"; Fugu's objective)::

    QoE = (sum_n Q_n - smooth_penalty * sum_n |Q_n - Q_{n-1}| - rebuffer_penalty * S) / N

with Q_n the SSIM dB of slot n clamped to [0, 60] dB, smooth_penalty = 1 and
rebuffer_penalty = 100 per second (Puffer's source; the issue's 20 differs, see below).

Inputs, shared by every preset:

* **R_n**, the delivered bitrate of what the viewer saw in slot n: the payload bits of the
  frame shown there (a stale slot repeats the last shown frame, so it repeats its bits)
  times fps. A partial (progressive prefix) frame counts ``prefix_step / codec_steps`` of
  its payload (the record keeps the step count, not the prefix's length). Before anything
  is shown R = 0.
* **S**, the stall seconds of the session: the arm's ``freeze_s`` (playback: the rebuffer
  time; interactive: WebRTC freeze time on the display timeline), the same S the
  ``diffstream`` preset uses.

Deviations, each a choice this mapping needed:

* Chunks are frame slots: Pensieve's chunks are 4 s and Puffer's 2.002 s, so one second of
  stall weighs about ``4 * fps`` (Pensieve) or ``2 * fps`` (Puffer) times less against the
  quality sum than in those papers. The constants are the published ones; raise
  ``rebuffer_penalty`` to restore the papers' trade-off for a given fps.
* ``pensieve-log`` below R_min goes negative (the log continues); R = 0 (nothing shown) is
  floored at one byte per frame (8 * fps bit/s), below every frame that carries anything,
  so showing nothing never scores above a frame. Pensieve's ladder starts at R_min.
* ``pensieve-hd`` between rungs interpolates linearly, below the first rung linearly to
  (0 kbit/s, 0) (Pensieve's server maps bitrate 0 to reward 0), above the last rung stays at
  the top reward. Pensieve only ever scored the rungs themselves.
* ``puffer``: the issue quotes ``- 20 * stall s``; Puffer's code and its documented
  ``puffer_ttp`` configuration use 100 (``REBUFFER_LENGTH_COEFF``), so 100 is the default.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

# ------------------------------------------------------------------------------ constants
# Pensieve, hongzimao/pensieve sim/multi_agent.py and rl_server/rl_server_no_training.py:
# VIDEO_BIT_RATE = [300,750,1200,1850,2850,4300]  # Kbps
# HD_REWARD = [1, 2, 3, 12, 15, 20]  (BITRATE_REWARD_MAP = {0: 0, 300: 1, ..., 4300: 20})
# REBUF_PENALTY = 4.3  # 1 sec rebuffering -> 3 Mbps   (the linear reward)
# SMOOTH_PENALTY = 1
PENSIEVE_LADDER_KBPS: tuple[float, ...] = (300.0, 750.0, 1200.0, 1850.0, 2850.0, 4300.0)
PENSIEVE_HD_REWARD: tuple[float, ...] = (1.0, 2.0, 3.0, 12.0, 15.0, 20.0)
PENSIEVE_LIN_REBUF = 4.3
# The paper's Table 1 (§5.1): QoE_log mu = 2.66, QoE_hd mu = 8. The code keeps 4.3 in its
# commented-out log reward; its server's HD reward uses "- 8 * rebuffer_time".
PENSIEVE_LOG_REBUF = 2.66
PENSIEVE_HD_REBUF = 8.0
PENSIEVE_SMOOTH = 1.0
# q_log = log(R / R_min): rl_server_no_training.py takes np.log(R / VIDEO_BIT_RATE[0]) (the
# paper's R_min); the simulator's commented-out variant divides by the top rung instead.
PENSIEVE_R_MIN_KBPS = 300.0
# Puffer, StanfordSNR/puffer src/abr/puffer.hh (Fugu's MPC): REBUFFER_LENGTH_COEFF = 100,
# SSIM_DIFF_COEFF = 1; src/abr/abr_algo.{hh,cc}: ssim_db() clamps to [MIN_SSIM, MAX_SSIM]
# = [0, 60] dB, and an SSIM of exactly 1 is MAX_SSIM.
PUFFER_REBUF = 100.0
PUFFER_SMOOTH = 1.0
PUFFER_SSIM_DB_MIN = 0.0
PUFFER_SSIM_DB_MAX = 60.0

PRESETS: tuple[str, ...] = ("diffstream", "pensieve-lin", "pensieve-log", "pensieve-hd",
                            "puffer")
DEFAULT_PRESET = "diffstream"


# ------------------------------------------------------------------------------ specs
class _Preset(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DiffstreamQoE(_Preset):
    """The project's linear QoE; defaults put one second-in-fifty of stalling at 1 dB."""

    preset: Literal["diffstream"] = "diffstream"
    metric: Literal["psnr", "ssim_db"] = "psnr"  # per-slot quality Q_k (dB)
    switch_weight: float = 1.0  # dB of QoE lost per dB of quality change between slots
    stall_weight: float = 50.0  # dB of QoE lost per unit of stalled fraction of the session


#: The name this model had before presets existed (imports and ``QoEWeights()`` still work).
QoEWeights = DiffstreamQoE


class _Pensieve(_Preset):
    smooth_penalty: float = Field(PENSIEVE_SMOOTH, ge=0,
                                  description="per unit |q(R_n) - q(R_n-1)|")

    @property
    def metric(self) -> Literal["psnr", "ssim_db"]:
        """Image quality the rest of the run reports (Pensieve's QoE scores bitrate)."""
        return "psnr"


class PensieveLinQoE(_Pensieve):
    preset: Literal["pensieve-lin"] = "pensieve-lin"
    rebuffer_penalty: float = Field(PENSIEVE_LIN_REBUF, ge=0, description="per stall second")


class PensieveLogQoE(_Pensieve):
    preset: Literal["pensieve-log"] = "pensieve-log"
    rebuffer_penalty: float = Field(PENSIEVE_LOG_REBUF, ge=0, description="per stall second")
    r_min_kbps: float = Field(PENSIEVE_R_MIN_KBPS, gt=0, description="R_min of log(R / R_min)")


class PensieveHdQoE(_Pensieve):
    preset: Literal["pensieve-hd"] = "pensieve-hd"
    rebuffer_penalty: float = Field(PENSIEVE_HD_REBUF, ge=0, description="per stall second")
    ladder_kbps: tuple[float, ...] = Field(PENSIEVE_LADDER_KBPS, min_length=1)
    rewards: tuple[float, ...] = Field(PENSIEVE_HD_REWARD, min_length=1)

    @model_validator(mode="after")
    def _ladder(self) -> PensieveHdQoE:
        if len(self.ladder_kbps) != len(self.rewards):
            raise ValueError(f"ladder_kbps has {len(self.ladder_kbps)} rungs but rewards has "
                             f"{len(self.rewards)}; give one reward per rung")
        rungs = self.ladder_kbps
        if rungs[0] <= 0 or any(b <= a for a, b in zip(rungs, rungs[1:], strict=False)):
            raise ValueError("ladder_kbps must be > 0 and increasing, e.g. [300, 750, 1200]")
        return self


class PufferQoE(_Preset):
    preset: Literal["puffer"] = "puffer"
    rebuffer_penalty: float = Field(PUFFER_REBUF, ge=0, description="SSIM dB per stall second")
    smooth_penalty: float = Field(PUFFER_SMOOTH, ge=0, description="per dB of |ΔSSIM dB|")

    @property
    def metric(self) -> Literal["psnr", "ssim_db"]:
        return "ssim_db"


#: Any preset's spec (a plain union, for type hints).
QoEPreset = DiffstreamQoE | PensieveLinQoE | PensieveLogQoE | PensieveHdQoE | PufferQoE
#: The scenario's ``qoe:`` field: the union told apart by ``preset``.
QoESpec = Annotated[QoEPreset, Field(discriminator="preset")]
#: One spec per preset with its published defaults (the summary's non-chosen columns).
DEFAULT_SPECS: dict[str, QoEPreset] = {
    "diffstream": DiffstreamQoE(), "pensieve-lin": PensieveLinQoE(),
    "pensieve-log": PensieveLogQoE(), "pensieve-hd": PensieveHdQoE(), "puffer": PufferQoE(),
}


def with_default_preset(value: object) -> object:
    """A ``qoe:`` mapping without ``preset`` is the ``diffstream`` one (older scenarios)."""
    if isinstance(value, dict) and "preset" not in value:
        return {**value, "preset": DEFAULT_PRESET}
    return value


# ------------------------------------------------------------------------------ scoring
@dataclass(frozen=True)
class SlotTrace:
    """What every preset needs of one arm, one entry per frame slot in sequence order."""

    psnr_db: Sequence[float | None]
    ssim: Sequence[float | None]
    ssim_db: Sequence[float | None]
    rate_kbps: Sequence[float]  # delivered bitrate of what the viewer saw (0: nothing yet)
    stall_s: float  # stall seconds of the session (S)
    duration_s: float
    fps: float


def _linear(q: np.ndarray, stall_s: float, rebuffer: float, smooth: float) -> float:
    """(sum q - rebuffer * S - smooth * sum |dq|) / N: the papers' sum, per slot."""
    if q.size == 0:
        return 0.0
    switches = float(np.abs(np.diff(q)).sum()) if q.size > 1 else 0.0
    return (float(q.sum()) - rebuffer * stall_s - smooth * switches) / q.size


def diffstream_score(q: Sequence[float], stalled_fraction: float, spec: DiffstreamQoE) -> float:
    """The project's formula on per-slot qualities ``q`` (dB); means, not sums."""
    qa = np.asarray(q, dtype=float)
    mean_q = float(qa.mean()) if qa.size else 0.0
    switch = float(np.abs(np.diff(qa)).mean()) if qa.size > 1 else 0.0
    return mean_q - spec.switch_weight * switch - spec.stall_weight * stalled_fraction


def pensieve_quality(rate_kbps: Sequence[float], spec: PensieveLinQoE | PensieveLogQoE
                     | PensieveHdQoE, fps: float) -> np.ndarray:
    """q(R_n) per slot for a Pensieve preset (rules for R between rungs: module docstring)."""
    r = np.asarray(rate_kbps, dtype=float)
    if isinstance(spec, PensieveLinQoE):
        return r / 1000.0
    if isinstance(spec, PensieveLogQoE):
        floor_kbps = 8.0 * fps / 1000.0  # one byte per frame: below any frame that has data
        return np.log(np.maximum(r, floor_kbps) / spec.r_min_kbps)
    xs = np.array((0.0, *spec.ladder_kbps))
    ys = np.array((0.0, *spec.rewards))
    return np.interp(r, xs, ys)  # flat at the top reward above the last rung


def puffer_quality(ssim_db: Sequence[float | None], ssim: Sequence[float | None]) -> np.ndarray:
    """Q_n: SSIM dB clamped to Puffer's [0, 60]; a slot without a score is MIN_SSIM (0)."""
    out = []
    for db, idx in zip(ssim_db, ssim, strict=True):
        if db is not None and not math.isnan(db):
            v = float(db)
        elif idx is not None and not math.isnan(idx):  # inf dB comes back from JSON as null
            v = math.inf if idx >= 1.0 else -10.0 * math.log10(1.0 - idx)
        else:
            v = PUFFER_SSIM_DB_MIN
        out.append(min(PUFFER_SSIM_DB_MAX, max(PUFFER_SSIM_DB_MIN, v)))
    return np.asarray(out, dtype=float)


def score(spec: QoEPreset, trace: SlotTrace) -> float:
    """One preset's QoE of one arm (formulas: module docstring)."""
    if isinstance(spec, DiffstreamQoE):
        values = trace.psnr_db if spec.metric == "psnr" else trace.ssim_db
        q = [0.0 if v is None or math.isnan(v) else float(v) for v in values]
        stalled = trace.stall_s / trace.duration_s if trace.duration_s > 0 else 0.0
        return diffstream_score(q, stalled, spec)
    if isinstance(spec, PufferQoE):
        q_arr = puffer_quality(trace.ssim_db, trace.ssim)
    else:
        q_arr = pensieve_quality(trace.rate_kbps, spec, trace.fps)
    return _linear(q_arr, trace.stall_s, spec.rebuffer_penalty, spec.smooth_penalty)


def score_all(trace: SlotTrace, chosen: QoEPreset) -> dict[str, float]:
    """Every preset's QoE; the chosen preset with the scenario's options, others default."""
    return {name: score(chosen if name == chosen.preset else spec, trace)
            for name, spec in DEFAULT_SPECS.items()}
