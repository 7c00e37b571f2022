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

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import simpy

from diffstream.compute import ComputeModel
from diffstream.config import ArmSpec, Scenario
from diffstream.feedback import DeliveryReport, SenderView, report_time, throughput_sample
from diffstream.netsim.factory import build_link
from diffstream.netsim.link import FrameTransfer
from diffstream.netsim.trace import Trace
from diffstream.playout import PlaybackBuffer
from diffstream.policy.base import Observation, OracleView, RateQualityModel, harmonic_mean
from diffstream.records import FrameRecord
from diffstream.transport.endpoints import ArmInfo, Endpoints
from diffstream.transport.packets import on_link_sizes, packetize, wire_bytes_for_payload


@dataclass
class ArmResult:
    arm: ArmSpec
    records: list[FrameRecord]
    offered_bytes: float
    malformed: int
    info: ArmInfo
    end_s: float
    notes: list[str] = field(default_factory=list)


class ArmSimulation:
    def __init__(self, scenario: Scenario, arm: ArmSpec, stream_trace: Trace,
                 endpoints: Endpoints, *, calibrate: bool = True,
                 on_record: Callable[[FrameRecord], None] | None = None) -> None:
        self.sc = scenario
        self.arm = arm
        self.trace = stream_trace
        self.ep = endpoints
        self.compute = ComputeModel(scenario.compute)
        self.fps = scenario.frame.fps
        self.interval = 1.0 / self.fps
        self.pixels = scenario.frame.pixels
        self.delay = scenario.link.delay_ms / 1000.0
        fb = scenario.link.feedback_delay_ms
        self.fb_delay = (fb if fb is not None else scenario.link.delay_ms) / 1000.0
        self.n_frames = scenario.frames_per_arm
        self.interactive = scenario.mode.kind == "interactive"
        self.calibrate = calibrate
        self.on_record = on_record

        self.env = simpy.Environment()
        self.link = build_link(scenario, stream_trace)
        self.view = SenderView()
        self.partial: dict[int, dict[str, Any]] = {}  # seq -> sender/network fields
        self.results: dict[int, dict[str, Any]] = {}
        self._buffer_model: PlaybackBuffer | None = None
        self._prev_arrival: float | None = None
        self._report_event: simpy.Event | None = None
        self._buffer_at = 0.0
        self._enc_est: float | None = None
        self._dec_est: float | None = None
        self._header_bytes = 0

    # ------------------------------------------------------------------ public
    def run(self) -> ArmResult:
        a = self.arm
        self.info = self.ep.start_arm(a.label, a.codec, a.codec_options, self.calibrate)
        self._header_bytes = self.info.header_bytes
        self.rq = RateQualityModel(*self.info.rq) if self.info.rq else None
        if not self.interactive:
            assert self.sc.mode.kind == "playback"
            self._buffer_model = PlaybackBuffer(self.fps, self.sc.mode.startup_s)
        self.env.process(self._sender())
        self.env.run()
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
        budget = int(self.arm.policy.budget_bits(obs))
        est = harmonic_mean(tuple(self.view.samples)[-5:])
        reply = self.ep.encode(self.arm.label, k, budget, capture, self.env.now)
        charged = float(reply["encode_charged_s"])
        self._enc_est = charged if self._enc_est is None else 0.8 * self._enc_est + 0.2 * charged
        if charged > 0:
            yield self.env.timeout(charged)
        frame: bytes = reply["frame"]
        self._header_bytes = int(reply["header_bytes"])
        mtu = self.sc.link.mtu
        sizes = on_link_sizes(len(frame), mtu)
        queue_before = self.link.queue_bytes_at(self.env.now)
        transfer = self.link.send(self.env.now, sizes)
        self.view.on_send(k, self.env.now, int(sum(sizes)), budget_bits=budget,
                          skipped=bool(reply["skipped"]))
        chunks = [[off, data, float(transfer.arrive_s[i])]
                  for i, (off, data) in enumerate(packetize(frame, mtu))
                  if transfer.delivered[i]]
        self.ep.deliver({"op": "frame", "arm": self.arm.label, "seq": k,
                         "frame_len": len(frame), "chunks": chunks, "capture_s": capture,
                         "deadline_s": deadline})
        self.partial[k] = {
            "capture_s": capture, "send_s": self.env.now, "deadline_s": deadline,
            "budget_bits": budget, "payload_bytes": int(reply["payload_bytes"]),
            "header_bytes": int(reply["header_bytes"]), "wire_bytes": int(sum(sizes)),
            "packets": len(sizes), "bpp": int(reply["payload_bytes"]) * 8 / self.pixels,
            "skipped": bool(reply["skipped"]), "skip_reason": str(reply["reason"]),
            "codec_steps": int(reply["steps"]), "encode_ms": float(reply["encode_ms"]),
            "encode_charged_s": charged, "throughput_est_bps": est,
            "capacity_bps": self.trace.capacity_bps(capture, capture + self.interval),
            "queue_bytes": float(queue_before),
            "packets_dropped": transfer.n_dropped, "packets_lost": transfer.n_lost,
            "first_arrival_s": transfer.first_arrival_s, "last_arrival_s": transfer.last_arrival_s,
            "delivered_bytes": int(transfer.delivered_bytes), "complete": bool(transfer.complete),
        }
        if self._buffer_model is not None:
            ready, showable = None, not reply["skipped"]
            if transfer.complete:
                ready = transfer.last_arrival_s + (self._decode_estimate() if showable else 0.0)
            self._buffer_model.on_frame(ready, showable)
        self.env.process(self._report(k, transfer, self.env.now))

    def _report(self, k: int, transfer: FrameTransfer, send_s: float):  # type: ignore[no-untyped-def]
        sent_at = report_time(transfer, self.interval, self.delay)
        sample = throughput_sample(transfer, self._prev_arrival, self.delay)
        if transfer.last_arrival_s is not None:
            self._prev_arrival = transfer.last_arrival_s
        buffer_level = self._buffer_model.level_s(sent_at) if self._buffer_model else 0.0
        report = DeliveryReport(
            seq=k, send_s=send_s, wire_bytes=int(transfer.sizes.sum()),
            delivered_bytes=int(transfer.delivered_bytes), packets=len(transfer.sizes),
            packets_missing=transfer.n_dropped + transfer.n_lost,
            first_arrival_s=transfer.first_arrival_s, last_arrival_s=transfer.last_arrival_s,
            throughput_bps=sample, sent_at_s=sent_at, buffer_s=buffer_level,
            first_packet_bytes=int(transfer.sizes[transfer.delivered][0])
            if transfer.delivered.any() else 0,
        )
        arrive = sent_at + self.fb_delay
        if arrive > self.env.now:
            yield self.env.timeout(arrive - self.env.now)
        self.view.on_report(report, self.env.now)
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
    def _decode_estimate(self) -> float:
        if self._dec_est is not None:
            return self._dec_est
        return self.compute.decode_s(self.arm.codec, 0.0)

    def _buffer_estimate(self) -> float:
        """The receiver's last reported buffer, drained by the time since it was reported."""
        return max(0.0, self.view.buffer_s - (self.env.now - self._buffer_at))

    def _observe(self, k: int, capture: float, deadline: float | None) -> Observation:
        header = self._header_bytes
        mtu = self.sc.link.mtu

        def wire_bytes(bits: int) -> float:
            return float(wire_bytes_for_payload(int(bits), header, mtu))

        future = None
        if self.arm.policy.kind == "oracle":
            future = OracleView(capacity_bytes=self.trace.capacity_bytes,
                                backlog_bytes=self.link.queue_bytes_at(self.env.now),
                                delay_s=self.delay)
        return Observation(
            now_s=self.env.now, frame_index=k, frame_interval_s=self.interval,
            pixels=self.pixels, mode="interactive" if self.interactive else "playback",
            capture_s=capture, deadline_s=deadline, throughput_bps=tuple(self.view.samples),
            rtt_s=self.view.rtt_s, one_way_delay_s=self.view.one_way_delay_s,
            loss_rate=self.view.loss_rate, inflight_bytes=self.view.inflight_bytes,
            buffer_s=self._buffer_estimate(), encode_s=self._enc_est or 0.0,
            decode_s=self._decode_estimate(), min_bits=self.info.min_bits,
            max_bits=int(self.sc.max_bpp * self.pixels), wire_bytes=wire_bytes,
            rate_quality=self.rq, future=future,
            backlog_bytes=self.view.backlog_estimate(
                self.env.now, harmonic_mean(tuple(self.view.samples)[-5:])),
            skip_run=self.view.skip_run, skip_run_max_bits=self.view.skip_run_max_bits,
        )

    def _absorb(self, results: list[dict[str, Any]]) -> None:
        for r in results:
            if r.get("op") != "result" or r.get("arm") != self.arm.label:
                continue
            seq = int(r["seq"])
            self.results[seq] = r
            if r.get("decode_charged_s"):
                d = float(r["decode_charged_s"])
                self._dec_est = d if self._dec_est is None else 0.8 * self._dec_est + 0.2 * d
            if self.on_record is not None and seq in self.partial:
                self.on_record(self._record(seq))

    def _record(self, seq: int) -> FrameRecord:
        p = self.partial.get(seq)
        if p is None:  # never sent (cannot happen unless the run was cut short)
            raise RuntimeError(f"frame {seq} of arm {self.arm.label} was never sent")
        r = self.results.get(seq) or {"error": "no receiver result"}
        display = r.get("display_s")
        return FrameRecord(
            arm=self.arm.label, seq=seq, codec=self.arm.codec, policy=self.arm.policy.kind,
            **p,
            decoded=bool(r.get("decoded", False)), partial=bool(r.get("partial", False)),
            prefix_step=r.get("prefix_step"), decode_ms=float(r.get("decode_ms", 0.0)),
            decode_charged_s=float(r.get("decode_charged_s", 0.0)),
            decode_done_s=r.get("decode_done_s"), shown=bool(r.get("shown", False)),
            display_s=display,
            latency_s=None if display is None else display - p["capture_s"],
            deadline_met=bool(r.get("deadline_met", False)), stall=bool(r.get("stall", True)),
            stall_s=float(r.get("stall_s", 0.0)), psnr_db=_num(r.get("psnr_db")),
            ms_ssim=_num(r.get("ms_ssim")), ssim=_num(r.get("ssim")),
            ssim_db=_num(r.get("ssim_db")), error=str(r.get("error", "")),
        )


def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x
