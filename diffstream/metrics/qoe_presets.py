"""The field's QoE definitions as scenario presets (``qoe: {preset: ...}``), scored per chunk.

Every preset reduces one arm's frame slots to one number; the summary reports all of them
(``qoe_<preset>`` columns) and ``qoe`` is the scenario's choice.

``diffstream`` (the default, today's project formula, on frame slots)::

    QoE = mean_k Q_k - switch_weight * mean_k |Q_k - Q_{k-1}| - stall_weight * S / duration_s

Pensieve (Mao et al., SIGCOMM 2017, §5.1; the MPC paper's linear QoE)::

    QoE = (sum_n q(R_n) - rebuffer_penalty * S - smooth_penalty * sum_n |q(R_n) - q(R_{n-1})|) / N

* ``pensieve-lin``: q(R) = R in Mbit/s, rebuffer_penalty = 4.3.
* ``pensieve-log``: q(R) = ln(R / R_min), R_min = 300 kbit/s, rebuffer_penalty = 2.66.
* ``pensieve-hd``: q from the published ladder 300, 750, 1200, 1850, 2850, 4300 kbit/s ->
  1, 2, 3, 12, 15, 20, rebuffer_penalty = 8.

Puffer (Yan et al., NSDI 2020, "Learning in situ"; Fugu's objective)::

    QoE = (sum_n Q_n - smooth_penalty * sum_n |Q_n - Q_{n-1}| - rebuffer_penalty * S) / N

with Q_n the SSIM dB of chunk n clamped to [0, 60] dB, smooth_penalty = 1 and
rebuffer_penalty = 100 per second (Puffer's source; the issue's 20 differs, see below).

**Chunks.** The papers score video chunks: 4 s in Pensieve (§5's setup;
``VIDEO_CHUNCK_LEN = 4000.0`` ms and ``TOTAL_VIDEO_CHUNCK = 48`` in hongzimao/pensieve
``sim/env.py``) and 2.002 s in Puffer (``DEFAULT_VIDEO_DURATION = 180180`` at
``DEFAULT_TIMESCALE = 90000``, "2.002s per chunk", StanfordSNR/puffer
``src/media-server/channel.cc``). The presets group the frame slots of the display
timeline, in order, into consecutive chunks of ``C = round(chunk_s * fps)`` slots (at
least 1); ``chunk_s`` defaults to the paper's length (4.0 for the Pensieve presets, 2.002
for ``puffer``). Per chunk n:

* **R_n** = the mean of its slots' delivered bitrates (Pensieve scores the chunk's bitrate).
* **Q_n** (``puffer``) = the SSIM dB of the chunk's mean SSIM index, clamped to [0, 60]:
  Puffer scores one SSIM per chunk (``ABRAlgo::Chunk::ssim``) and reports the SSIM dB of
  mean indices (``src/scripts/plot_ssim_rebuffer.py``). A slot without any SSIM counts as
  index 0 (0 dB, Puffer's MIN_SSIM).
* **S_n** = the stall seconds that fall in chunk n's time span: each freeze (interactive)
  is split over the slots, hence chunks, it overlaps; a rebuffer (playback) lies before the
  frame it delayed, so it belongs to that frame's chunk (Pensieve charges a chunk the
  rebuffering its download caused). The S_n sum to the session's S, and the score needs
  only that sum; :func:`chunk_terms` reports them per chunk.
* Smoothness is |q_n - q_{n-1}| between consecutive chunks.
* **N** = the number of chunks. A partial last chunk of m < C slots counts as a chunk of
  weight m / C: its q_n and the switch into it are weighted by m / C, and N = slots / C.
  (Dropping it instead would lose its stall seconds and leave a session shorter than one
  chunk with no score.) Its stall seconds count in full: they are seconds the viewer waited.

``chunk_s: null`` scores every frame slot as a chunk (C = 1, the earlier per-slot mode).
Normalising per chunk (the session total / N) lets arms of different lengths compare.

Inputs, shared by every preset:

* **Slot bitrate**, the delivered bitrate of what the viewer saw in a slot: the payload
  bits of the frame shown there (a stale slot repeats the last shown frame, so it repeats
  its bits) times fps. A partial (progressive prefix) frame counts
  ``prefix_step / codec_steps`` of its payload (the record keeps the step count, not the
  prefix's length). Before anything is shown it is 0.
* **S**, the stall seconds of the session: the arm's ``freeze_s`` (playback: the rebuffer
  time; interactive: WebRTC freeze time on the display timeline), the same S the
  ``diffstream`` preset uses, with its placement per slot (``SlotTrace.slot_stall_s``).

Deviations, each a choice this mapping needed:

* Chunks are whole frame slots, so a chunk lasts ``C / fps``, not exactly ``chunk_s``
  (2.002 s at 10 fps is 20 slots, 2.0 s; at Puffer's 29.97 fps it is exactly 60 frames).
  The papers' chunks are each encoded at one bitrate; here the bitrate and quality vary
  within a chunk and the chunk scores their means, so a switch inside a chunk costs
  nothing.
* An interactive freeze (WebRTC's interval, from the last shown frame to the next) is split
  over slot spans ``[k / fps, (k + 1) / fps)`` of the display timeline; any part before the
  first slot or after the last (a frame displayed after the session's end) counts in the
  first or last slot, so the S_n still sum to S.
* ``pensieve-log`` below R_min goes negative (the log continues); R = 0 (nothing shown) is
  floored at one byte per frame (8 * fps bit/s), below every frame that carries anything,
  so showing nothing never scores above a frame. Pensieve's ladder starts at R_min.
* ``pensieve-hd`` between rungs interpolates linearly, below the first rung linearly to
  (0 kbit/s, 0) (Pensieve's server maps bitrate 0 to reward 0), above the last rung stays at
  the top reward. Pensieve only ever scored the rungs themselves; a chunk's mean bitrate
  seldom is one.
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
# Chunk lengths (module docstring): Pensieve sim/env.py VIDEO_CHUNCK_LEN = 4000.0  # millisec;
# Puffer src/media-server/channel.cc DEFAULT_VIDEO_DURATION = 180180 at a 90 kHz timescale.
PENSIEVE_CHUNK_S = 4.0
PUFFER_CHUNK_S = 2.002

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


_CHUNK_HELP = "chunk length in seconds (round(chunk_s * fps) slots); null: one slot a chunk"


class _Pensieve(_Preset):
    smooth_penalty: float = Field(PENSIEVE_SMOOTH, ge=0,
                                  description="per unit |q(R_n) - q(R_n-1)|")
    chunk_s: float | None = Field(PENSIEVE_CHUNK_S, gt=0, description=_CHUNK_HELP)

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
    chunk_s: float | None = Field(PUFFER_CHUNK_S, gt=0, description=_CHUNK_HELP)

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
    slot_stall_s: Sequence[float]  # S placed on the slots' time spans; sums to stall_s

    def __post_init__(self) -> None:
        n = len(self.rate_kbps)
        lengths = {len(self.psnr_db), len(self.ssim), len(self.ssim_db), len(self.slot_stall_s)}
        if lengths != {n}:
            raise ValueError(f"SlotTrace: every per-slot sequence needs {n} entries")
        placed = float(sum(self.slot_stall_s))
        if not math.isclose(placed, self.stall_s, rel_tol=1e-9, abs_tol=1e-9):
            raise ValueError(f"SlotTrace: slot_stall_s sums to {placed} s, stall_s is "
                             f"{self.stall_s} s")


@dataclass(frozen=True)
class ChunkTerms:
    """One preset's per-chunk terms: weight (1, or m / C for a partial last chunk of m
    slots), quality q_n (q(R_n) or Q_n) and stall seconds S_n."""

    weight: np.ndarray
    q: np.ndarray
    stall_s: np.ndarray


def slots_per_chunk(chunk_s: float | None, fps: float) -> int:
    """C = round(chunk_s * fps) frame slots, at least one; ``None``: one slot a chunk."""
    if chunk_s is None:
        return 1
    return max(1, round(chunk_s * fps))


def _linear(terms: ChunkTerms, stall_s: float, rebuffer: float, smooth: float) -> float:
    """(sum w q - rebuffer * S - smooth * sum w |dq|) / sum w: the papers' sum, per chunk."""
    w, q = terms.weight, terms.q
    if q.size == 0:
        return 0.0
    switches = float((w[1:] * np.abs(np.diff(q))).sum())
    return (float((w * q).sum()) - rebuffer * stall_s - smooth * switches) / float(w.sum())


def diffstream_score(q: Sequence[float], stalled_fraction: float, spec: DiffstreamQoE) -> float:
    """The project's formula on per-slot qualities ``q`` (dB); means, not sums."""
    qa = np.asarray(q, dtype=float)
    mean_q = float(qa.mean()) if qa.size else 0.0
    switch = float(np.abs(np.diff(qa)).mean()) if qa.size > 1 else 0.0
    return mean_q - spec.switch_weight * switch - spec.stall_weight * stalled_fraction


def pensieve_quality(rate_kbps: Sequence[float], spec: PensieveLinQoE | PensieveLogQoE
                     | PensieveHdQoE, fps: float) -> np.ndarray:
    """q(R_n) per chunk bitrate for a Pensieve preset (rules between rungs: module docstring)."""
    r = np.asarray(rate_kbps, dtype=float)
    if isinstance(spec, PensieveLinQoE):
        return r / 1000.0
    if isinstance(spec, PensieveLogQoE):
        floor_kbps = 8.0 * fps / 1000.0  # one byte per frame: below any frame that has data
        return np.log(np.maximum(r, floor_kbps) / spec.r_min_kbps)
    xs = np.array((0.0, *spec.ladder_kbps))
    ys = np.array((0.0, *spec.rewards))
    return np.interp(r, xs, ys)  # flat at the top reward above the last rung


def _clamp_db(v: float) -> float:
    return min(PUFFER_SSIM_DB_MAX, max(PUFFER_SSIM_DB_MIN, v))


def _index_to_db(idx: float) -> float:
    return math.inf if idx >= 1.0 else -10.0 * math.log10(1.0 - idx)


def puffer_quality(ssim_db: Sequence[float | None], ssim: Sequence[float | None]) -> np.ndarray:
    """Q per slot: SSIM dB clamped to Puffer's [0, 60]; a slot without a score is MIN_SSIM (0)."""
    out = []
    for db, idx in zip(ssim_db, ssim, strict=True):
        if db is not None and not math.isnan(db):
            v = float(db)
        elif idx is not None and not math.isnan(idx):  # inf dB comes back from JSON as null
            v = _index_to_db(idx)
        else:
            v = PUFFER_SSIM_DB_MIN
        out.append(_clamp_db(v))
    return np.asarray(out, dtype=float)


def puffer_chunk_quality(ssim_db: Sequence[float | None], ssim: Sequence[float | None]
                         ) -> float:
    """Q_n of one chunk: the SSIM dB of its slots' mean SSIM index, clamped to [0, 60].

    A slot's index is its SSIM, else the index of its SSIM dB, else 0 (0 dB, MIN_SSIM).
    """
    idx = []
    for db, s in zip(ssim_db, ssim, strict=True):
        if s is not None and not math.isnan(s):
            idx.append(float(s))
        elif db is not None and not math.isnan(db):
            idx.append(1.0 - 10.0 ** (-float(db) / 10.0))
        else:
            idx.append(0.0)
    return _clamp_db(_index_to_db(float(np.mean(idx))))


def chunk_terms(spec: PensieveLinQoE | PensieveLogQoE | PensieveHdQoE | PufferQoE,
                trace: SlotTrace) -> ChunkTerms:
    """Group the slots into chunks of ``slots_per_chunk(spec.chunk_s, fps)`` (module
    docstring) and give each chunk's weight, quality and stall seconds."""
    n = len(trace.rate_kbps)
    size = slots_per_chunk(spec.chunk_s, trace.fps)
    starts = range(0, n, size)
    weight = np.array([min(size, n - a) / size for a in starts], dtype=float)
    stall = np.array([float(sum(trace.slot_stall_s[a:a + size])) for a in starts], dtype=float)
    if isinstance(spec, PufferQoE):
        if size == 1:  # per-slot mode: each slot's own dB, as before chunking existed
            q = puffer_quality(trace.ssim_db, trace.ssim)
        else:
            q = np.array([puffer_chunk_quality(trace.ssim_db[a:a + size],
                                               trace.ssim[a:a + size]) for a in starts])
    else:
        rates = np.asarray(trace.rate_kbps, dtype=float)
        r_n = [float(rates[a:a + size].mean()) for a in starts]  # the chunk's bitrate
        q = pensieve_quality(r_n, spec, trace.fps)
    return ChunkTerms(weight=weight, q=np.asarray(q, dtype=float), stall_s=stall)


def score(spec: QoEPreset, trace: SlotTrace) -> float:
    """One preset's QoE of one arm (formulas: module docstring)."""
    if isinstance(spec, DiffstreamQoE):
        values = trace.psnr_db if spec.metric == "psnr" else trace.ssim_db
        q = [0.0 if v is None or math.isnan(v) else float(v) for v in values]
        stalled = trace.stall_s / trace.duration_s if trace.duration_s > 0 else 0.0
        return diffstream_score(q, stalled, spec)
    # S enters whole: the S_n only place it (they sum to S, and a partial chunk's stall
    # seconds are not discounted)
    return _linear(chunk_terms(spec, trace), trace.stall_s, spec.rebuffer_penalty,
                   spec.smooth_penalty)


def score_all(trace: SlotTrace, chosen: QoEPreset) -> dict[str, float]:
    """Every preset's QoE; the chosen preset with the scenario's options, others default."""
    return {name: score(chosen if name == chosen.preset else spec, trace)
            for name, spec in DEFAULT_SPECS.items()}
