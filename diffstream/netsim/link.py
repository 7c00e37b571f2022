"""A FIFO bottleneck link with mahimahi byte accounting, computed per packet.

Departures of a FIFO queue do not depend on later arrivals, so each packet's fate (dropped,
departure time, lost, arrival time) is fixed the moment it is enqueued. ``Link.send``
therefore computes it analytically from the trace's opportunity schedule instead of running
one simulation event per delivery opportunity: the cost is O(packets log n) rather than
O(opportunities), which matters for 40 Mbit/s traces (3 000+ opportunities per second).
The session drives it from SimPy: it calls ``send`` at the virtual time a frame enters the
queue and schedules its own events at the returned arrival times.

Semantics (mahimahi's ``LinkQueue``, with the differences noted):

- Each opportunity carries up to ``bytes_per_opportunity`` bytes. The head packet consumes
  bytes from successive opportunities and departs at the one that finishes it. The rest of
  that opportunity may serve the next packet only if that packet was already queued at the
  opportunity's time (arrival <= time); otherwise it is wasted. A packet arriving at ``t``
  may use opportunities with time >= ``t``. (Mahimahi drains the link up to the current
  millisecond *before* enqueuing, so there an arrival in ms t only sees opportunities after
  t; the two agree unless an arrival coincides with an opportunity's millisecond.)
- A packet occupies the queue from enqueue until its departure, the packet in service
  included; packets of one ``send`` all enter before any of them leaves (mahimahi reads a
  burst before it drains). Drop-tail: a packet is dropped if occupancy plus its size would
  exceed ``queue_bytes`` (or the count would exceed ``queue_packets``); ``None`` means
  unlimited. Mahimahi's drop-tail does not count the packet in service; with 1500-byte
  packets on 1500-byte opportunities that packet leaves at once and the two agree.
- Random loss is applied after the bottleneck: a lost packet consumed capacity and then
  vanished, as on a wireless hop. ``arrive = depart + delay_s``.

Bytes are floats (a scaled trace has fractional bytes per opportunity), with a small epsilon
so exact cases (1500-byte packets on 1500-byte opportunities) stay exact.

The counters ``offered_bytes``, ``departed_bytes`` and ``delivered_bytes`` cover every packet
scheduled so far, including departures still in the future of the caller's clock; read
them after the last departure (``last_departure_s``) for an exact utilisation.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from diffstream.netsim.loss import LossModel, NoLoss
from diffstream.netsim.trace import Trace

# Byte amounts closer than this are equal: far below one byte, far above float drift.
BYTES_EPS = 1e-6
# Opportunity counts are ceil(bytes / bytes_per_opportunity); shave this off first so a
# ratio like 3.0000000000000004 is 3 opportunities, not 4.
COUNT_EPS = 1e-9
_COMPACT_AT = 4096
# send_summary draws loss coins in blocks of this many packets (loss models are
# batching-invariant: netsim.loss), so a frame costs no numpy call of its own
_LOSS_BLOCK = 4096


@dataclass
class FrameTransfer:
    """What happened to the packets of one frame (one ``Link.send``)."""

    enqueue_s: float
    sizes: np.ndarray  # on-link bytes per packet (int)
    dropped: np.ndarray  # bool: drop-tail at enqueue
    lost: np.ndarray  # bool: random loss on the link (only for not-dropped packets)
    depart_s: np.ndarray  # nan where dropped
    arrive_s: np.ndarray  # depart + delay; nan where dropped or lost
    queue_bytes_before: float  # occupancy just before this frame was enqueued

    @property
    def delivered(self) -> np.ndarray:
        return ~self.dropped & ~self.lost

    @property
    def n_dropped(self) -> int:
        return int(self.dropped.sum())

    @property
    def n_lost(self) -> int:
        return int(self.lost.sum())

    @property
    def first_arrival_s(self) -> float | None:
        d = self.delivered
        return float(self.arrive_s[d].min()) if d.any() else None

    @property
    def last_arrival_s(self) -> float | None:
        d = self.delivered
        return float(self.arrive_s[d].max()) if d.any() else None

    @property
    def delivered_bytes(self) -> int:
        return int(self.sizes[self.delivered].sum())

    @property
    def complete(self) -> bool:
        return bool(self.delivered.all())


@dataclass(frozen=True, slots=True)
class TransferSummary:
    """What ``Link.send_summary`` says about one frame: ``FrameTransfer``'s derived values
    without its per-packet arrays (what the network-only fast path reads)."""

    enqueue_s: float
    packets: int
    n_dropped: int
    n_lost: int
    first_arrival_s: float | None
    last_arrival_s: float | None
    delivered_bytes: int
    first_packet_bytes: int  # on-link size of the first packet that arrived (0: none)
    queue_bytes_before: float

    @property
    def complete(self) -> bool:
        return self.n_dropped == 0 and self.n_lost == 0


class Link:
    """One-way bottleneck: drop-tail FIFO drained at the trace's opportunities, then delay."""

    def __init__(
        self,
        trace: Trace,
        *,
        delay_s: float,
        queue_bytes: float | None = None,
        queue_packets: int | None = None,
        loss: LossModel | None = None,
    ) -> None:
        if delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, got {delay_s}")
        if queue_bytes is not None and queue_bytes <= 0:
            raise ValueError(f"queue_bytes must be > 0 or None, got {queue_bytes}")
        if queue_packets is not None and queue_packets <= 0:
            raise ValueError(f"queue_packets must be > 0 or None, got {queue_packets}")
        self.trace = trace
        self.delay_s = float(delay_s)
        self.queue_bytes = queue_bytes
        self.queue_packets = queue_packets
        self.loss: LossModel = loss if loss is not None else NoLoss()
        self.offered_bytes = 0.0  # capacity of every opportunity used while busy
        self.departed_bytes = 0.0  # bytes that left the bottleneck (lost ones included)
        self.delivered_bytes = 0.0  # bytes that arrived (departed and not lost)
        # server state: last opportunity touched (global index) and its unused bytes
        self._cur = -1
        self._left = 0.0
        # accepted packets still possibly queued: departure times (non-decreasing, FIFO)
        # and prefix sums of their sizes (_cum[i] = bytes before packet i)
        self._dep: list[float] = []
        self._cum: list[float] = [0.0]
        self._head = 0  # packets before this index departed by the last send time
        self._last_send = float("-inf")
        self._loss_buf: list[bool] = []  # coins drawn ahead by send_summary, not yet used
        self._loss_pos = 0

    # ----------------------------------------------------------------- queue state
    @property
    def utilisation(self) -> float:
        """Delivered / offered bytes so far (0 before anything was sent)."""
        return self.delivered_bytes / self.offered_bytes if self.offered_bytes else 0.0

    @property
    def last_departure_s(self) -> float | None:
        """When the last accepted packet leaves the bottleneck (None if none yet)."""
        return self._dep[-1] if self._dep else None

    def _first_queued(self, t_s: float) -> int:
        if t_s < self._last_send:
            raise ValueError(
                f"queue state is only known from the last send on ({self._last_send} s); "
                f"asked for {t_s} s"
            )
        return bisect.bisect_right(self._dep, t_s, lo=self._head)

    def queue_bytes_at(self, t_s: float) -> float:
        """Bytes in the queue at ``t_s`` (>= the last send time), packet in service included."""
        return self._cum[-1] - self._cum[self._first_queued(t_s)]

    def queue_packets_at(self, t_s: float) -> int:
        """Packets in the queue at ``t_s`` (>= the last send time)."""
        return len(self._dep) - self._first_queued(t_s)

    def _advance(self, now_s: float) -> None:
        """Forget packets that departed by ``now_s``; compact the lists now and then."""
        self._head = bisect.bisect_right(self._dep, now_s, lo=self._head)
        if self._head >= _COMPACT_AT and self._head * 2 >= len(self._dep):
            base = self._cum[self._head]
            self._dep = self._dep[self._head :]
            self._cum = [c - base for c in self._cum[self._head :]]
            self._head = 0

    # ----------------------------------------------------------------- sending
    def _admit(self, sizes: np.ndarray, q_bytes: float, q_pkts: int) -> np.ndarray:
        """Drop-tail: which packets fit, in order (a later small one may fit after a drop)."""
        n = sizes.size
        byte_cap = self.queue_bytes if self.queue_bytes is not None else float("inf")
        pkt_cap = self.queue_packets if self.queue_packets is not None else n + q_pkts
        if q_bytes + float(sizes.sum()) <= byte_cap and q_pkts + n <= pkt_cap:
            return np.ones(n, dtype=bool)
        ok = np.zeros(n, dtype=bool)
        for i, s in enumerate(sizes.tolist()):
            if q_bytes + s <= byte_cap and q_pkts + 1 <= pkt_cap:
                ok[i] = True
                q_bytes += s
                q_pkts += 1
        return ok

    def _serve(self, now_s: float, sizes: np.ndarray) -> np.ndarray:
        """Global opportunity index at which each accepted packet departs."""
        bpo = self.trace.bytes_per_opportunity
        first = self.trace.first_opportunity_at_or_after(now_s)
        if self._cur >= first:  # the last opportunity touched is not before this arrival
            base, left = self._cur, self._left
        else:  # queue idle: start fresh; the old leftover was wasted
            base, left = first - 1, 0.0
        cum = np.cumsum(sizes, dtype=np.float64)
        k = np.maximum(np.ceil((cum - left) / bpo - COUNT_EPS), 0.0).astype(np.int64)
        m = int(k[-1])
        if m == 0:
            self._left = left - float(cum[-1])
        else:
            self._cur = base + m
            self._left = m * bpo - (float(cum[-1]) - left)
        if self._left < BYTES_EPS:
            self._left = 0.0
        self.offered_bytes += m * bpo
        return base + k

    def send(self, now_s: float, sizes: Sequence[int] | np.ndarray) -> FrameTransfer:
        """Enqueue packets of ``sizes`` bytes, in order, at ``now_s`` (non-decreasing)."""
        if now_s < self._last_send:
            raise ValueError(f"send times must not decrease: {now_s} < {self._last_send}")
        sz = np.asarray(sizes)
        if sz.ndim != 1 or (sz.size and (np.any(sz != np.round(sz)) or np.any(sz <= 0))):
            raise ValueError("sizes must be a 1-D sequence of positive integer byte counts")
        sz = sz.astype(np.int64)
        self._last_send = now_s
        self._advance(now_s)
        q_bytes = self._cum[-1] - self._cum[self._head]
        q_pkts = len(self._dep) - self._head
        n = sz.size
        accepted = self._admit(sz, q_bytes, q_pkts) if n else np.zeros(0, dtype=bool)
        acc = sz[accepted]
        depart = np.full(n, np.nan)
        arrive = np.full(n, np.nan)
        lost = np.zeros(n, dtype=bool)
        if acc.size:
            dep_acc = np.asarray(self.trace.opportunity_time_s(self._serve(now_s, acc)))
            if self._loss_pos < len(self._loss_buf):  # coins send_summary drew ahead
                lost_acc = np.asarray(self._lost_list(acc.size), dtype=bool)
            else:
                lost_acc = np.asarray(self.loss.lost(acc.size), dtype=bool)
            depart[accepted] = dep_acc
            arr = dep_acc + self.delay_s
            arr[lost_acc] = np.nan
            arrive[accepted] = arr
            lost[accepted] = lost_acc
            self._dep.extend(dep_acc.tolist())
            base = self._cum[-1]
            self._cum.extend((base + np.cumsum(acc, dtype=np.float64)).tolist())
            self.departed_bytes += float(acc.sum())
            self.delivered_bytes += float(acc[~lost_acc].sum())
        return FrameTransfer(now_s, sz, ~accepted, lost, depart, arrive, q_bytes)

    def _lost_list(self, n: int) -> list[bool]:
        """The next ``n`` loss coins, from the block drawn ahead (refilled as needed)."""
        buf, pos = self._loss_buf, self._loss_pos
        if len(buf) - pos < n:
            buf = self._loss_buf = buf[pos:] + self.loss.lost(max(n, _LOSS_BLOCK)).tolist()
            pos = 0
        self._loss_pos = pos + n
        return buf[pos:pos + n]

    def send_summary(self, now_s: float, sizes: list[int]) -> TransferSummary:
        """``send`` for the network-only fast path: the same queue, service, loss draws and
        counters, in plain Python floats (a frame is a handful of packets: numpy's per-call
        cost was most of ``send``), returning only the frame's summary. ``sizes``: positive
        ints, as ``transport.packets.on_link_sizes`` gives them (not re-validated here).
        Agreement with ``send`` is tested (tests/unit/netsim/test_link_summary.py)."""
        if now_s < self._last_send:
            raise ValueError(f"send times must not decrease: {now_s} < {self._last_send}")
        self._last_send = now_s
        self._advance(now_s)
        cum_list, dep_list = self._cum, self._dep
        q_bytes = cum_list[-1] - cum_list[self._head]
        q_pkts = len(dep_list) - self._head
        n = len(sizes)
        byte_cap = self.queue_bytes if self.queue_bytes is not None else float("inf")
        pkt_cap = self.queue_packets if self.queue_packets is not None else n + q_pkts
        if q_bytes + float(sum(sizes)) <= byte_cap and q_pkts + n <= pkt_cap:
            acc = sizes
            order = None  # every packet accepted, in order
        else:  # _admit, one packet at a time
            acc, order = [], []
            qb, qp = q_bytes, q_pkts
            for i, sz in enumerate(sizes):
                if qb + sz <= byte_cap and qp + 1 <= pkt_cap:
                    acc.append(sz)
                    order.append(i)
                    qb += sz
                    qp += 1
        if not acc:
            return TransferSummary(now_s, n, n, 0, None, None, 0, 0, q_bytes)
        # _serve
        trace = self.trace
        bpo = trace.bytes_per_opportunity
        if now_s < 0:
            raise ValueError(f"time must be >= 0, got {now_s}")
        first = trace.count_before_ms(now_s * 1000.0)
        if self._cur >= first:
            base, left = self._cur, self._left
        else:
            base, left = first - 1, 0.0
        idx = []
        cum = 0.0
        for sz in acc:
            cum += sz
            idx.append(base + max(math.ceil((cum - left) / bpo - COUNT_EPS), 0))
        m = idx[-1] - base
        if m == 0:
            self._left = left - cum
        else:
            self._cur = base + m
            self._left = m * bpo - (cum - left)
        if self._left < BYTES_EPS:
            self._left = 0.0
        self.offered_bytes += m * bpo
        dep = trace.opportunity_times_s(idx)
        lost = self._lost_list(len(acc))
        dep_list.extend(dep)
        base_b = cum_list[-1]
        c = 0
        first_arr = last_arr = None
        delivered = first_bytes = n_lost = 0
        for sz, d, gone in zip(acc, dep, lost, strict=True):
            c += sz
            cum_list.append(base_b + float(c))
            if gone:
                n_lost += 1
                continue
            a = d + self.delay_s
            if first_arr is None:
                first_arr, first_bytes = a, sz
            elif a < first_arr:
                first_arr = a
            if last_arr is None or a > last_arr:
                last_arr = a
            delivered += sz
        self.departed_bytes += float(c)
        self.delivered_bytes += float(delivered)
        return TransferSummary(now_s, n, n - len(acc), n_lost, first_arr, last_arr, delivered,
                               first_bytes, q_bytes)
