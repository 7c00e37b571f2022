"""The sender's decisions, shared by the simulator's coordinator (``sim.arm``) and the live
sender (``live.sender``): what the policy observes from the delivery reports so far, the
budget it picks, the running estimates of codec time, and the sender half of each frame's
record. The adapters own only their I/O: the clock (SimPy or monotonic), the link or the
socket, and where reports come from.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from diffstream.control.feedback import DeliveryReport, SenderView
from diffstream.control.policies.base import (
    Observation,
    OracleView,
    RateQualityModel,
    harmonic_mean,
)
from diffstream.pipeline.compute import ComputeModel
from diffstream.pipeline.costs import codec_charge
from diffstream.pipeline.encoder import ArmInfo, EncodedFrame
from diffstream.pipeline.records import Arrival, SenderHalf
from diffstream.scenario.schema import ArmSpec, Scenario
from diffstream.transport.packets import chunk_size, wire_bytes_for_payload, wire_bytes_trusted

RECENT_SAMPLES = 5  # throughput samples in the estimate the record logs and MPC plans with


class Ewma:
    """x <- 0.8 x + 0.2 sample: the smoothing of codec-time estimates (first sample taken
    as is)."""

    def __init__(self, weight: float = 0.2) -> None:
        self.value: float | None = None
        self.weight = weight

    def add(self, sample: float) -> None:
        self.value = sample if self.value is None else (
            (1 - self.weight) * self.value + self.weight * sample)


@dataclass(frozen=True)
class LinkState:
    """What the link (simulated or shaped) says about a frame as it enters the queue."""

    capacity_bps: float | None = None  # true capacity over the frame interval; None: unknown
    queue_bytes: float = 0.0
    packets_dropped: int = 0
    packets_lost: int = 0


class SenderCore:
    def __init__(self, scenario: Scenario, arm: ArmSpec, info: ArmInfo) -> None:
        self.sc = scenario
        self.arm = arm
        # this sender's own copy: a stateful policy (gcc) must not share state across arms/runs
        self.policy = copy.deepcopy(arm.policy)  # (a pydantic model or any policy object)
        # optional hooks, looked up once: a miss on a pydantic model goes through its
        # __getattr__ and an AttributeError (about 7 us a frame on the fast path)
        self._predict = getattr(self.policy, "predicted_throughput_bps", None)
        self._report_hook = getattr(self.policy, "on_report", None)  # stateful policies
        self.info = info
        self.interval = 1.0 / scenario.frame.fps
        self.pixels = scenario.frame.pixels
        self.mtu = scenario.link.mtu
        self._chunk = chunk_size(self.mtu)
        self.interactive = scenario.mode.kind == "interactive"
        self.compute = ComputeModel(scenario.compute)
        self.charge = codec_charge(self.compute, arm.codec, arm.codec_options)
        self.view = SenderView()
        self.rq = RateQualityModel(*info.rq) if info.rq else None
        # the last coded frame's header and the last skipped one's: their meta differ
        # (~20 bytes), so one estimate for both made every skip move the next frame's bytes
        self.header_bytes = info.header_bytes
        self.skip_header_bytes = info.header_bytes
        self.encode_est = Ewma()
        self.decode_est = Ewma()
        self.prediction_bps: float | None = None  # the policy's, for the frame being sent
        self.compute_at = self._budget_compute()

    # ------------------------------------------------------------------ estimates
    def throughput_estimate(self) -> float | None:
        return harmonic_mean(tuple(self.view.samples)[-RECENT_SAMPLES:])

    def decode_estimate(self) -> float:
        """Receiver decode time: measured from reports, else the compute model's guess."""
        if self.decode_est.value is not None:
            return self.decode_est.value
        return self.charge.decode_s(0.0)

    def _budget_compute(self) -> Callable[[int], tuple[float, float]] | None:
        """(encode_s, decode_s) of a frame coded at ``bits``, where the charged cost depends
        on the budget: a per-step cost times the steps the calibration measured at that
        budget (interpolated in log bpp like the quality curve). None when the cost is
        measured (no profile), per call only, or the arm was not calibrated."""
        cost = self.charge.cost
        if cost is None or self.rq is None or not self.info.rq_steps:
            return None
        if cost.per_step_ms == 0 and not cost.decode_per_step_ms:
            return None
        steps_at = RateQualityModel(self.rq.bpp, self.info.rq_steps)  # a curve in log bpp
        charge, pixels = self.charge, self.pixels

        def at(bits: int) -> tuple[float, float]:
            if bits <= 0:  # a skip: the encoder runs, nothing is decoded
                return charge.encode_s(0.0, 0), 0.0
            steps: Any = steps_at.quality_at(bits / pixels)  # a mean: fractional steps
            return charge.encode_s(0.0, steps), charge.decode_s(0.0, steps)

        return at

    # ------------------------------------------------------------------ decisions
    def observe(self, k: int, now_s: float, capture_s: float, deadline_s: float | None, *,
                buffer_s: float = 0.0, future: OracleView | None = None) -> Observation:
        coded, skip, mtu, chunk = self.header_bytes, self.skip_header_bytes, self.mtu, self._chunk
        checked = not all(type(h) is int and h >= 0 for h in (coded, skip))

        def wire_bytes(bits: int) -> float:
            bits = int(bits)
            header = skip if bits == 0 else coded
            if checked or bits < 0:  # the checked function raises the usual error
                return float(wire_bytes_for_payload(bits, header, mtu))
            return float(wire_bytes_trusted(bits, header, chunk))  # checked once, above

        if not checked:  # lets payload_bits_for_wire_budget invert it in closed form
            wire_bytes.layout = (coded, chunk)  # type: ignore[attr-defined]
        return Observation(
            now_s=now_s, frame_index=k, frame_interval_s=self.interval, pixels=self.pixels,
            mode="interactive" if self.interactive else "playback", capture_s=capture_s,
            deadline_s=deadline_s, throughput_bps=tuple(self.view.samples),
            rtt_s=self.view.rtt_s, one_way_delay_s=self.view.one_way_delay_s,
            loss_rate=self.view.loss_rate, inflight_bytes=self.view.inflight_bytes,
            buffer_s=buffer_s, encode_s=self.encode_est.value or 0.0,
            decode_s=self.decode_estimate(), min_bits=self.info.min_bits,
            max_bits=int(self.sc.max_bpp * self.pixels), wire_bytes=wire_bytes,
            rate_quality=self.rq, future=future,
            backlog_bytes=self.view.backlog_estimate(now_s, self.throughput_estimate()),
            skip_run=self.view.skip_run, skip_run_max_bits=self.view.skip_run_max_bits,
            compute_at=self.compute_at,
        )

    def budget(self, obs: Observation) -> int:
        """The policy's budget; its throughput prediction for the same observation is kept
        for this frame's record (``throughput_pred_bps``)."""
        predict = self._predict
        self.prediction_bps = predict(obs) if callable(predict) else None
        return int(self.policy.budget_bits(obs))

    def on_encoded(self, enc: EncodedFrame) -> None:
        self.encode_est.add(enc.encode_charged_s)
        if enc.skipped:
            self.skip_header_bytes = enc.header_bytes
        else:
            self.header_bytes = enc.header_bytes

    def sender_half(self, *, capture_s: float, deadline_s: float | None, budget_bits: int,
                    enc: EncodedFrame, send_s: float, wire_bytes: int, packets: int,
                    throughput_est_bps: float | None, link: LinkState) -> SenderHalf:
        a = self.arm
        return SenderHalf(
            arm=a.label, codec=a.codec, policy=a.policy.kind, capture_s=capture_s,
            send_s=send_s, deadline_s=deadline_s, budget_bits=budget_bits,
            payload_bytes=enc.payload_bytes, header_bytes=enc.header_bytes,
            wire_bytes=wire_bytes, packets=packets, bpp=enc.payload_bytes * 8 / self.pixels,
            skipped=enc.skipped, skip_reason=enc.reason, codec_steps=enc.steps,
            encode_ms=enc.encode_ms, encode_charged_s=enc.encode_charged_s,
            throughput_est_bps=throughput_est_bps, capacity_bps=link.capacity_bps,
            queue_bytes=float(link.queue_bytes), packets_dropped=link.packets_dropped,
            packets_lost=link.packets_lost, throughput_pred_bps=self.prediction_bps,
        )

    # ------------------------------------------------------------------ feedback
    def on_sent(self, seq: int, send_s: float, wire_bytes: int, *, budget_bits: int = 0,
                skipped: bool = False) -> None:
        self.view.on_send(seq, send_s, wire_bytes, budget_bits=budget_bits, skipped=skipped)

    def on_report(self, report: DeliveryReport, now_s: float) -> None:
        self.view.on_report(report, now_s)
        hook = self._report_hook
        if hook is not None:
            hook(report, now_s)

    def on_decode_time(self, charged_s: float) -> None:
        self.decode_est.add(charged_s)

    def on_unreported(self, seq: int) -> None:
        """A frame settled without a report (never sent, or its report never came)."""
        self.view.forget(seq)


def delivery_report(seq: int, tx: SenderHalf, arrival: Arrival, *,
                    throughput_bps: float | None, sent_at_s: float, buffer_s: float,
                    first_packet_bytes: int) -> DeliveryReport:
    """The report on one frame, from its sender half and what arrived (both modes)."""
    missing = 0 if arrival.complete else max(1, tx.packets_dropped + tx.packets_lost)
    return DeliveryReport(
        seq=seq, send_s=tx.send_s, wire_bytes=tx.wire_bytes,
        delivered_bytes=arrival.delivered_bytes, packets=tx.packets,
        packets_missing=min(missing, tx.packets), first_arrival_s=arrival.first_arrival_s,
        last_arrival_s=arrival.last_arrival_s, throughput_bps=throughput_bps,
        sent_at_s=sent_at_s, buffer_s=buffer_s, first_packet_bytes=first_packet_bytes)
