"""The compiled network-only loop (numba): ``sim.fastpath``'s arm, in machine code, for the
``fixed``, ``rate``, ``deadline``, ``oracle`` and ``mpc`` policies in either mode.

The Python fast path spends 50-150 us of interpreter time per frame; issue 18 asks for a
loop within a few times Pensieve's one-line fluid model. No library simulates *this* link
(mahimahi's opportunity accounting, drop-tail, loss after the bottleneck, delayed reports
with SimPy's event order), so it is written by hand, once more, and kept equal to the
Python fast path by ``tests/integration/sim/test_kernel_agreement.py`` (every record
column, byte for byte, on a grid of traces, losses, queues and policies) and, through
``FastArmSimulation``, to the full SimPy loop by ``test_fastpath_agreement.py``.

Every function mirrors a Python one, with the same float operations in the same order
(so the same IEEE results); each names its twin. What the kernel does not cover (other
policies, subclasses of these, EWMA/Kalman predictors) stays on the Python fast path:
``sim.compiled.eligible`` decides.

State lives in arrays so a long run is cut into chunks of frames (``run_chunk``): loss coins
are drawn between chunks and records are streamed out per chunk, so memory stays bounded.
None is NaN in the float columns (no real value here is NaN).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from diffstream.netsim.link import BYTES_EPS, COUNT_EPS
from diffstream.netsim.trace import TIME_EPS_MS
from diffstream.transport.packets import MAX_FRAME_BYTES, PACKET_OVERHEAD

POLICY_FIXED = 0
POLICY_RATE = 1
POLICY_MPC = 2
POLICY_DEADLINE = 3
POLICY_ORACLE = 4
# pparams slots (NaN: None)
(P_FIXED_BITS, P_WINDOW, P_SAFETY, P_STARTUP, P_SWITCH, P_STALL, P_SKIP_Q, P_DECODE,
 P_HORIZON, P_ROBUST, P_BURST, P_PLAYBACK, P_MAX_OUT, P_MAX_BUF) = range(14)
P_SIZE = 14
WINDOW = 4096  # pipeline.playout.PlaybackBuffer._window's maxlen
SAMPLE_RING = 64  # control.predictors.SAMPLE_HISTORY (checked in sim.compiled)
RECENT = 5  # pipeline.sender_core.RECENT_SAMPLES
_COMPACT_AT = 4096  # netsim.link._COMPACT_AT
_NAN = math.nan

# --- integer state slots (``istate``) ---------------------------------------------------
I_EID = 0  # last event id handed out
I_NOW_INT = 1  # 1 while the clock is still SimPy's int 0
I_CUR = 2  # link: last opportunity touched
I_HEAD = 3  # link: first packet possibly still queued
I_NDEP = 4  # link: packets in dep (cum holds NDEP + 1)
I_HEAP = 5  # pending reports
I_NSAMP = 6  # throughput samples appended so far
I_NPEND = 7  # frames sent since the sender's last yield (their reports not started)
I_COIN = 8  # next loss coin
I_CODED_HDR = 9  # header bytes of the last coded frame (SenderCore.header_bytes)
I_NUNACKED = 10  # SenderView.unacked, in send order (useq/usend/uwire)
I_RX_NEXT = 11  # playback: the first frame whose playout slot is not decided yet
I_SIZE = 12

# --- float state slots (``fstate``) -------------------------------------------------------
F_NOW = 0
F_LAST_EVENT = 1
F_LEFT = 2  # link: unused bytes of the last opportunity touched
F_LAST_SEND = 3
F_OFFERED = 4
F_DEPARTED = 5
F_DELIVERED = 6
F_PREV_ARR = 7  # ThroughputEstimator.prev_arrival_s (NaN: None)
F_LAST_DISPLAY = 8  # InteractivePlayout._last_display
F_INFLIGHT = 9  # SenderView.inflight_bytes
F_VIEW_LAST = 10  # SenderView.last_arrival_s
F_OWD = 11  # SenderView.one_way_delay_s (NaN: None)
F_VIEW_BUF = 12  # SenderView.buffer_s
F_BUF_AT = 13  # FastArmSimulation.buffer_at
F_SIZE = 14

# --- per-frame output columns: floats (``fout``) and ints (``iout``) ----------------------
O_SEND = 0
O_THR_EST = 1
O_PRED = 2
O_CAPACITY = 3
O_QUEUE = 4
O_FIRST = 5
O_LAST = 6
O_SAMPLE = 7
O_DISPLAY = 8
O_STALL = 9
O_CAPTURE = 10
O_FSIZE = 11
J_BUDGET = 0
J_PAYLOAD = 1
J_HEADER = 2
J_WIRE = 3
J_PACKETS = 4
J_DROPPED = 5
J_LOST = 6
J_DELIVERED = 7
J_COMPLETE = 8
J_SHOWN = 9
J_SEND_INT = 10
J_ISIZE = 11


@njit(cache=True)
def crc32_zero_classes(n_max: int) -> np.ndarray:
    """msgpack width class (``sim.header_sizes._width``) of ``crc32(bytes(n))`` for n in
    0..n_max: the frame header carries the payload's CRC, whose width moves the header
    size. CRC-32 (zlib's, reflected 0xEDB88320) of n zero bytes, one byte more per step."""
    table = np.empty(256, np.uint32)
    for i in range(256):
        c = np.uint32(i)
        for _ in range(8):
            if c & np.uint32(1):
                c = np.uint32(0xEDB88320) ^ (c >> np.uint32(1))
            else:
                c = c >> np.uint32(1)
        table[i] = c
    out = np.empty(n_max + 1, np.int8)
    c = np.uint32(0xFFFFFFFF)
    for n in range(n_max + 1):
        v = np.int64(c ^ np.uint32(0xFFFFFFFF))
        out[n] = 0 if v < 128 else 1 if v < 256 else 2 if v < 65536 else 3
        c = table[np.int64(c & np.uint32(0xFF))] ^ (c >> np.uint32(8))
    return out


@njit(cache=True)
def _width(v: int) -> int:
    """``sim.header_sizes._width`` for v >= 0."""
    return 0 if v < 128 else 1 if v < 256 else 2 if v < 65536 else 3 if v < 2**32 else 4


@njit(cache=True)
def _count_before_ms(opp: np.ndarray, period: float, t_ms: float) -> int:
    """``Trace.count_before_ms``."""
    t = t_ms - TIME_EPS_MS
    k = math.floor(t / period)
    r = t - k * period
    c = int(k) * opp.size + np.searchsorted(opp, r, side="right")
    return c if c > 0 else 0


@njit(cache=True)
def _capacity_bytes(opp: np.ndarray, period: float, bpo: float, t0: float, t1: float) -> float:
    """``Trace.capacity_bytes`` (the oracle's ``future.capacity_bytes``)."""
    if t1 <= t0:
        return 0.0
    c0 = _count_before_ms(opp, period, t0 * 1000.0)
    c1 = _count_before_ms(opp, period, t1 * 1000.0)
    return float(c1 - c0) * bpo


@njit(cache=True)
def _opp_time_s(opp: np.ndarray, period: float, i: int) -> float:
    """``Trace.opportunity_times_s`` for one index (floor divmod, as Python's)."""
    k = i // opp.size
    j = i - k * opp.size
    return (k * period + opp[j]) / 1000.0


@njit(cache=True)
def _harmonic(samples: np.ndarray, nsamp: int, window: int) -> float:
    """``harmonic_mean(tuple(view.samples)[-window:])`` (NaN: None); the ring keeps the
    last ``SAMPLE_RING`` samples, as ``SenderView.samples`` does."""
    kept = nsamp if nsamp < SAMPLE_RING else SAMPLE_RING
    return _tuple_harmonic(samples, nsamp, max(0, kept - window), kept)


@njit(cache=True)
def _wire(bits: int, coded: int, skip: int, chunk: int) -> float:
    """``SenderCore.observe``'s ``wire_bytes`` (``wire_bytes_trusted``)."""
    header = skip if bits == 0 else coded
    frame_len = header + (bits + 7) // 8
    n = -(-frame_len // chunk)
    return float(frame_len + PACKET_OVERHEAD * (n if n > 1 else 1))


@njit(cache=True)
def _max_payload_bits(wire_budget: float, header: int, chunk: int) -> int:
    """``transport.packets.max_payload_bits``."""
    if not wire_budget >= 0:
        return -1
    cap = float(MAX_FRAME_BYTES) * 2
    w = int(wire_budget if wire_budget < cap else cap)
    step = chunk + PACKET_OVERHEAD
    n = (w - 1 + chunk) // step
    if n < 1:
        n = 1
    frame_len = min(n * chunk, w - PACKET_OVERHEAD * n)
    if frame_len < header:
        return -1
    return 8 * (frame_len - header)


@njit(cache=True)
def _payload_bits_for_wire_budget(budget: float, max_bits: int, coded: int, skip: int,
                                  chunk: int) -> int:
    """``policy.base.payload_bits_for_wire_budget`` with ``SenderCore``'s layout."""
    hi = max_bits
    if hi <= 0 or not _wire(0, coded, skip, chunk) <= budget:
        return 0
    if _wire(hi, coded, skip, chunk) <= budget:
        return hi
    g = min(max(_max_payload_bits(budget, coded, chunk), 0), hi - 1)
    if _wire(g + 1, coded, skip, chunk) > budget and (
            g == 0 or _wire(g, coded, skip, chunk) <= budget):
        return g
    lo = 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _wire(mid, coded, skip, chunk) <= budget:
            lo = mid
        else:
            hi = mid
    return lo


@njit(cache=True)
def _clamp(bits: float, max_bits: int) -> int:
    """``policy.base.clamp_bits``."""
    b = math.floor(bits)
    if b > max_bits:
        b = max_bits
    if b < 0:
        b = 0
    return int(b)


# --- the report heap: (time, event id) ordered; each item carries its report -------------
# hf row: (sample or NaN, first arrival or NaN, last arrival or NaN, send time, buffer
#          level reported, report time)
# hi row: (seq, wire bytes, first packet bytes)
@njit(cache=True)
def _less(ht: np.ndarray, he: np.ndarray, a: int, b: int) -> bool:
    return ht[a] < ht[b] or (ht[a] == ht[b] and he[a] < he[b])


@njit(cache=True)
def _swap(ht, he, hf, hi, a, b):  # type: ignore[no-untyped-def]
    ht[a], ht[b] = ht[b], ht[a]
    he[a], he[b] = he[b], he[a]
    for c in range(hf.shape[1]):
        hf[a, c], hf[b, c] = hf[b, c], hf[a, c]
    for c in range(hi.shape[1]):
        hi[a, c], hi[b, c] = hi[b, c], hi[a, c]


@njit(cache=True)
def _heap_push(ht, he, hf, hi, n, t, e, pf, pi, j):  # type: ignore[no-untyped-def]
    """Push pending report ``j`` (rows of ``pf``/``pi``) at (t, e); returns the new size."""
    i = n
    ht[i], he[i] = t, e
    hf[i, :] = pf[j, :]
    hi[i, :] = pi[j, :]
    while i > 0:
        p = (i - 1) // 2
        if _less(ht, he, i, p):
            _swap(ht, he, hf, hi, i, p)
            i = p
        else:
            break
    return n + 1


@njit(cache=True)
def _heap_pop(ht, he, hf, hi, n):  # type: ignore[no-untyped-def]
    """Remove the top (read it before calling); returns the new size."""
    n -= 1
    if n > 0:
        _swap(ht, he, hf, hi, 0, n)
    i = 0
    while True:
        a, b, m = 2 * i + 1, 2 * i + 2, i
        if a < n and _less(ht, he, a, m):
            m = a
        if b < n and _less(ht, he, b, m):
            m = b
        if m == i:
            break
        _swap(ht, he, hf, hi, i, m)
        i = m
    return n


# --- pipeline.playout.PlaybackBuffer, twice: b = 0 the receiver's playout (its slots
# become the records), b = 1 the coordinator's copy whose level the reports carry.
# pbf[b, 0]: _next_due (NaN: not started); pbi[b]: (pending count, window count, window
# write position); pbr/pbs[b]: the pending frames' ready times (NaN: None) and showable;
# pbw[b]: the (ready, display) window ring
@njit(cache=True)
def _pb_play(b, ready, showable, pbf, pbi, pbw, interval, istate, fout, iout,
             k0):  # type: ignore[no-untyped-def]
    """``PlaybackBuffer._play``; the playout's slot goes to its frame's output row."""
    due = pbf[b, 0]
    if math.isnan(ready):
        pbf[b, 0] = due + interval
        shown, display, stall = False, _NAN, 0.0
    else:
        stall = max(0.0, ready - due)
        display = due + stall
        pbf[b, 0] = display + interval
        pos = pbi[b, 2]
        pbw[b, pos, 0] = ready
        pbw[b, pos, 1] = display
        pbi[b, 2] = (pos + 1) % WINDOW
        if pbi[b, 1] < WINDOW:
            pbi[b, 1] += 1
        shown = showable != 0
        if not shown:
            display = _NAN
    if b == 0:
        row = istate[I_RX_NEXT] - k0
        if row < 0:
            raise RuntimeError("kernel: a playout slot decided after its chunk")
        fout[row, O_DISPLAY] = display
        fout[row, O_STALL] = stall
        iout[row, J_SHOWN] = 1 if shown else 0
        istate[I_RX_NEXT] += 1


@njit(cache=True)
def _pb_start(b, pbf, pbi, pbr, pbs, pbw, interval, istate, fout, iout,
              k0):  # type: ignore[no-untyped-def]
    """Playback starts at the latest ready time of the pending frames (0 if none)."""
    n = pbi[b, 0]
    start = _NAN
    for j in range(n):
        r = pbr[b, j]
        if not math.isnan(r) and (math.isnan(start) or r > start):
            start = r
    pbf[b, 0] = 0.0 if math.isnan(start) else start
    pbi[b, 0] = 0
    for j in range(n):
        _pb_play(b, pbr[b, j], pbs[b, j], pbf, pbi, pbw, interval, istate, fout, iout, k0)


@njit(cache=True)
def _pb_on_frame(b, ready, showable, pbf, pbi, pbr, pbs, pbw, interval, istate, fout, iout,
                 k0):  # type: ignore[no-untyped-def]
    """``PlaybackBuffer.on_frame``."""
    if math.isnan(pbf[b, 0]):
        n = pbi[b, 0]
        pbr[b, n] = ready
        pbs[b, n] = showable
        pbi[b, 0] = n + 1
        if n + 1 < pbr.shape[1]:
            return
        _pb_start(b, pbf, pbi, pbr, pbs, pbw, interval, istate, fout, iout, k0)
        return
    _pb_play(b, ready, showable, pbf, pbi, pbw, interval, istate, fout, iout, k0)


@njit(cache=True)
def _pb_level(b, t, pbf, pbi, pbr, pbw, interval):  # type: ignore[no-untyped-def]
    """``PlaybackBuffer.level_s(t)``."""
    if math.isnan(pbf[b, 0]):
        count = 0
        for j in range(pbi[b, 0]):
            r = pbr[b, j]
            if not math.isnan(r) and r <= t:
                count += 1
        return count * interval
    level = 0.0
    pos = pbi[b, 2]
    for m in range(pbi[b, 1]):
        i = (pos - 1 - m) % WINDOW
        ready, display = pbw[b, i, 0], pbw[b, i, 1]
        if display + interval <= t:
            break
        if ready <= t:
            level += min(interval, display + interval - max(t, display))
    return max(0.0, level)


@njit(cache=True)
def _wait_report(has_timeout, timeout_at, istate, fstate, pf, pi, interval, delay, fb_delay,
                 samples, ht, he, hf, hi, useq, usend, uwire, pbf, pbi, pbr, pbw
                 ):  # type: ignore[no-untyped-def]
    """``FastArmSimulation._wait_report``: until the next report, or ``timeout_at``."""
    w = 0
    if has_timeout:
        istate[I_EID] += 1
        w = istate[I_EID]
    ht, he, hf, hi = _init_reports(istate, fstate, pf, pi, interval, delay, fb_delay, samples,
                                   ht, he, hf, hi, useq, usend, uwire, pbf, pbi, pbr, pbw)
    if has_timeout and timeout_at > fstate[F_LAST_EVENT]:
        fstate[F_LAST_EVENT] = timeout_at
    if istate[I_HEAP] > 0 and (not has_timeout or ht[0] < timeout_at
                               or (ht[0] == timeout_at and he[0] < w)):
        t = ht[0]
    elif has_timeout:
        t = timeout_at
    else:
        raise RuntimeError("playback sender waits for a report that never comes")
    while istate[I_HEAP] > 0 and ht[0] <= t:
        _deliver(istate, fstate, samples, ht[0], hf[0], hi[0], useq, usend, uwire)
        istate[I_HEAP] = _heap_pop(ht, he, hf, hi, istate[I_HEAP])
    fstate[F_NOW] = t
    istate[I_NOW_INT] = 0
    return ht, he, hf, hi


@njit(cache=True)
def run_chunk(k0: int, k1: int, final: bool, policy: int, pparams: np.ndarray,
              ladder_bits: np.ndarray, ladder_q: np.ndarray,
              interval: float, delay: float, fb_delay: float, target_s: float,
              max_bits: int, skip_hdr: int, payload: int, mtu_chunk: int,
              queue_cap: float, pkt_cap: int,
              opp: np.ndarray, period: float, bpo: float,
              hdr_table: np.ndarray, crc_class: np.ndarray, coins: np.ndarray,
              istate: np.ndarray, fstate: np.ndarray, samples: np.ndarray,
              dep: np.ndarray, cum: np.ndarray, ht: np.ndarray, he: np.ndarray,
              hf: np.ndarray, hi: np.ndarray, pf: np.ndarray, pi: np.ndarray,
              useq: np.ndarray, usend: np.ndarray, uwire: np.ndarray,
              pbf: np.ndarray, pbi: np.ndarray, pbr: np.ndarray, pbs: np.ndarray,
              pbw: np.ndarray, fout: np.ndarray, iout: np.ndarray):
    """Frames ``k0 .. k1 - 1`` of ``FastArmSimulation.run``, row ``k - k0`` of
    ``fout``/``iout``; ``final``: then the end of the run (the last reports, the playout's
    flush). Returns the arrays that grow (the link's queue, the heap, the unacknowledged
    frames)."""
    playback = pparams[P_PLAYBACK] != 0.0
    max_out = int(pparams[P_MAX_OUT])
    max_buf = pparams[P_MAX_BUF]
    for row in range(k1 - k0):
        k = k0 + row
        if not playback:
            capture = k * interval
            now = fstate[F_NOW]
            if now < capture:  # FastArmSimulation._wait_until(now + (capture - now))
                t = now + (capture - now)
                istate[I_EID] += 1
                w = istate[I_EID]
                ht, he, hf, hi = _init_reports(istate, fstate, pf, pi, interval, delay,
                                               fb_delay, samples, ht, he, hf, hi, useq, usend,
                                               uwire, pbf, pbi, pbr, pbw)
                while istate[I_HEAP] > 0 and (ht[0] < t or (ht[0] == t and he[0] < w)):
                    _deliver(istate, fstate, samples, ht[0], hf[0], hi[0], useq, usend, uwire)
                    istate[I_HEAP] = _heap_pop(ht, he, hf, hi, istate[I_HEAP])
                if t > fstate[F_LAST_EVENT]:
                    fstate[F_LAST_EVENT] = t
                fstate[F_NOW] = t
                istate[I_NOW_INT] = 0
        else:  # room for the frame: few enough outstanding, and in the buffer
            while True:
                outstanding = istate[I_NUNACKED]
                now = fstate[F_NOW]
                buf = max(0.0, fstate[F_VIEW_BUF] - (now - fstate[F_BUF_AT]))
                over = buf + outstanding * interval - max_buf
                if outstanding >= max_out:
                    ht, he, hf, hi = _wait_report(False, 0.0, istate, fstate, pf, pi, interval,
                                                  delay, fb_delay, samples, ht, he, hf, hi,
                                                  useq, usend, uwire, pbf, pbi, pbr, pbw)
                elif over > 1e-9:
                    ht, he, hf, hi = _wait_report(True, now + max(over, 1e-6), istate, fstate,
                                                  pf, pi, interval, delay, fb_delay, samples,
                                                  ht, he, hf, hi, useq, usend, uwire, pbf,
                                                  pbi, pbr, pbw)
                else:
                    break
            capture = fstate[F_NOW]
        if istate[I_NPEND] >= pf.shape[0]:  # room for this frame's report
            pf = np.concatenate((pf, np.empty_like(pf)))
            pi = np.concatenate((pi, np.empty_like(pi)))
        dep, cum, useq, usend, uwire = _send_frame(
            k, row, capture, policy, pparams, ladder_bits, ladder_q, interval, delay,
            target_s, max_bits, skip_hdr, payload, mtu_chunk, queue_cap, pkt_cap, opp,
            period, bpo, hdr_table, crc_class, coins, istate, fstate, samples, dep, cum, pf,
            pi, useq, usend, uwire, pbf, pbi, pbr, pbs, pbw, k0, fout, iout)
    if final:
        ht, he, hf, hi = _init_reports(istate, fstate, pf, pi, interval, delay, fb_delay,
                                       samples, ht, he, hf, hi, useq, usend, uwire, pbf, pbi,
                                       pbr, pbw)
        while istate[I_HEAP] > 0:
            _deliver(istate, fstate, samples, ht[0], hf[0], hi[0], useq, usend, uwire)
            istate[I_HEAP] = _heap_pop(ht, he, hf, hi, istate[I_HEAP])
        if playback and math.isnan(pbf[0, 0]) and pbi[0, 0] > 0:  # PlaybackBuffer.flush
            _pb_start(0, pbf, pbi, pbr, pbs, pbw, interval, istate, fout, iout, k0)
    return dep, cum, ht, he, hf, hi, useq, usend, uwire, pf, pi


@njit(cache=True)
def _deliver(istate, fstate, samples, t, f, i, useq, usend, uwire):  # type: ignore[no-untyped-def]
    """``FastArmSimulation._deliver`` -> ``SenderView.on_report``: what the kernel's
    policies and the playback sender read (samples, the unacknowledged frames, bytes in
    flight, last arrival, one-way delay, the reported buffer and when it was reported; not
    the loss rate or RTT, which they do not use)."""
    sample, first, last, send = f[0], f[1], f[2], f[3]
    seq, wire, fpb = i[0], i[1], i[2]
    nu = istate[I_NUNACKED]
    for j in range(nu):  # unacked.pop(seq), keeping the send order
        if useq[j] == seq:
            for m in range(j, nu - 1):
                useq[m] = useq[m + 1]
                usend[m] = usend[m + 1]
                uwire[m] = uwire[m + 1]
            istate[I_NUNACKED] = nu - 1
            break
    inflight = fstate[F_INFLIGHT] - wire
    fstate[F_INFLIGHT] = inflight if inflight > 0.0 else 0.0
    if not math.isnan(sample):
        samples[istate[I_NSAMP] % SAMPLE_RING] = sample
        istate[I_NSAMP] += 1
    if not math.isnan(last) and last > fstate[F_VIEW_LAST]:
        fstate[F_VIEW_LAST] = last
    if not math.isnan(first):
        owd = first - send
        if not math.isnan(sample) and sample != 0.0:
            owd -= fpb * 8.0 / sample
        owd = max(owd, 0.0)
        cur = fstate[F_OWD]
        fstate[F_OWD] = owd if math.isnan(cur) else min(cur, owd)
    fstate[F_VIEW_BUF] = f[4]
    fstate[F_BUF_AT] = f[5]
    if t > fstate[F_LAST_EVENT]:
        fstate[F_LAST_EVENT] = t


@njit(cache=True)
def _init_reports(istate, fstate, pf, pi, interval, delay, fb_delay, samples,
                  ht, he, hf, hi, useq, usend, uwire, pbf, pbi, pbr,
                  pbw):  # type: ignore[no-untyped-def]
    """``FastArmSimulation._init_reports``: the report processes of the frames sent since
    the last yield (rows of ``pf``/``pi``, laid out as the heap's ``hf``/``hi``): report
    time, the buffer level then (playback), and the report's arrival."""
    now = fstate[F_NOW]
    playback = pbr.shape[1] > 0  # (interactive arms have no startup frames)
    for j in range(istate[I_NPEND]):
        last = pf[j, 2]
        sent_at = last if not math.isnan(last) else pf[j, 3] + delay + interval
        pf[j, 4] = _pb_level(1, sent_at, pbf, pbi, pbr, pbw, interval) if playback else 0.0
        pf[j, 5] = sent_at
        arrive = sent_at + fb_delay
        if arrive > now:
            if istate[I_HEAP] == ht.size:  # grow the heap
                m = ht.size
                ht = np.concatenate((ht, np.empty(m, ht.dtype)))
                he = np.concatenate((he, np.empty(m, he.dtype)))
                hf = np.concatenate((hf, np.empty((m, hf.shape[1]), hf.dtype)))
                hi = np.concatenate((hi, np.empty((m, hi.shape[1]), hi.dtype)))
            istate[I_EID] += 1
            istate[I_HEAP] = _heap_push(ht, he, hf, hi, istate[I_HEAP], now + (arrive - now),
                                        istate[I_EID], pf, pi, j)
        else:
            _deliver(istate, fstate, samples, now, pf[j], pi[j], useq, usend, uwire)
    istate[I_NPEND] = 0
    return ht, he, hf, hi


@njit(cache=True)
def _tuple_harmonic(samples: np.ndarray, nsamp: int, a: int, b: int) -> float:
    """``harmonic_mean(view_tuple[a:b])`` where ``view_tuple`` is ``tuple(view.samples)``
    (its last ``SAMPLE_RING`` samples); NaN: None."""
    kept = nsamp if nsamp < SAMPLE_RING else SAMPLE_RING
    off = nsamp - kept
    count = 0
    acc = 0.0
    for i in range(a, b):
        s = samples[(off + i) % SAMPLE_RING]
        if 0.0 < s < math.inf:
            count += 1
            acc += 1.0 / s
    if count == 0:
        return _NAN
    return count / acc


@njit(cache=True)
def _robust(samples: np.ndarray, nsamp: int, window: int) -> float:
    """``predictors.robust_throughput_bps(tuple(view.samples), window)`` (NaN: None)."""
    n = nsamp if nsamp < SAMPLE_RING else SAMPLE_RING
    estimate = _tuple_harmonic(samples, nsamp, max(0, n - window), n)
    if math.isnan(estimate):
        return _NAN
    worst = 0.0
    off = nsamp - n
    for i in range(max(1, n - window), n):
        actual = samples[(off + i) % SAMPLE_RING]
        predicted = _tuple_harmonic(samples, nsamp, max(0, i - window), i)
        if not math.isnan(predicted) and actual > 0:
            err = abs(predicted - actual) / actual
            if err > worst:
                worst = err
    return estimate / (1.0 + worst)


@njit(cache=True)
def _backlog(fstate, nu, usend, uwire, now, thr):  # type: ignore[no-untyped-def]
    """``SenderView.backlog_estimate(now, thr)`` (NaN: None); the unacknowledged frames are
    in send order, which is ``sorted``'s order here (interactive send times increase)."""
    if math.isnan(thr) or thr <= 0:
        return _NAN
    owd = fstate[F_OWD]
    clear = fstate[F_VIEW_LAST] - (0.0 if math.isnan(owd) else owd)
    for j in range(nu):
        clear = max(clear, usend[j]) + uwire[j] * 8.0 / thr
    if nu == 0:
        return 0.0
    return max(0.0, clear - now) * thr / 8.0


@njit(cache=True)
def _mpc_budget(thr, now, deadline, buffer_s, playback, interval, pparams, ladder_bits,
                ladder_q, fstate, istate, usend, uwire, samples, coded, skip_hdr,
                chunk):  # type: ignore[no-untyped-def]
    """``MPCPolicy.budget_bits``, ``thr`` its robust prediction (not
    NaN): every plan of ``level_sequences`` scored as ``objectives`` scores it, the first
    best kept (``argmax``). The plans are walked in the same lexicographic order as an
    odometer, and a plan reuses the steps it shares with the previous one (the same
    operations on the same values: the same scores, in fewer steps)."""
    if not thr > 0:
        return ladder_bits[0]
    n_levels = ladder_bits.size
    horizon = int(pparams[P_HORIZON])
    send = np.empty(n_levels)
    for j in range(n_levels):
        send[j] = 8.0 * _wire(ladder_bits[j], coded, skip_hdr, chunk) / thr
    nu = istate[I_NUNACKED]
    est5 = _harmonic(samples, istate[I_NSAMP], RECENT)
    backlog = _backlog(fstate, nu, usend, uwire, now, est5)
    queued = fstate[F_INFLIGHT] if math.isnan(backlog) else backlog
    owd = fstate[F_OWD]
    if math.isnan(owd):
        owd = 0.0
    dec = pparams[P_DECODE]
    skip_q = pparams[P_SKIP_Q]
    sw, st = pparams[P_SWITCH], pparams[P_STALL]
    clear0 = now + queued * 8.0 / thr
    # per depth i, the state after planned frame i of the current plan
    s_clear = np.empty(horizon)
    s_q = np.empty(horizon)
    s_qsum = np.empty(horizon)
    s_switch = np.empty(horizon)
    s_stall = np.empty(horizon)
    digits = np.zeros(horizon, np.int64)
    n_plans = n_levels ** horizon
    best_v = -math.inf
    best_first = 0
    changed = 0
    for p in range(n_plans):
        for i in range(changed, horizon):
            lv = digits[i]
            q = ladder_q[lv]
            if playback:  # Pensieve's rebuffering: s_clear holds the buffer after the step
                prev_buf = buffer_s if i == 0 else s_clear[i - 1]
                add = max(0.0, send[lv] - prev_buf)
                clear = max(prev_buf - send[lv], 0.0) + interval
            else:
                prev_clear = clear0 if i == 0 else s_clear[i - 1]
                start = now + i * interval + 0.0  # + encode_s (0: network-only)
                clear = max(prev_clear, start) + send[lv]
                late = clear + owd + dec > deadline + i * interval + 1e-12
                if late:
                    q = skip_q
                add = interval if late else 0.0
            s_clear[i] = clear
            s_q[i] = q
            if i == 0:
                s_qsum[i] = 0.0 + q
                s_switch[i] = 0.0
                s_stall[i] = 0.0 + add
            else:
                s_qsum[i] = s_qsum[i - 1] + q
                s_switch[i] = s_switch[i - 1] + abs(q - s_q[i - 1])
                s_stall[i] = s_stall[i - 1] + add
        v = s_qsum[horizon - 1] - sw * s_switch[horizon - 1] - st * s_stall[horizon - 1]
        if math.isnan(v):
            v = -math.inf
        if v > best_v or p == 0:
            best_v = v
            best_first = digits[0]
        # the next plan: the last digit turns fastest
        i = horizon - 1
        digits[i] += 1
        while digits[i] == n_levels and i > 0:
            digits[i] = 0
            i -= 1
            digits[i] += 1
        changed = i
    return ladder_bits[best_first]


@njit(cache=True)
def _send_frame(k, row, capture, policy, pparams, ladder_bits, ladder_q, interval,
                delay, target_s, max_bits, skip_hdr, payload, chunk, queue_cap, pkt_cap,
                opp, period, bpo, hdr_table, crc_class, coins, istate, fstate, samples,
                dep, cum, pf, pi, useq, usend, uwire, pbf, pbi, pbr, pbs, pbw, k0, fout,
                iout):  # type: ignore[no-untyped-def]
    """``FastArmSimulation._send_frame``."""
    now = fstate[F_NOW]
    now_int = istate[I_NOW_INT]
    playback = pparams[P_PLAYBACK] != 0.0
    if playback:  # the frame plays when the buffer runs dry (time_to_deadline_s)
        deadline = _NAN
        buffer_s = max(0.0, fstate[F_VIEW_BUF] - (now - fstate[F_BUF_AT]))
        ttd = buffer_s + interval
    else:
        deadline = capture + target_s
        buffer_s = 0.0
        ttd = deadline - now
    nsamp = istate[I_NSAMP]
    coded = istate[I_CODED_HDR]
    # Link.queue_bytes_at(now), before the send: the record's queue and the oracle's backlog
    # (nothing below changes the link before the send)
    ndep = istate[I_NDEP]
    head = istate[I_HEAD]
    fq = head + np.searchsorted(dep[head:ndep], now, side="right")
    queue_before = cum[ndep] - cum[fq]
    # the policy (SenderCore.budget), then the record's estimate (throughput_estimate)
    if policy == POLICY_FIXED:
        budget = int(pparams[P_FIXED_BITS])
        pred = _NAN
    elif policy == POLICY_RATE:
        thr = _harmonic(samples, nsamp, int(pparams[P_WINDOW]))
        pred = thr
        if math.isnan(thr):
            budget = int(pparams[P_STARTUP])
        else:
            wire_budget = thr * pparams[P_SAFETY] * interval / 8.0
            budget = _clamp(float(_payload_bits_for_wire_budget(wire_budget, max_bits, coded,
                                                                skip_hdr, chunk)), max_bits)
    elif policy == POLICY_MPC:
        thr = _robust(samples, nsamp, int(pparams[P_WINDOW]))
        pred = thr
        if math.isnan(thr):
            budget = int(pparams[P_STARTUP])
        else:
            budget = _mpc_budget(thr, now, deadline, buffer_s, playback, interval, pparams,
                                 ladder_bits, ladder_q, fstate, istate, usend, uwire, samples,
                                 coded, skip_hdr, chunk)
    elif policy == POLICY_DEADLINE:
        # DeadlinePolicy.budget_bits (interactive: the window is deadline - now)
        if pparams[P_ROBUST] != 0.0:
            hm = _robust(samples, nsamp, int(pparams[P_WINDOW]))
        else:
            hm = _harmonic(samples, nsamp, int(pparams[P_WINDOW]))
        pred = hm
        if math.isnan(hm):
            budget = int(pparams[P_STARTUP])
        else:
            thr = hm * pparams[P_SAFETY]
            owd = fstate[F_OWD]
            if math.isnan(owd):
                owd = 0.0
            slack_s = ttd - 0.0 - owd - pparams[P_DECODE]  # - encode_s (0)
            est5 = _harmonic(samples, nsamp, RECENT)
            backlog = _backlog(fstate, istate[I_NUNACKED], usend, uwire, now, est5)
            queued = fstate[F_INFLIGHT] if math.isnan(backlog) else backlog
            wire_budget = slack_s * thr / 8.0 - queued
            burst = pparams[P_BURST]
            if not math.isnan(burst):
                cap = burst * interval * thr / 8.0
                if cap < wire_budget:
                    wire_budget = cap
            budget = _clamp(float(_payload_bits_for_wire_budget(wire_budget, max_bits, coded,
                                                                skip_hdr, chunk)), max_bits)
    elif policy == POLICY_ORACLE:
        # OraclePolicy.budget_bits: the true capacity and the true queue (Link.queue_bytes_at)
        pred = _NAN
        t0 = now + 0.0  # + encode_s (0)
        t1 = now + ttd - delay - pparams[P_DECODE]
        if t1 <= t0:
            wire_budget = -1.0
        else:  # t0 == now (encode_s 0): both windows are [now, t1)
            cap = _capacity_bytes(opp, period, bpo, now, t1)
            a = cap - queue_before
            b = cap if t0 == now else _capacity_bytes(opp, period, bpo, t0, t1)
            wire_budget = a if a <= b else b
        budget = _clamp(float(_payload_bits_for_wire_budget(wire_budget, max_bits, coded,
                                                            skip_hdr, chunk)), max_bits)
    else:
        raise RuntimeError("kernel: unknown policy")
    est = _harmonic(samples, nsamp, RECENT)
    n = payload if payload >= 0 else budget // 8
    # send time int (SimPy's clock still 0) or float; in playback the capture is the send
    hdr = hdr_table[_width(k), _width(budget), _width(n), crc_class[n],
                    (2 if playback else 0) if now_int else 1]
    istate[I_CODED_HDR] = hdr  # SenderCore.on_encoded
    frame_len = n + hdr
    n_pk = -(-frame_len // chunk)
    if n_pk < 1:
        n_pk = 1
    last_size = frame_len - chunk * (n_pk - 1) + PACKET_OVERHEAD
    full_size = chunk + PACKET_OVERHEAD
    wire = frame_len + PACKET_OVERHEAD * n_pk
    # Link.send_summary(now, sizes)
    fstate[F_LAST_SEND] = now
    head = fq  # _advance(now): the same bisection
    if head >= _COMPACT_AT and head * 2 >= ndep:
        base_c = cum[head]
        m_keep = ndep - head
        for i in range(m_keep):
            dep[i] = dep[head + i]
        for i in range(m_keep + 1):
            cum[i] = cum[head + i] - base_c
        ndep = m_keep
        head = 0
    istate[I_HEAD] = head
    q_bytes = cum[ndep] - cum[head]
    q_pkts = ndep - head
    cap_p = pkt_cap if pkt_cap >= 0 else n_pk + q_pkts
    # which packets are accepted: all (the common case) or one at a time (_admit)
    acc_sizes = np.empty(n_pk, np.int64)
    n_acc = 0
    if q_bytes + float(wire) <= queue_cap and q_pkts + n_pk <= cap_p:
        for i in range(n_pk):
            acc_sizes[i] = full_size if i < n_pk - 1 else last_size
        n_acc = n_pk
    else:
        qb, qp = q_bytes, q_pkts
        for i in range(n_pk):
            sz = full_size if i < n_pk - 1 else last_size
            if qb + sz <= queue_cap and qp + 1 <= cap_p:
                acc_sizes[n_acc] = sz
                n_acc += 1
                qb += sz
                qp += 1
    n_lost = 0
    first_bytes = 0
    first_arr = _NAN
    last_arr = _NAN
    delivered = 0
    if n_acc > 0:
        # _serve
        first = _count_before_ms(opp, period, now * 1000.0)
        if istate[I_CUR] >= first:
            base, left = istate[I_CUR], fstate[F_LEFT]
        else:
            base, left = first - 1, 0.0
        if ndep + n_acc > dep.size:  # grow the queue arrays
            new = max(2 * dep.size, ndep + n_acc)
            dep2 = np.empty(new, np.float64)
            dep2[:ndep] = dep[:ndep]
            cum2 = np.empty(new + 1, np.float64)
            cum2[:ndep + 1] = cum[:ndep + 1]
            dep, cum = dep2, cum2
        cumf = 0.0
        idx_last = base
        base_b = cum[ndep]
        c = 0
        coin = istate[I_COIN]
        for i in range(n_acc):
            sz = acc_sizes[i]
            cumf += sz
            x = math.ceil((cumf - left) / bpo - COUNT_EPS)
            idx = base + (int(x) if x > 0 else 0)
            idx_last = idx
            d = _opp_time_s(opp, period, idx)
            dep[ndep + i] = d
            c += sz
            cum[ndep + i + 1] = base_b + float(c)
            if coins[coin + i]:
                n_lost += 1
                continue
            a = d + delay
            if math.isnan(first_arr):
                first_arr, first_bytes = a, sz
            elif a < first_arr:
                first_arr = a
            if math.isnan(last_arr) or a > last_arr:
                last_arr = a
            delivered += sz
        istate[I_COIN] = coin + n_acc
        m = idx_last - base
        if m == 0:
            left = left - cumf
        else:
            istate[I_CUR] = base + m
            left = m * bpo - (cumf - left)
        if left < BYTES_EPS:
            left = 0.0
        fstate[F_LEFT] = left
        fstate[F_OFFERED] += m * bpo
        ndep += n_acc
        fstate[F_DEPARTED] += float(c)
        fstate[F_DELIVERED] += float(delivered)
    istate[I_NDEP] = ndep
    n_dropped = n_pk - n_acc
    complete = n_dropped == 0 and n_lost == 0
    # the receiver's sample (ThroughputEstimator.sample with the base delay known)
    sample = _NAN
    if not math.isnan(last_arr) and delivered > 0:
        start = now
        prev = fstate[F_PREV_ARR]
        if not math.isnan(prev):
            start = max(start, prev - delay)
        fstate[F_PREV_ARR] = last_arr
        busy = (last_arr - delay) - start
        if busy > 1e-6:
            sample = delivered * 8.0 / busy
    # the capacity column (FastArmSimulation._capacity_bps)
    t1 = capture + interval
    c0 = _count_before_ms(opp, period, capture * 1000.0)
    c1 = _count_before_ms(opp, period, t1 * 1000.0)
    capacity = float(c1 - c0) * bpo * 8.0 / (t1 - capture)
    # the receiver: decoded iff whole, at the last arrival; then the playout decision
    shown = False
    display = _NAN
    if playback:
        done = last_arr if complete else _NAN
        _pb_on_frame(0, done, 1 if complete else 0, pbf, pbi, pbr, pbs, pbw, interval,
                     istate, fout, iout, k0)
        ready = last_arr + pparams[P_DECODE] if complete else _NAN
        _pb_on_frame(1, ready, 1, pbf, pbi, pbr, pbs, pbw, interval, istate, fout, iout, k0)
    elif complete and not last_arr > deadline + 1e-12:  # InteractivePlayout
        display = max(last_arr, fstate[F_LAST_DISPLAY])
        fstate[F_LAST_DISPLAY] = display
        shown = True
    # SenderCore.on_sent: the view's send log
    nu = istate[I_NUNACKED]
    if nu == useq.size:
        useq = np.concatenate((useq, np.empty(nu, useq.dtype)))
        usend = np.concatenate((usend, np.empty(nu, usend.dtype)))
        uwire = np.concatenate((uwire, np.empty(nu, uwire.dtype)))
    useq[nu], usend[nu], uwire[nu] = k, now, wire
    istate[I_NUNACKED] = nu + 1
    fstate[F_INFLIGHT] += wire
    # the report process starts at the sender's next yield
    j = istate[I_NPEND]
    if j >= pf.shape[0]:
        raise RuntimeError("kernel: more frames sent without a yield than pf holds")
    pf[j, 0], pf[j, 1], pf[j, 2], pf[j, 3] = sample, first_arr, last_arr, now
    pi[j, 0], pi[j, 1], pi[j, 2] = k, wire, first_bytes
    istate[I_NPEND] = j + 1
    fout[row, O_SEND] = now
    fout[row, O_THR_EST] = est
    fout[row, O_PRED] = pred
    fout[row, O_CAPACITY] = capacity
    fout[row, O_QUEUE] = queue_before
    fout[row, O_FIRST] = first_arr
    fout[row, O_LAST] = last_arr
    fout[row, O_SAMPLE] = sample
    fout[row, O_CAPTURE] = capture
    if not playback:  # (playback: the playout writes these when it decides the slot)
        fout[row, O_DISPLAY] = display
        fout[row, O_STALL] = 0.0
        iout[row, J_SHOWN] = 1 if shown else 0
    iout[row, J_BUDGET] = budget
    iout[row, J_PAYLOAD] = n
    iout[row, J_HEADER] = hdr
    iout[row, J_WIRE] = wire
    iout[row, J_PACKETS] = n_pk
    iout[row, J_DROPPED] = n_dropped
    iout[row, J_LOST] = n_lost
    iout[row, J_DELIVERED] = delivered
    iout[row, J_COMPLETE] = 1 if complete else 0
    iout[row, J_SEND_INT] = now_int
    return dep, cum, useq, usend, uwire
