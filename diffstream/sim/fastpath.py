"""The fast network-only arm: ``ArmSimulation`` with ``NetworkOnlyEndpoints``, without SimPy,
wire bytes or dict messages.

Network-only runs (``--network-only``, network-only sweeps, the benchmark) spend their time
in machinery the results do not depend on: a SimPy process per delivery report, packing a
msgpack wire frame around a zero payload and unpacking it again with its CRCs, cutting it into
packet chunks and reassembling them, and dict messages between coordinator and receiver.
This loop keeps every decision where it was - ``SenderCore`` (observation, policy, feedback
view), the ``Link`` model, ``ThroughputEstimator``/``report_time``/``delivery_report``, the
playout models - and replaces only the plumbing:

- **Clock and events.** Per frame the sender waits (capture time, or room in the playback
  buffer), sends, and a report comes back later. Pending reports sit in a heap keyed by
  ``(time, event id)``; event ids are handed out in the order SimPy would schedule the
  corresponding events, so ties (a report landing exactly on a capture time) resolve the
  same way. Report *initialisation* (throughput sample, buffer level) runs where SimPy runs a
  new process: at the sender's next yield. Times are computed the way SimPy computes them
  (``now + (t - now)``), and the clock starts at the int ``0`` as SimPy's does.
- **The frame.** Only its length matters on a network-only link: the header's size is the
  real ``header_size`` of the header ``NetworkOnlyEndpoints`` would pack, memoised by what its
  msgpack width depends on (see ``_HeaderSizes``).
- **The receiver.** Network-only, a frame is decoded iff every packet arrived, at its last
  packet's arrival (``ReceiverCore`` with ``network_only=True``); that decision feeds the same
  ``InteractivePlayout``/``PlaybackBuffer``.
- **Records** are built once, positionally, when their outcome is known (in frame order), and
  can be streamed to a callback instead of being kept (``keep_records=False``).

Arms whose policy ``sim.compiled.eligible`` accepts (fixed, rate, deadline, oracle, MPC, in
either mode) run in the compiled twin of this loop (``sim.kernel``), which must give the
same records (``tests/integration/sim/test_kernel_agreement.py``).

``ArmSimulation`` stays the reference: ``tests/integration/sim/test_fastpath_agreement.py``
checks that both give identical network columns on the shipped scenarios and a grid of
traces x policies x modes; ``--reference-loop`` forces the full loop.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

from diffstream.control.feedback import ThroughputEstimator, report_time
from diffstream.netsim.loss import frame_delivery_prob
from diffstream.netsim.trace import Trace
from diffstream.pipeline.encoder import EncodedFrame
from diffstream.pipeline.playout import InteractivePlayout, PlaybackBuffer, Slot
from diffstream.pipeline.records import Arrival, FrameRecord, SenderHalf
from diffstream.pipeline.sender_core import LinkState, SenderCore, delivery_report
from diffstream.scenario.build import build_link
from diffstream.scenario.schema import ArmSpec, Scenario
from diffstream.sim.arm import ArmResult, ArmSimulation, init_arm_clock
from diffstream.sim.compiled import run_compiled
from diffstream.sim.endpoints import NetworkOnlyEndpoints
from diffstream.sim.header_sizes import _HeaderSizes
from diffstream.transport.packets import on_link_sizes

_CRC_CACHE_MAX = 1 << 14


class FastArmSimulation:
    """One network-only arm; same constructor shape and result as ``ArmSimulation``."""

    def __init__(self, scenario: Scenario, arm: ArmSpec, stream_trace: Trace,
                 payload_bytes: int | None = None, *,
                 on_record: Callable[[FrameRecord], None] | None = None,
                 keep_records: bool = True) -> None:
        init_arm_clock(self, scenario, arm, stream_trace)
        self.payload_bytes = payload_bytes
        self.on_record = on_record
        self.keep_records = keep_records
        self.link = build_link(scenario, stream_trace)
        # the loss model as a planner sees it (ArmSimulation._observe reads it)
        self._delivery_prob = frame_delivery_prob(self.link.loss, scenario.link.mtu)
        self.throughput = ThroughputEstimator(base_delay_s=self.delay)

    # ------------------------------------------------------------------ public
    def run(self) -> ArmResult:
        sc, a = self.sc, self.arm
        # ArmInfo exactly as the reference's endpoints give it
        info = NetworkOnlyEndpoints(sc, self.payload_bytes).start_arm(
            a.label, a.codec, a.codec_options, False)
        self.info = info  # ArmSimulation._observe reads it (no content: no motion table)
        compiled = run_compiled(self, info)  # the kernel, where it covers the arm
        if compiled is not None:
            return compiled
        self.core = core = SenderCore(sc, a, info)
        view = core.view
        self.headers = _HeaderSizes(a.label, (sc.frame.height, sc.frame.width))
        self.records: list[FrameRecord] = []
        self._tx: dict[int, tuple[SenderHalf, Arrival]] = {}
        self._rx_pending: list[tuple[int, float | None, bool]] = []
        self.env = self  # ArmSimulation._observe reads the clock as self.env.now
        self._target_s = (sc.mode.target_latency_ms / 1000.0 if self.interactive else 0.0)
        if self.interactive:
            self.playout: InteractivePlayout | PlaybackBuffer = InteractivePlayout()
            self.buffer_model: PlaybackBuffer | None = None
        else:
            self.playout = PlaybackBuffer(self.fps, sc.mode.startup_s)
            self.buffer_model = PlaybackBuffer(self.fps, sc.mode.startup_s)
        self.now: float = 0  # SimPy's clock starts as the int 0 (it reaches the records)
        self.last_event = 0.0
        self.buffer_at = 0.0
        self._eid = 0
        self._heap: list[tuple[float, int, Any, float]] = []
        self._inits: list[tuple[int, Any, float, SenderHalf, Arrival]] = []
        self._size_cache: dict[int, tuple[list[int], int]] = {}
        interval = self.interval
        mode = sc.mode
        for k in range(self.n_frames):
            if self.interactive:
                capture = k * interval
                if self.now < capture:
                    self._wait_until(self.now + (capture - self.now))
            else:
                max_out = mode.max_outstanding
                max_buf = mode.max_buffer_s
                while True:
                    outstanding = len(view.unacked)
                    over = self._buffer_estimate() + outstanding * interval - max_buf
                    if outstanding >= max_out:
                        self._wait_report(None)
                    elif over > 1e-9:
                        self._wait_report(self.now + max(over, 1e-6))
                    else:
                        break
                capture = self.now
            self._send_frame(k, capture)
        # SimPy runs to the end: the last reports' processes, then every pending event
        self._init_reports()
        while self._heap:
            self._deliver(heapq.heappop(self._heap))
        if not self.interactive:
            for slot in self.playout.flush():  # type: ignore[union-attr]
                self._settle(slot)
        if self._tx:
            raise RuntimeError(f"arm {a.label}: frames {sorted(self._tx)[:5]} never settled")
        return ArmResult(a, self.records, self.link.offered_bytes, 0, info,
                         end_s=max(self.now, self.last_event))

    # ------------------------------------------------------------------ clock
    def _next_eid(self) -> int:
        self._eid += 1
        return self._eid

    def _wait_until(self, t: float) -> None:
        """The sender yields a timeout to ``t``: reports scheduled before it (lower event id)
        at the same time are delivered first, the ones of frames just sent after it."""
        w = self._next_eid()  # the timeout is created before the new report processes run
        self._init_reports()
        heap = self._heap
        while heap and (heap[0][0], heap[0][1]) < (t, w):
            self._deliver(heapq.heappop(heap))
        self.last_event = max(self.last_event, t)
        self.now = t

    def _wait_report(self, timeout_at: float | None) -> None:
        """The sender waits for the next report (or ``timeout_at``, whichever is first).
        It resumes through one more event at that time, so every report due then is in."""
        w = self._next_eid() if timeout_at is not None else None
        self._init_reports()
        heap = self._heap
        if timeout_at is not None:
            self.last_event = max(self.last_event, timeout_at)  # it fires even if unused
        if heap and (timeout_at is None or (heap[0][0], heap[0][1]) < (timeout_at, w)):
            t = heap[0][0]
        elif timeout_at is not None:
            t = timeout_at
        else:  # cannot happen: an outstanding frame always has a report coming
            raise RuntimeError("playback sender waits for a report that never comes")
        while heap and heap[0][0] <= t:
            self._deliver(heapq.heappop(heap))
        self.now = t

    def _deliver(self, item: tuple[float, int, Any, float]) -> None:
        t, _, report, sent_at = item
        self.core.on_report(report, t)
        self.buffer_at = sent_at
        if t > self.last_event:
            self.last_event = t

    def _init_reports(self) -> None:
        """Start the report processes of the frames sent since the sender's last yield."""
        if not self._inits:
            return
        now = self.now
        for k, transfer, _send_s, tx, arrival in self._inits:
            sent_at = report_time(transfer, self.interval, self.delay)
            sample = arrival.throughput_bps  # taken at send time, in frame order (below)
            level = self.buffer_model.level_s(sent_at) if self.buffer_model is not None else 0.0
            report = delivery_report(
                k, tx, arrival, throughput_bps=sample, sent_at_s=sent_at, buffer_s=level,
                first_packet_bytes=transfer.first_packet_bytes)
            arrive = sent_at + self.fb_delay
            if arrive > now:
                heapq.heappush(self._heap, (now + (arrive - now), self._next_eid(), report,
                                            sent_at))
            else:
                self._deliver((now, 0, report, sent_at))
        self._inits = []

    def _buffer_estimate(self) -> float:
        return max(0.0, self.core.view.buffer_s - (self.now - self.buffer_at))

    # ------------------------------------------------------------------ one frame
    def _send_frame(self, k: int, capture: float) -> None:
        core, now = self.core, self.now
        deadline = capture + self._target_s if self.interactive else None
        # the reference's own observation code (future for clairvoyant policies included),
        # so the two loops cannot drift apart; it reads self.env.now (see run)
        obs = ArmSimulation._observe(self, k, capture, deadline)  # type: ignore[arg-type]
        budget = core.budget(obs)
        est = core.throughput_estimate()
        n = self.payload_bytes if self.payload_bytes is not None else budget // 8
        hdr = self.headers(k, budget, n, capture, now)
        enc = EncodedFrame(frame=b"", payload_bytes=n, header_bytes=hdr, skipped=False,
                           reason="", steps=1, encode_ms=0.0, encode_charged_s=0.0, send_s=now)
        core.on_encoded(enc)
        sizes, wire = self._sizes(n + hdr)
        queue_before = self.link.queue_bytes_at(now)
        transfer = self.link.send_summary(now, sizes)
        core.on_sent(k, now, wire, budget_bits=budget, skipped=False)
        complete = transfer.complete
        last = transfer.last_arrival_s
        tx = core.sender_half(
            capture_s=capture, deadline_s=deadline, budget_bits=budget, enc=enc, send_s=now,
            wire_bytes=wire, packets=len(sizes), throughput_est_bps=est, link=LinkState(
                capacity_bps=self._capacity_bps(capture, capture + self.interval),
                queue_bytes=float(queue_before), packets_dropped=transfer.n_dropped,
                packets_lost=transfer.n_lost))
        # the receiver's sample: the estimator's state advances once per frame, in frame order,
        # whenever the report process starts, so it can be taken now; the record logs it too
        sample = self.throughput.sample(now, last, transfer.delivered_bytes)
        arrival = Arrival(transfer.first_arrival_s, last, transfer.delivered_bytes, complete,
                          sample)
        self._tx[k] = (tx, arrival)
        self._receive(k, complete, last, deadline)
        if self.buffer_model is not None:
            ready = last + core.decode_estimate() if complete else None
            self.buffer_model.on_frame(ready, True)
        self._inits.append((k, transfer, now, tx, arrival))

    def _capacity_bps(self, t0: float, t1: float) -> float:
        """``Trace.capacity_bps`` with the scalar opportunity count (same arithmetic)."""
        tr = self.trace
        c0, c1 = tr.count_before_ms(t0 * 1000.0), tr.count_before_ms(t1 * 1000.0)
        return float(c1 - c0) * tr.bytes_per_opportunity * 8.0 / (t1 - t0)

    def _sizes(self, frame_len: int) -> tuple[list[int], int]:
        """``on_link_sizes`` and their sum, memoised (fixed payloads repeat one length)."""
        hit = self._size_cache.get(frame_len)
        if hit is None:
            if len(self._size_cache) >= _CRC_CACHE_MAX:
                self._size_cache.clear()
            sizes = on_link_sizes(frame_len, self.sc.link.mtu)
            hit = self._size_cache[frame_len] = (sizes, sum(sizes))
        return hit

    # ------------------------------------------------------------------ receiver
    def _receive(self, k: int, complete: bool, last: float | None,
                 deadline: float | None) -> None:
        """``ReceiverCore(network_only=True).on_frame``: decoded iff whole, at its last
        packet's arrival; then the playout decision."""
        done = last if complete else None
        if isinstance(self.playout, InteractivePlayout):
            assert deadline is not None
            self._rx_pending.append((k, done, complete))
            self._settle(self.playout.on_frame(done, deadline))
            return
        self._rx_pending.append((k, done, complete))
        for slot in self.playout.on_frame(done, showable=complete):
            self._settle(slot)

    def _settle(self, slot: Slot) -> None:
        k, done, decoded = self._rx_pending.pop(0)
        tx, arrival = self._tx.pop(k)
        shown, display, stall_s = slot.shown, slot.display_s, slot.stall_s
        met = shown if tx.deadline_s is not None else stall_s == 0 and shown
        # FrameRecord.compose's fields, positionally (asdict per frame was the hot spot)
        rec = FrameRecord(
            tx.arm, k, tx.codec, tx.policy, tx.capture_s, tx.send_s, tx.deadline_s,
            tx.budget_bits, tx.payload_bytes, tx.header_bytes, tx.wire_bytes, tx.packets,
            tx.bpp, tx.skipped, tx.skip_reason, tx.codec_steps, tx.encode_ms,
            tx.encode_charged_s, tx.throughput_est_bps,
            float("nan") if tx.capacity_bps is None else tx.capacity_bps, tx.queue_bytes,
            tx.packets_dropped, tx.packets_lost, arrival.first_arrival_s,
            arrival.last_arrival_s, arrival.delivered_bytes, arrival.complete,
            decoded, False, None, 0.0, 0.0, done, shown, display,
            None if display is None else display - tx.capture_s, met,
            (not shown) or stall_s > 0, stall_s, None, None, None, None, "",
            tx.throughput_pred_bps, arrival.throughput_bps)
        if self.keep_records:
            self.records.append(rec)
        if self.on_record is not None:
            self.on_record(rec)

