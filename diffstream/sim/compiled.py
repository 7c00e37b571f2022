"""The driver of the compiled network-only loop (``sim.kernel``): which arms it can run, the
tables it needs, the chunked run and the records.

``FastArmSimulation.run`` calls ``run_compiled`` first; it returns None for an arm the
kernel does not cover (``eligible`` says which), and the Python fast path runs it. Set
``DIFFSTREAM_KERNEL=0`` to force the Python fast path (the agreement tests compare both).
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat
from typing import TYPE_CHECKING, Any

import numpy as np

from diffstream.control.policies.base import Observation
from diffstream.control.policies.mpc import MPCPolicy
from diffstream.control.policies.oracle import OraclePolicy
from diffstream.control.policies.simple import DeadlinePolicy, FixedPolicy, RatePolicy
from diffstream.control.predictors import SAMPLE_HISTORY, HarmonicMean
from diffstream.pipeline.records import FrameRecord
from diffstream.pipeline.sender_core import RECENT_SAMPLES, SenderCore
from diffstream.sim.header_sizes import _HeaderSizes, _width
from diffstream.transport.packets import chunk_size

if TYPE_CHECKING:
    from diffstream.pipeline.encoder import ArmInfo
    from diffstream.sim.arm import ArmResult

# sim.kernel, imported by ``kernel()`` when the first arm might run in it: numba's import
# and the load of the cached machine code cost about 1 s, which a process that never runs
# a network-only arm (a full-loop scenario, a live sender) should not pay
_k: Any = None

# sim.fastpath.FastArmSimulation, not imported: it imports this module
FastArmSimulation = Any

CHUNK_FRAMES = 8192  # frames per kernel call: loss coins drawn and records emitted per chunk
# one representative value per msgpack int width class (header_sizes._width 0..4)
_WIDTH_VALUES = (0, 200, 1000, 70000, 2**32 + 1)


# the policy classes the kernel has twins of (exact types: a subclass may change anything)
_KERNEL_POLICIES = (FixedPolicy, RatePolicy, DeadlinePolicy, OraclePolicy, MPCPolicy)


@functools.cache
def kernel_available() -> bool:
    """Whether numba is installed (a dependency; on a platform without it the Python fast
    path runs every arm). Does not import it; looked up once per process."""
    return importlib.util.find_spec("numba") is not None


def kernel_enabled() -> bool:
    return os.environ.get("DIFFSTREAM_KERNEL", "1") != "0" and kernel_available()


def kernel() -> Any:
    """``sim.kernel``, imported on first use."""
    global _k
    if _k is None:
        from diffstream.sim import kernel as module

        _k = module
    return _k


@dataclass(frozen=True)
class _PolicyTables:
    kind: int
    params: np.ndarray  # kernel.P_* slots
    ladder_bits: np.ndarray  # MPC: the ladder's budgets (else one unused entry)
    ladder_q: np.ndarray  # MPC: their planned quality


def _clamped(bpp: float, pixels: int, max_bits: int) -> int:
    """``clamp_bits(obs.bits_for_bpp(bpp), obs)``."""
    return int(max(0, min(max_bits, math.floor(int(bpp * pixels)))))


def _first_observation(sim: FastArmSimulation, info: ArmInfo) -> Observation:
    """The first frame's observation, from ``SenderCore``'s own code: what does not change
    from frame to frame on a network-only arm (floor, cap, pixels, decode estimate)."""
    core = SenderCore(sim.sc, sim.arm, info)
    deadline = sim.sc.mode.target_latency_ms / 1000.0 if sim.interactive else None
    return core.observe(0, 0, 0.0, deadline)


def _policy_tables(sim: FastArmSimulation, obs: Observation) -> _PolicyTables | None:
    """What the kernel needs of a policy it runs (None: it does not run this one), from the
    first frame's observation ``obs``."""
    policy, pixels = sim.arm.policy, sim.sc.frame.pixels
    max_bits = int(sim.sc.max_bpp * pixels)
    params = np.zeros(_k.P_SIZE, np.float64)
    params[_k.P_DECODE] = obs.decode_s
    none_i, none_f = np.zeros(1, np.int64), np.zeros(1, np.float64)
    if type(policy) is FixedPolicy:
        params[_k.P_FIXED_BITS] = _clamped(policy.bpp, pixels, max_bits)
        return _PolicyTables(_k.POLICY_FIXED, params, none_i, none_f)
    if type(policy) is RatePolicy:
        p = policy.predictor
        if not (p is None or (type(p) is HarmonicMean and not p.robust)):
            return None
        params[_k.P_WINDOW] = policy.window if p is None else p.window
        params[_k.P_SAFETY] = policy.safety
        params[_k.P_STARTUP] = _clamped(policy.startup_bpp, pixels, max_bits)
        return _PolicyTables(_k.POLICY_RATE, params, none_i, none_f)
    if type(policy) is DeadlinePolicy:
        p = policy.predictor
        if not (p is None or type(p) is HarmonicMean):
            return None
        params[_k.P_WINDOW] = policy.window if p is None else p.window
        params[_k.P_ROBUST] = float(policy.robust if p is None else p.robust)
        params[_k.P_SAFETY] = policy.safety
        params[_k.P_STARTUP] = _clamped(policy.startup_bpp, pixels, max_bits)
        params[_k.P_BURST] = math.nan if policy.burst_frames is None else policy.burst_frames
        return _PolicyTables(_k.POLICY_DEADLINE, params, none_i, none_f)
    if type(policy) is OraclePolicy:
        return _PolicyTables(_k.POLICY_ORACLE, params, none_i, none_f)
    if type(policy) is MPCPolicy:
        p = policy.predictor
        if not (p is None or (type(p) is HarmonicMean and p.robust)):
            return None
        # numpy sums a plan's horizon sequentially below 8 terms (pairwise from 8 on)
        if policy.horizon >= 8:
            return None
        # the ladder, its qualities and the skip quality from the policy's own code, on the
        # first frame's observation (they depend on the floor, cap and pixels only)
        ladder = policy.ladder(obs)
        params[_k.P_WINDOW] = policy.window if p is None else p.window
        params[_k.P_STARTUP] = _clamped(policy.startup_bpp, pixels, max_bits)
        params[_k.P_SWITCH] = policy.switch_weight
        params[_k.P_STALL] = policy.stall_weight
        params[_k.P_SKIP_Q] = policy.skip_quality_db(obs)
        params[_k.P_HORIZON] = policy.horizon
        return _PolicyTables(
            _k.POLICY_MPC, params, np.array([b for b, _ in ladder], np.int64),
            np.asarray(policy.level_quality_db(obs, ladder), np.float64))
    return None


def eligible(sim: FastArmSimulation, info: ArmInfo) -> bool:
    """Whether the kernel reproduces this arm: either mode (playback with at most
    ``CHUNK_FRAMES`` startup frames); a ``fixed``, ``rate``
    (harmonic predictor), ``deadline`` (harmonic, robust or not), ``oracle`` or ``mpc``
    (robust harmonic predictor, horizon < 8) policy; no
    codec floor or rate-quality curve (network-only: ``escape_floor`` is then a no-op);
    the link delay the feedback path assumes."""
    return _check(sim, info) is not None


def _check(sim: FastArmSimulation, info: ArmInfo) -> _PolicyTables | None:
    if not kernel_enabled() or type(sim.arm.policy) not in _KERNEL_POLICIES:
        return None
    # playback: the startup frames' slots are decided within the first chunk
    if not sim.interactive and _startup_frames(sim) > CHUNK_FRAMES:
        return None
    if info.min_bits > 0 or info.rq is not None:
        return None  # (no rate-quality curve: no budget-dependent codec cost either)
    if sim.link.delay_s != sim.delay:
        return None
    max_bits = int(sim.sc.max_bpp * sim.sc.frame.pixels)
    if max(sim.n_frames, max_bits, sim.payload_bytes or 0) >= 2**32:  # header table's range
        return None
    k = kernel()
    if SAMPLE_HISTORY != k.SAMPLE_RING or RECENT_SAMPLES != k.RECENT:
        return None
    return _policy_tables(sim, _first_observation(sim, info))


def _startup_frames(sim: FastArmSimulation) -> int:
    """``PlaybackBuffer.startup_frames``."""
    return max(1, math.ceil(sim.sc.mode.startup_s * sim.fps - 1e-9))


@functools.lru_cache(maxsize=256)
def _header_table(label: str, shape: tuple[int, int], seq_max: int, budget_max: int,
                  n_max: int) -> np.ndarray:
    """Header bytes by (seq, budget, payload length, CRC) width class and whether the send
    time is a float: the real ``header_size`` of one representative of each class that
    values up to these maxima can reach (-1 elsewhere). Cached: a sweep runs the same arm
    labels again and again, and 500 packed headers cost more than a short run."""
    sizes = _HeaderSizes(label, shape)
    table = np.full((5, 5, 5, 4, 3), -1, np.int64)
    v = _WIDTH_VALUES
    for a in range(_width(seq_max) + 1):
        for b in range(_width(budget_max) + 1):
            for c in range(_width(n_max) + 1):
                for d in range(4):
                    # (capture, send): the interactive clock at 0, then floats; playback's
                    # capture is its send time, both the int 0 until the first wait
                    for e, (cap, send) in enumerate(((0.5, 0), (0.5, 0.5), (0, 0))):
                        table[a, b, c, d, e] = sizes.size(v[a], v[b], v[c], v[d], cap, send)
    table.setflags(write=False)
    return table


def run_compiled(sim: FastArmSimulation, info: ArmInfo) -> ArmResult | None:
    """``FastArmSimulation.run`` in the kernel, or None when it does not cover the arm."""
    tables = _check(sim, info)
    if tables is None:
        return None
    from diffstream.sim.arm import ArmResult

    sc, arm, link = sim.sc, sim.arm, sim.link
    pixels = sc.frame.pixels
    max_bits = int(sc.max_bpp * pixels)
    chunk = chunk_size(sc.link.mtu)
    payload = -1 if sim.payload_bytes is None else int(sim.payload_bytes)
    max_n = payload if payload >= 0 else max_bits // 8
    hdr_table = _header_table(arm.label, (sc.frame.height, sc.frame.width),
                              max(sim.n_frames - 1, 0), max_bits, max_n)
    max_packets = max(1, -(-(max_n + int(hdr_table.max())) // chunk))
    crc_class = _k.crc32_zero_classes(max_n)
    trace = link.trace
    opp = np.ascontiguousarray(trace.opportunities_ms, dtype=np.float64)
    queue_cap = float(link.queue_bytes) if link.queue_bytes is not None else math.inf
    pkt_cap = int(link.queue_packets) if link.queue_packets is not None else -1
    interactive = sim.interactive
    target_s = sc.mode.target_latency_ms / 1000.0 if interactive else 0.0
    params = tables.params.copy()
    startup = 0 if interactive else _startup_frames(sim)
    if not interactive:
        params[_k.P_PLAYBACK] = 1.0
        params[_k.P_MAX_OUT] = sc.mode.max_outstanding
        params[_k.P_MAX_BUF] = sc.mode.max_buffer_s

    istate = np.zeros(_k.I_SIZE, np.int64)
    istate[_k.I_NOW_INT] = 1
    istate[_k.I_CUR] = -1
    istate[_k.I_CODED_HDR] = info.header_bytes
    fstate = np.zeros(_k.F_SIZE, np.float64)
    fstate[_k.F_LAST_SEND] = -math.inf
    fstate[_k.F_PREV_ARR] = math.nan
    fstate[_k.F_LAST_DISPLAY] = -math.inf
    fstate[_k.F_VIEW_LAST] = -math.inf
    fstate[_k.F_OWD] = math.nan
    samples = np.zeros(_k.SAMPLE_RING, np.float64)
    dep = np.empty(1024, np.float64)
    cum = np.zeros(1025, np.float64)
    ht = np.empty(256, np.float64)
    he = np.empty(256, np.int64)
    hf = np.empty((256, 6), np.float64)
    hi = np.empty((256, 3), np.int64)
    pf = np.empty((8, 6), np.float64)
    pi = np.empty((8, 3), np.int64)
    useq = np.empty(256, np.int64)
    usend = np.empty(256, np.float64)
    uwire = np.empty(256, np.int64)
    coins = np.zeros(0, dtype=np.bool_)
    # the two PlaybackBuffers (kernel: b = 0 the playout, 1 the coordinator's copy)
    pbf = np.full((2, 1), math.nan)
    pbi = np.zeros((2, 3), np.int64)
    pbr = np.empty((2, startup), np.float64)
    pbs = np.empty((2, startup), np.int64)
    pbw = np.empty((2, _k.WINDOW if startup else 1, 2), np.float64)

    label, codec, policy_kind = arm.label, arm.codec, arm.policy.kind
    interval = sim.interval
    records: list[FrameRecord] = []
    keep, on_record = sim.keep_records, sim.on_record
    n_frames = sim.n_frames
    k0 = 0
    while True:
        k1 = min(n_frames, k0 + CHUNK_FRAMES)
        need = (k1 - k0) * max_packets
        pos = int(istate[_k.I_COIN])
        if coins.size - pos < need:  # loss models are batching-invariant (netsim.loss):
            # draw only the chunk's worst case (a short sweep run would pay for more)
            coins = np.concatenate((coins[pos:], np.asarray(
                link.loss.lost(need - (coins.size - pos)), dtype=np.bool_)))
            istate[_k.I_COIN] = 0
        fout = np.empty((k1 - k0, _k.O_FSIZE), np.float64)
        iout = np.empty((k1 - k0, _k.J_ISIZE), np.int64)
        if not interactive:
            iout[:, _k.J_SHOWN] = -1  # the playout decides a slot when it can
        dep, cum, ht, he, hf, hi, useq, usend, uwire, pf, pi = _k.run_chunk(
            k0, k1, k1 == n_frames, tables.kind, params, tables.ladder_bits,
            tables.ladder_q, interval, sim.delay, sim.fb_delay, target_s,
            max_bits, info.header_bytes, payload, chunk, queue_cap, pkt_cap, opp,
            float(trace.period_ms), float(trace.bytes_per_opportunity), hdr_table, crc_class,
            coins, istate, fstate, samples, dep, cum, ht, he, hf, hi, pf, pi, useq, usend,
            uwire, pbf, pbi, pbr, pbs, pbw, fout, iout)
        if not interactive and int(istate[_k.I_RX_NEXT]) != k1:
            raise RuntimeError(f"kernel: frames {int(istate[_k.I_RX_NEXT])}..{k1 - 1} of the "
                               "chunk have no playout slot")
        _emit(k0, fout, iout, label, codec, policy_kind, interactive, target_s, pixels,
              records if keep else None, on_record)
        if k1 >= n_frames:
            break
        k0 = k1
    link.offered_bytes = float(fstate[_k.F_OFFERED])
    link.departed_bytes = float(fstate[_k.F_DEPARTED])
    link.delivered_bytes = float(fstate[_k.F_DELIVERED])
    now: float = 0 if istate[_k.I_NOW_INT] else float(fstate[_k.F_NOW])
    return ArmResult(arm, records, link.offered_bytes, 0, info,
                     end_s=max(now, float(fstate[_k.F_LAST_EVENT])))


def _emit(k0: int, fout: np.ndarray, iout: np.ndarray, label: str, codec: str,
          policy: str, interactive: bool, target_s: float, pixels: int,
          records: list[FrameRecord] | None,
          on_record: Callable[[FrameRecord], None] | None) -> None:
    """The chunk's ``FrameRecord``s, as ``FastArmSimulation._settle`` composes them.

    Column by column: numpy does the arithmetic (the same IEEE operations as the Python
    path's scalars), ``tolist`` the conversion, and ``map`` calls the record's constructor
    from C, so a record costs little more than its ``__init__``. Columns the record holds
    as ``None`` where the kernel writes NaN go through one comprehension each.
    """
    m = fout.shape[0]
    if m == 0:
        return
    f, i = fout.T, iout.T
    shown_b, complete_b = i[_k.J_SHOWN] == 1, i[_k.J_COMPLETE] == 1
    capture = f[_k.O_CAPTURE]
    send_l, capture_l = f[_k.O_SEND].tolist(), capture.tolist()
    deadline_l: Any = (capture + target_s).tolist() if interactive else repeat(None)
    ints = np.flatnonzero(i[_k.J_SEND_INT]).tolist()
    if ints:  # SimPy's clock still the int 0: the send (and playback's capture) stay ints
        capture = capture.copy()
        for r in ints:
            send_l[r] = 0
            if not interactive:
                capture_l[r] = 0
                capture[r] = 0.0
    shown_l, complete_l = shown_b.tolist(), complete_b.tolist()
    last_l = _optional(f[_k.O_LAST])
    display = f[_k.O_DISPLAY]
    display_l = [d if s else None for d, s in zip(display.tolist(), shown_l, strict=True)]
    latency_l = [d if s else None
                 for d, s in zip((display - capture).tolist(), shown_l, strict=True)]
    stall = f[_k.O_STALL]
    met = shown_b if interactive else (stall == 0) & shown_b
    nan = math.nan
    made = list(map(
        FrameRecord, repeat(label), range(k0, k0 + m), repeat(codec), repeat(policy),
        capture_l, send_l, deadline_l, i[_k.J_BUDGET].tolist(), i[_k.J_PAYLOAD].tolist(),
        i[_k.J_HEADER].tolist(), i[_k.J_WIRE].tolist(), i[_k.J_PACKETS].tolist(),
        (i[_k.J_PAYLOAD] * 8 / pixels).tolist(), repeat(False), repeat(""), repeat(1),
        repeat(0.0), repeat(0.0), _optional(f[_k.O_THR_EST]),
        [nan if c != c else c for c in f[_k.O_CAPACITY].tolist()], f[_k.O_QUEUE].tolist(),
        i[_k.J_DROPPED].tolist(), i[_k.J_LOST].tolist(), _optional(f[_k.O_FIRST]), last_l,
        i[_k.J_DELIVERED].tolist(), complete_l, complete_l, repeat(False), repeat(None),
        repeat(0.0), repeat(0.0),
        [v if c else None for v, c in zip(last_l, complete_l, strict=True)],
        shown_l, display_l, latency_l, met.tolist(), (~shown_b | (stall > 0)).tolist(),
        stall.tolist(), repeat(None), repeat(None), repeat(None), repeat(None), repeat(""),
        _optional(f[_k.O_PRED]), _optional(f[_k.O_SAMPLE])))
    if records is not None:
        records.extend(made)
    if on_record is not None:
        for rec in made:
            on_record(rec)


def _optional(column: np.ndarray) -> list[float | None]:
    """A float column with the kernel's NaN for "none" as the record's ``None``."""
    return [None if v != v else v for v in column.tolist()]
