"""Receiver-side throughput samples and the sender's view built from delayed reports."""

from __future__ import annotations

import numpy as np
import pytest

from diffstream.control.feedback import (
    DeliveryReport,
    SenderView,
    ThroughputEstimator,
    report_time,
)
from diffstream.netsim.link import FrameTransfer, Link
from diffstream.netsim.trace import Trace


def per_ms_trace() -> Trace:
    # one 1500-byte opportunity every ms: 12 Mbit/s
    return Trace(opportunities_ms=np.array([1.0]), period_ms=1.0)


def sample(est: ThroughputEstimator, t: FrameTransfer) -> float | None:
    return est.sample(t.enqueue_s, t.last_arrival_s, t.delivered_bytes)


def test_sample_on_idle_link_is_link_rate() -> None:
    link = Link(per_ms_trace(), delay_s=0.02)
    t = link.send(0.0, [1500] * 10)  # departs at 1..10 ms
    assert sample(ThroughputEstimator(0.02), t) == pytest.approx(12e6)


def test_sample_excludes_wait_behind_previous_frame() -> None:
    link = Link(per_ms_trace(), delay_s=0.02)
    a = link.send(0.0, [1500] * 10)  # busy until 10 ms
    b = link.send(0.002, [1500] * 5)  # queued behind a; departs 11..15 ms
    est = ThroughputEstimator(0.02)
    sample(est, a)
    assert sample(est, b) == pytest.approx(12e6)
    # measured from its own enqueue it would look slower: 7500 B over 13 ms
    assert sample(ThroughputEstimator(0.02), b) == pytest.approx(7500 * 8 / 0.013)


def test_learnt_base_delay_measures_a_backlogged_link() -> None:
    """Live: no known base delay. It is the minimum recent (arrival - send); once frames
    queue back to back, each sample is the arrival spacing: the link's rate."""
    link = Link(per_ms_trace(), delay_s=0.02)
    est = ThroughputEstimator(None, warmup=3)
    got = [sample(est, link.send(k * 0.005, [1500] * 10)) for k in range(12)]
    assert got[:2] == [None, None]  # warm-up: the base delay is not settled yet
    assert got[3:] == pytest.approx([12e6] * 9)


def test_learnt_base_delay_floors_busy_time() -> None:
    """The frame that sets the minimum has no busy time left: floored, not infinite."""
    est = ThroughputEstimator(None, warmup=1, min_busy_s=1e-3)
    assert est.sample(0.0, 0.03, 1000) == pytest.approx(1000 * 8 / 1e-3)


def test_report_time_for_lost_frame() -> None:
    link = Link(per_ms_trace(), delay_s=0.02, queue_packets=1)
    link.send(0.0, [1500])
    t = link.send(0.0, [1500])  # dropped: queue full
    assert t.last_arrival_s is None
    assert report_time(t, 0.1, 0.02) == pytest.approx(0.12)


def test_sender_view_updates() -> None:
    v = SenderView()
    v.on_send(0, 0.0, 3000)
    rep = DeliveryReport(seq=0, send_s=0.0, wire_bytes=3000, delivered_bytes=1500, packets=2,
                         packets_missing=1, first_arrival_s=0.021, last_arrival_s=0.021,
                         throughput_bps=1e6, sent_at_s=0.021, buffer_s=0.0)
    v.on_report(rep, 0.041)
    assert v.inflight_bytes == 0
    assert list(v.samples) == [1e6]
    assert v.loss_rate == 0.5 and v.rtt_s == pytest.approx(0.041)
    assert v.one_way_delay_s == pytest.approx(0.021)  # no first-packet size: not corrected
    assert v.backlog_estimate(0.05, 1e6) == 0.0  # nothing unacknowledged


def test_owd_estimate_removes_first_packet_serialisation() -> None:
    v = SenderView()
    v.on_send(0, 0.0, 1500)
    rep = DeliveryReport(seq=0, send_s=0.0, wire_bytes=1500, delivered_bytes=1500, packets=1,
                         packets_missing=0, first_arrival_s=0.13, last_arrival_s=0.13,
                         throughput_bps=120e3, sent_at_s=0.13, buffer_s=0.0,
                         first_packet_bytes=1500)
    v.on_report(rep, 0.16)
    assert v.one_way_delay_s == pytest.approx(0.03)  # 0.13 - 1500*8/120e3


def test_backlog_estimate_drains_since_send() -> None:
    v = SenderView()
    v.on_send(0, 0.0, 2000)  # at 8 kB/s: clears at 0.25 s
    v.on_send(1, 0.1, 1000)  # queued behind it: clears at 0.375 s
    assert v.inflight_bytes == 3000
    assert v.backlog_estimate(0.2, 64e3) == pytest.approx(0.175 * 8000)
    assert v.backlog_estimate(0.5, 64e3) == 0.0
    assert v.backlog_estimate(0.2, None) is None


def test_backlog_estimate_starts_after_the_last_reported_departure() -> None:
    v = SenderView()
    v.on_send(0, 0.0, 2000)
    v.on_send(1, 0.1, 1000)
    # frame 0's report: its last packet arrived at 0.33 (delay 0.03 -> departed 0.30), so the
    # link was busy until 0.30 and frame 1 (1000 B at 8 kB/s) clears at 0.425, not 0.375
    rep = DeliveryReport(seq=0, send_s=0.0, wire_bytes=2000, delivered_bytes=2000, packets=2,
                         packets_missing=0, first_arrival_s=0.03, last_arrival_s=0.33,
                         throughput_bps=None, sent_at_s=0.33, buffer_s=0.0)
    v.on_report(rep, 0.36)
    assert v.one_way_delay_s == pytest.approx(0.03)
    assert v.backlog_estimate(0.36, 64e3) == pytest.approx(0.065 * 8000)
