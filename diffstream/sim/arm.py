"""One arm of a scenario as a SimPy model.

SimPy owns virtual time. Per frame the sender process: waits for the frame's capture time
(interactive) or for the previous frame's delivery report and room in the playout buffer
(playback); builds the policy's observation from the reports that have crossed the feedback
path; asks the policy for a budget; has the real encoder run in the sender worker; charges
the encode time; packetises the wire frame and enqueues it on the link. The link fixes every
packet's departure, loss and arrival; the surviving packets go to the receiver worker with
their arrival times, and a delivery report travels back after the feedback delay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import simpy

from diffstream.control.feedback import ThroughputEstimator, report_time
from diffstream.control.policies.base import Observation, OracleView
from diffstream.metrics.qoe import summarise_arm
from diffstream.netsim.link import FrameTransfer
from diffstream.netsim.loss import frame_delivery_prob
from diffstream.netsim.trace import Trace
from diffstream.pipeline.encoder import ArmInfo, EncodedFrame
from diffstream.pipeline.playout import PlaybackBuffer
from diffstream.pipeline.records import ArmSummary, Arrival, FrameRecord, Outcome, SenderHalf
from diffstream.pipeline.sender_core import LinkState, SenderCore, delivery_report
from diffstream.scenario.build import build_link
from diffstream.scenario.schema import ArmSpec, Scenario
from diffstream.sim.decision import Decision
from diffstream.sim.endpoints import Endpoints
from diffstream.transport.packets import on_link_sizes, packetize


@dataclass
class ArmResult:
    arm: ArmSpec
    records: list[FrameRecord]
    offered_bytes: float
    malformed: int
    info: ArmInfo
    end_s: float
    notes: list[str] = field(default_factory=list)


def summarise_result(scenario: Scenario, result: ArmResult) -> ArmSummary:
    """The arm's summary under the scenario's QoE (the session's and the sweep's)."""
    return summarise_arm(
        result.records, mode=scenario.mode.kind, fps=scenario.frame.fps,
        pixels=scenario.frame.pixels, duration_s=max(scenario.duration_s, 1e-9),
        weights=scenario.qoe, offered_bytes=result.offered_bytes)


def init_arm_clock(sim: Any, scenario: Scenario, arm: ArmSpec, stream_trace: Trace) -> None:
    """The scenario-derived timing both arm loops share (this one and ``sim.fastpath``):
    frame interval, one-way and feedback delay, frame count, mode."""
    sim.sc, sim.arm, sim.trace = scenario, arm, stream_trace
    sim.fps = scenario.frame.fps
    sim.interval = 1.0 / sim.fps
    sim.delay = scenario.link.delay_ms / 1000.0
    fb = scenario.link.feedback_delay_ms
    sim.fb_delay = (fb if fb is not None else scenario.link.delay_ms) / 1000.0
    sim.n_frames = scenario.frames_per_arm
    sim.interactive = scenario.mode.kind == "interactive"


class ArmSimulation:
    def __init__(self, scenario: Scenario, arm: ArmSpec, stream_trace: Trace,
                 endpoints: Endpoints, *, calibrate: bool = True,
                 on_record: Callable[[FrameRecord], None] | None = None,
                 external_budget: bool = False) -> None:
        init_arm_clock(self, scenario, arm, stream_trace)
        self.ep = endpoints
        self.calibrate = calibrate
        self.on_record = on_record
        # external_budget: each frame's budget is a Decision answered from outside (start,
        # advance, finish) instead of the arm's policy (sim/decision.py)
        self.external_budget = external_budget
        self.pending: Decision | None = None

        self.env = simpy.Environment()
        self.link = build_link(scenario, stream_trace)
        self._delivery_prob = frame_delivery_prob(self.link.loss, scenario.link.mtu)
        # the receiver's throughput sampler, given the path's base delay (module docstring
        # of control.feedback); it runs where the report is built
        self.throughput = ThroughputEstimator(base_delay_s=self.delay)
        self.sent: dict[int, tuple[SenderHalf, Arrival]] = {}
        self.results: dict[int, Outcome] = {}
        self._buffer_model: PlaybackBuffer | None = None
        self._report_event: simpy.Event | None = None
        self._buffer_at = 0.0

    # ------------------------------------------------------------------ public
    def run(self) -> ArmResult:
        self.start()
        self.env.run()
        return self.finish()

    def start(self) -> None:
        """Open the arm and start the sender process (``run`` = start, run, finish)."""
        a = self.arm
        # a policy that plans with the content's future asks for its motion (``optimal``)
        ages = int(getattr(a.policy, "motion_ages", 0)) if (
            self.calibrate and getattr(a.policy, "needs_future", False) is True) else 0
        self.info = self.ep.start_arm(a.label, a.codec, a.codec_options, self.calibrate,
                                      motion_ages=ages)
        self.core = SenderCore(self.sc, a, self.info)
        self.view = self.core.view
        if not self.interactive:
            assert self.sc.mode.kind == "playback"
            self._buffer_model = PlaybackBuffer(self.fps, self.sc.mode.startup_s)
        self.env.process(self._sender())

    def advance(self) -> Decision | None:
        """Step virtual time until a budget decision is pending (external_budget) or the
        arm has nothing left to do (None: call ``finish``)."""
        while self.pending is None or self.pending.triggered:
            self.pending = None
            if self.env.peek() == float("inf"):
                return None
            self.env.step()
        return self.pending

    def finish(self) -> ArmResult:
        a = self.arm
        results, malformed = self.ep.finish_arm(a.label)
        self._absorb(results)
        records = [self._record(seq) for seq in range(self.n_frames)]
        return ArmResult(a, records, self.link.offered_bytes, malformed, self.info,
                         end_s=self.env.now)

    # ------------------------------------------------------------------ processes
    def _sender(self):  # type: ignore[no-untyped-def]
        for k in range(self.n_frames):
            if self.interactive:
                capture = k * self.interval
                if self.env.now < capture:
                    yield self.env.timeout(capture - self.env.now)
            else:
                # ABR-style fetching, pipelined: at most `max_outstanding` frames requested but
                # not yet reported (per-frame requests would otherwise cap the frame rate at
                # one per RTT), and only while the buffer, counting those frames, has room.
                mode = self.sc.mode
                assert mode.kind == "playback"
                while True:
                    outstanding = len(self.view.unacked)
                    over = (self._buffer_estimate() + outstanding * self.interval
                            - mode.max_buffer_s)
                    if outstanding >= mode.max_outstanding:
                        yield self._next_report()
                    elif over > 1e-9:
                        # at least 1 us: a float-sized wait would not advance SimPy's clock
                        # and the loop would spin at the same instant forever
                        yield self._next_report() | self.env.timeout(max(over, 1e-6))
                    else:
                        break
                capture = self.env.now
            yield from self._send_frame(k, capture)
            self._absorb(self.ep.poll_results())

    def _send_frame(self, k: int, capture: float):  # type: ignore[no-untyped-def]
        deadline = capture + self.sc.mode.target_latency_ms / 1000.0 if self.interactive else None
        obs = self._observe(k, capture, deadline)
        if self.external_budget:
            self.pending = Decision(self.env, obs)
            budget = yield self.pending
        else:
            budget = self.core.budget(obs)
        est = self.core.throughput_estimate()
        reply = self.ep.encode(self.arm.label, k, budget, capture, self.env.now)
        enc = EncodedFrame.from_dict(reply)
        self.core.on_encoded(enc)
        if enc.encode_charged_s > 0:
            yield self.env.timeout(enc.encode_charged_s)
        frame = enc.frame
        mtu = self.sc.link.mtu
        sizes = on_link_sizes(len(frame), mtu)
        queue_before = self.link.queue_bytes_at(self.env.now)
        transfer = self.link.send(self.env.now, sizes)
        self.core.on_sent(k, self.env.now, int(sum(sizes)), budget_bits=budget,
                          skipped=enc.skipped)
        chunks = [[off, data, float(transfer.arrive_s[i])]
                  for i, (off, data) in enumerate(packetize(frame, mtu))
                  if transfer.delivered[i]]
        self.ep.deliver({"op": "frame", "arm": self.arm.label, "seq": k,
                         "frame_len": len(frame), "chunks": chunks, "capture_s": capture,
                         "deadline_s": deadline})
        tx = self.core.sender_half(
            capture_s=capture, deadline_s=deadline, budget_bits=budget, enc=enc,
            send_s=self.env.now, wire_bytes=int(sum(sizes)), packets=len(sizes),
            throughput_est_bps=est, link=LinkState(
                capacity_bps=self.trace.capacity_bps(capture, capture + self.interval),
                queue_bytes=float(queue_before), packets_dropped=transfer.n_dropped,
                packets_lost=transfer.n_lost))
        arrival = Arrival(transfer.first_arrival_s, transfer.last_arrival_s,
                          int(transfer.delivered_bytes), bool(transfer.complete))
        self.sent[k] = (tx, arrival)
        if self._buffer_model is not None:
            ready, showable = None, not enc.skipped
            if transfer.complete:
                ready = transfer.last_arrival_s + (
                    self.core.decode_estimate() if showable else 0.0)
            self._buffer_model.on_frame(ready, showable)
        self.env.process(self._report(k, transfer, self.env.now))

    def _report(self, k: int, transfer: FrameTransfer, send_s: float):  # type: ignore[no-untyped-def]
        sent_at = report_time(transfer, self.interval, self.delay)
        tx, arrival = self.sent[k]
        sample = self.throughput.sample(send_s, arrival.last_arrival_s, arrival.delivered_bytes)
        self.sent[k] = (tx, replace(arrival, throughput_bps=sample))  # for the record
        buffer_level = self._buffer_model.level_s(sent_at) if self._buffer_model else 0.0
        report = delivery_report(
            k, tx, arrival, throughput_bps=sample, sent_at_s=sent_at, buffer_s=buffer_level,
            first_packet_bytes=int(transfer.sizes[transfer.delivered][0])
            if transfer.delivered.any() else 0)
        arrive = sent_at + self.fb_delay
        if arrive > self.env.now:
            yield self.env.timeout(arrive - self.env.now)
        self.core.on_report(report, self.env.now)
        self._buffer_at = sent_at
        if self._report_event is not None and not self._report_event.triggered:
            ev, self._report_event = self._report_event, None
            ev.succeed()

    def _next_report(self) -> simpy.Event:
        """An event that fires when the next delivery report reaches the sender."""
        if self._report_event is None or self._report_event.triggered:
            self._report_event = self.env.event()
        return self._report_event

    # ------------------------------------------------------------------ helpers
    def _buffer_estimate(self) -> float:
        """The receiver's last reported buffer, drained by the time since it was reported."""
        return max(0.0, self.view.buffer_s - (self.env.now - self._buffer_at))

    def _observe(self, k: int, capture: float, deadline: float | None) -> Observation:
        future = None
        if getattr(self.arm.policy, "needs_future", False) is True:
            mode, qoe = self.sc.mode, self.sc.qoe
            future = OracleView(
                capacity_bytes=self.trace.capacity_bytes,
                backlog_bytes=self.link.queue_bytes_at(self.env.now), delay_s=self.delay,
                frames_total=self.n_frames, duration_s=self.sc.duration_s,
                switch_weight=getattr(qoe, "switch_weight", 1.0),
                stall_weight=getattr(qoe, "stall_weight", 50.0),
                queue_limit_bytes=self.link.queue_bytes, finish_s=self.trace.finish_s,
                startup_s=getattr(mode, "startup_s", 0.0),
                max_buffer_s=getattr(mode, "max_buffer_s", None),
                motion_mse=self.info.motion_mse, frame_floors=self.info.frame_floors,
                delivery_prob=self._delivery_prob)
        return self.core.observe(k, self.env.now, capture, deadline,
                                 buffer_s=self._buffer_estimate(), future=future)

    def _absorb(self, results: list[dict[str, Any]]) -> None:
        for r in results:
            if r.get("op") != "result" or r.get("arm") != self.arm.label:
                continue
            seq = int(r["seq"])
            outcome = Outcome.from_dict(r)
            self.results[seq] = outcome
            if outcome.decode_charged_s:
                self.core.on_decode_time(float(outcome.decode_charged_s))
            if self.on_record is not None and seq in self.sent:
                self.on_record(self._record(seq))

    def _record(self, seq: int) -> FrameRecord:
        if seq not in self.sent:  # never sent (cannot happen unless the run was cut short)
            raise RuntimeError(f"frame {seq} of arm {self.arm.label} was never sent")
        tx, arrival = self.sent[seq]
        outcome = self.results.get(seq) or Outcome.missing("no receiver result")
        return FrameRecord.compose(seq, tx, arrival, outcome)
