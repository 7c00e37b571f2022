"""The receiver -> sender feedback path: per-frame delivery reports and what the sender
learns from them (throughput samples, loss, delay, in-flight bytes, playout buffer).

The sender only ever sees reports that have crossed the (delayed) feedback path, so its
observation lags the link by at least one feedback delay, as a real sender's does.

Throughput sample (receiver side, per frame): on-link bits delivered divided by the time the
link spent serving the frame, from the later of (its enqueue, the previous frame's last
departure) to its own last departure. Departure = arrival - base one-way delay: the estimator
is given the path's base delay, as a real one learns it from the minimum RTT (a documented
simplification). Measuring only the busy time keeps idle gaps between small frames from
being mistaken for a slow link.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from diffstream.control.predictors import SAMPLE_HISTORY
from diffstream.netsim.link import FrameTransfer


@dataclass(frozen=True)
class DeliveryReport:
    seq: int
    send_s: float
    wire_bytes: int
    delivered_bytes: int
    packets: int
    packets_missing: int
    first_arrival_s: float | None
    last_arrival_s: float | None
    throughput_bps: float | None
    sent_at_s: float  # when the receiver sent the report
    buffer_s: float  # receiver's playout buffer level when it sent the report
    first_packet_bytes: int = 0  # on-link size of the first packet that arrived


class ThroughputEstimator:
    """The receiver's per-frame throughput sample, in both modes (see the module docstring).

    ``base_delay_s`` known (the simulator: the path's propagation delay, a documented
    simplification): busy time is measured against it, and a frame with no measurable busy
    time gives no sample. Unknown (live): the base delay is learnt as the minimum recent
    (last arrival - send) over ``window`` frames, after ``warmup`` frames; the frame that
    sets the minimum has almost no busy time, so busy time is floored at ``min_busy_s``
    (scheduling jitter, not the link) instead of giving no sample.
    """

    def __init__(self, base_delay_s: float | None = None, *, window: int = 64,
                 warmup: int = 8, min_busy_s: float = 5e-4) -> None:
        self.base_delay_s = base_delay_s
        self.window, self.warmup, self.min_busy_s = window, warmup, min_busy_s
        self._owd: deque[float] = deque(maxlen=window)
        self.prev_arrival_s: float | None = None

    def sample(self, send_s: float, last_arrival_s: float | None,
               delivered_bytes: int) -> float | None:
        if last_arrival_s is None or delivered_bytes <= 0:
            return None
        if self.base_delay_s is None:
            self._owd.append(last_arrival_s - send_s)
            if len(self._owd) < self.warmup:  # the base delay needs a few frames to settle
                self.prev_arrival_s = last_arrival_s
                return None
            base = min(self._owd)
        else:
            base = self.base_delay_s
        start = send_s
        if self.prev_arrival_s is not None:
            start = max(start, self.prev_arrival_s - base)
        self.prev_arrival_s = last_arrival_s
        busy = (last_arrival_s - base) - start
        if self.base_delay_s is not None:
            if busy <= 1e-6:
                return None
        else:
            busy = max(busy, self.min_busy_s)
        return delivered_bytes * 8.0 / busy


def report_time(transfer: FrameTransfer, frame_interval_s: float, base_delay_s: float) -> float:
    """When the receiver can report on a frame: at its last packet's arrival, or - when
    nothing arrived - when the next frame's packets reveal the gap (approximated as one frame
    interval after the frame would have arrived on an idle link)."""
    if transfer.last_arrival_s is not None:
        return transfer.last_arrival_s
    return transfer.enqueue_s + base_delay_s + frame_interval_s


class SenderView:
    """Everything the sender has learnt from reports so far, plus its own send log.

    One-way delay: per report, the first packet's arrival minus its send time minus its own
    serialisation at the frame's measured rate; the minimum over reports converges on the
    propagation delay (plus scheduling jitter), as a minimum-RTT filter does.

    Backlog: reports lag by an RTT, so the bytes still unacknowledged overstate the queue.
    ``backlog_estimate`` replays the unacknowledged frames through a fluid FIFO drained at the
    throughput estimate, starting no earlier than the link finished the last reported frame
    (its last arrival minus the one-way delay): the bytes still ahead of a frame sent now.

    Skip run: from the sender's own send log (no feedback delay), how many of the latest
    frames in a row the codec skipped and the largest budget among them
    (``Observation.skip_run``/``skip_run_max_bits``, which ``policy.base.escape_floor`` reads).
    """

    def __init__(self, history: int = SAMPLE_HISTORY, loss_alpha: float = 0.1) -> None:
        self.unacked: dict[int, tuple[float, int]] = {}  # seq -> (send_s, wire bytes)
        self.last_arrival_s = -float("inf")  # latest last-packet arrival seen in a report
        self.samples: deque[float] = deque(maxlen=history)
        self.inflight_bytes = 0.0
        self.loss_rate = 0.0
        self.rtt_s: float | None = None
        self.one_way_delay_s: float | None = None
        self.buffer_s = 0.0
        self.reports = 0
        self.skip_run = 0
        self.skip_run_max_bits = 0
        self._alpha = loss_alpha

    def on_send(self, seq: int, send_s: float, wire_bytes: int, *, budget_bits: int = 0,
                skipped: bool = False) -> None:
        self.inflight_bytes += wire_bytes
        self.unacked[seq] = (send_s, wire_bytes)
        if skipped:
            self.skip_run += 1
            self.skip_run_max_bits = max(self.skip_run_max_bits, int(budget_bits))
        else:
            self.skip_run = self.skip_run_max_bits = 0

    def forget(self, seq: int) -> None:
        """A frame that will never be reported (not sent, or its report is given up on)."""
        unacked = self.unacked.pop(seq, None)
        if unacked is not None:
            self.inflight_bytes = max(0.0, self.inflight_bytes - unacked[1])

    def backlog_estimate(self, now_s: float, throughput_bps: float | None) -> float | None:
        if throughput_bps is None or throughput_bps <= 0:
            return None
        clear = self.last_arrival_s - (self.one_way_delay_s or 0.0)
        for send_s, wire in sorted(self.unacked.values()):
            clear = max(clear, send_s) + wire * 8.0 / throughput_bps
        return max(0.0, clear - now_s) * throughput_bps / 8.0 if self.unacked else 0.0

    def on_report(self, report: DeliveryReport, now_s: float) -> None:
        self.reports += 1
        self.unacked.pop(report.seq, None)
        self.inflight_bytes = max(0.0, self.inflight_bytes - report.wire_bytes)
        if report.throughput_bps is not None:
            self.samples.append(report.throughput_bps)
        frac = report.packets_missing / report.packets if report.packets else 0.0
        self.loss_rate = frac if self.reports == 1 else (
            (1 - self._alpha) * self.loss_rate + self._alpha * frac
        )
        self.rtt_s = now_s - report.send_s
        if report.last_arrival_s is not None:
            self.last_arrival_s = max(self.last_arrival_s, report.last_arrival_s)
        if report.first_arrival_s is not None:
            owd = report.first_arrival_s - report.send_s
            if report.throughput_bps:
                owd -= report.first_packet_bytes * 8.0 / report.throughput_bps
            owd = max(owd, 0.0)
            self.one_way_delay_s = owd if self.one_way_delay_s is None else min(
                self.one_way_delay_s, owd
            )
        self.buffer_s = report.buffer_s
