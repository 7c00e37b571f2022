"""GCC's components one at a time, against hand-computed values (control/gcc/)."""

from __future__ import annotations

import math

import pytest

from diffstream.control.gcc.aimd import (
    MIN_NEAR_MAX_INCREASE_BPS_PER_S,
    AimdRateControl,
    RateControlState,
)
from diffstream.control.gcc.inter_arrival import InterArrival
from diffstream.control.gcc.loss_based import LossBasedControl
from diffstream.control.gcc.overuse import K_DOWN, K_UP, BandwidthUsage, OveruseDetector
from diffstream.control.gcc.receive_rate import ReceiveRate
from diffstream.control.gcc.trendline import TrendlineEstimator

N, OVER, U = BandwidthUsage.NORMAL, BandwidthUsage.OVERUSING, BandwidthUsage.UNDERUSING


# --- inter-arrival groups ------------------------------------------------------------------

def test_group_deltas_come_one_group_late() -> None:
    ia = InterArrival()
    assert ia.add(0.0, 0.020, 0.04, 100) is None  # first group opens
    assert ia.add(0.1, 0.120, 0.14, 100) is None  # group 0 complete; no earlier group
    d = ia.add(0.2, 0.250, 0.27, 300)  # group 1 complete: deltas of group 1 vs group 0
    assert d is not None
    assert d.send_delta_s == pytest.approx(0.1)
    assert d.arrival_delta_s == pytest.approx(0.1)
    assert d.size_delta == 0
    d = ia.add(0.3, 0.350, 0.37, 100)
    assert d is not None and d.arrival_delta_s == pytest.approx(0.13) and d.size_delta == 200


def test_packets_within_5ms_of_the_group_start_join_it() -> None:
    ia = InterArrival()
    ia.add(0.0, 0.020, 0.0, 100)
    ia.add(0.004, 0.030, 0.0, 100)  # 4 ms after the first send: same group
    ia.add(0.1, 0.120, 0.0, 100)
    d = ia.add(0.2, 0.220, 0.0, 100)
    assert d is not None
    assert d.send_delta_s == pytest.approx(0.1 - 0.004)  # last send of group 0
    assert d.arrival_delta_s == pytest.approx(0.120 - 0.030)  # its last arrival
    assert d.size_delta == 100 - 200


def test_burst_rule_merges_a_late_sent_packet_that_arrives_right_behind() -> None:
    ia = InterArrival()
    ia.add(0.0, 0.050, 0.0, 100)
    # sent 10 ms later (a new group by send time) but arriving 2 ms behind with a negative
    # propagation delta (2 ms - 10 ms): the same burst
    assert ia.add(0.010, 0.052, 0.0, 100) is None
    ia.add(0.1, 0.150, 0.0, 100)
    d = ia.add(0.2, 0.250, 0.0, 100)
    assert d is not None and d.size_delta == 100 - 200


def test_reordered_packets_are_dropped_and_three_reordered_groups_reset() -> None:
    ia = InterArrival()
    ia.add(0.1, 0.12, 0.0, 100)
    assert ia.add(0.05, 0.13, 0.0, 100) is None  # sent before the current group: dropped
    ia2 = InterArrival()
    ia2.add(0.0, 1.0, 0.0, 1)
    ia2.add(0.1, 1.1, 0.0, 1)
    ia2.add(0.102, 0.95, 0.0, 1)  # group 1 completes (last arrival) before group 0 did
    for k in range(2, 4):  # each later group finds the pair still reordered
        assert ia2.add(0.1 * k, 1.0 + 0.1 * k, 0.0, 1) is None
        assert ia2.resets == 0
    assert ia2.add(0.4, 1.4, 0.0, 1) is None  # the third in a row: reset
    assert ia2.resets == 1


# --- trendline -----------------------------------------------------------------------------

def _feed(tl: TrendlineEstimator, deltas_ms: list[float], step_ms: float = 100.0) -> float:
    trend = 0.0
    for i, d in enumerate(deltas_ms):
        trend = tl.update(step_ms + d, step_ms, (i + 1) * step_ms)
    return trend


def test_trendline_slope_of_a_delay_ramp() -> None:
    tl = TrendlineEstimator(window_size=20)
    assert _feed(tl, [10.0] * 19) == 0.0  # window not full: no fit yet
    # 10 ms more delay every 100 ms: the smoothed delay's slope converges on 0.1
    trend = _feed(tl, [10.0] * 100)
    assert trend == pytest.approx(0.1, rel=1e-3)


def test_trendline_flat_and_falling_delay() -> None:
    assert _feed(TrendlineEstimator(), [0.0] * 40) == pytest.approx(0.0, abs=1e-12)
    assert _feed(TrendlineEstimator(), [-5.0] * 60) < -0.04


# --- over-use detector and adaptive threshold ----------------------------------------------

def test_overuse_needs_two_samples_over_the_threshold_for_more_than_10ms() -> None:
    det = OveruseDetector()
    # modified trend = min(n, 60) * trend * 4 = 60 * 0.1 * 4 = 24 > 12.5
    assert det.detect(0.1, 60, 100.0, 1000.0) is N  # one sample is not enough
    assert det.detect(0.1, 60, 100.0, 1100.0) is OVER
    assert det.modified_trend == pytest.approx(24.0)


def test_overuse_is_not_declared_while_the_trend_falls() -> None:
    det = OveruseDetector()
    det.detect(0.12, 60, 100.0, 1000.0)
    assert det.detect(0.10, 60, 100.0, 1100.0) is N  # trend < previous: not yet


def test_underuse_and_normal() -> None:
    det = OveruseDetector()
    assert det.detect(-0.1, 60, 100.0, 1000.0) is U
    assert det.detect(0.0, 60, 100.0, 1100.0) is N
    assert det.detect(0.5, 1, 100.0, 1200.0) is N  # fewer than 2 deltas: always normal


def test_threshold_moves_up_slowly_and_down_fast() -> None:
    det = OveruseDetector()
    det.update_threshold(0.0, 0.0)  # sets the time base
    det.update_threshold(20.0, 10.0)  # 10 ms later, |m| = 20 > 12.5: K_UP
    assert det.threshold == pytest.approx(12.5 + K_UP * (20.0 - 12.5) * 10.0)
    t = det.threshold
    det.update_threshold(10.0, 20.0)  # |m| below: K_DOWN
    assert det.threshold == pytest.approx(t + K_DOWN * (10.0 - t) * 10.0)


def test_threshold_ignores_spikes_caps_the_step_and_clamps() -> None:
    det = OveruseDetector()
    det.update_threshold(0.0, 0.0)
    det.update_threshold(12.5 + 15.1, 10.0)  # more than 15 ms above: no adaptation
    assert det.threshold == 12.5
    det.update_threshold(0.0, 1010.0)  # 1 s later: the step counts 100 ms, and clamps at 6
    assert det.threshold == 6.0
    det.threshold = 599.0
    det.update_threshold(610.0, 1110.0)
    assert det.threshold == 600.0
    det2 = OveruseDetector()
    det2.update_threshold(0.0, 0.0)
    det2.update_threshold(20.0, 5000.0)  # dt capped at 100 ms
    assert det2.threshold == pytest.approx(12.5 + K_UP * 7.5 * 100.0)


# --- AIMD ----------------------------------------------------------------------------------

def test_overuse_decreases_to_beta_times_received_and_holds() -> None:
    a = AimdRateControl(start_bps=100_000, min_bps=5000)
    rate = a.update(OVER, 80_000, 1.0)
    assert rate == pytest.approx(0.85 * 80_000)
    assert a.state is RateControlState.HOLD
    assert a.link_capacity.has_estimate and a.link_capacity.estimate_kbps == pytest.approx(80)


def test_overuse_never_increases_the_rate() -> None:
    a = AimdRateControl(start_bps=50_000, min_bps=5000)
    assert a.update(OVER, 100_000, 1.0) == 50_000  # 0.85 x 100k > 50k: keep 50k


def test_multiplicative_increase_far_from_convergence() -> None:
    a = AimdRateControl(start_bps=100_000, min_bps=5000)
    assert a.update(N, 100_000, 0.0) == pytest.approx(101_000)  # Hold -> Increase: +1 kbit/s
    assert a.state is RateControlState.INCREASE
    assert a.update(N, 100_000, 0.5) == pytest.approx(101_000 * 1.08 ** 0.5)
    r = a.current_bps
    assert a.update(N, 100_000, 3.0) == pytest.approx(r * 1.08)  # dt capped at 1 s


def test_additive_increase_near_convergence() -> None:
    a = AimdRateControl(start_bps=100_000, min_bps=5000)
    a.set_rtt(0.05)
    a.update(OVER, 80_000, 0.0)  # a capacity estimate now exists
    r0 = a.update(N, 80_000, 1.0)  # Hold -> Increase (dt 0): no step
    assert r0 == pytest.approx(68_000)
    step = a.near_max_increase_bps_per_s()
    # 68 kbit/s at 30 fps: 283 B frames, one packet each, over 2 x (50 + 100) ms
    assert step == pytest.approx(max(MIN_NEAR_MAX_INCREASE_BPS_PER_S, 68_000 / 30 / 0.3))
    assert a.update(N, 80_000, 1.5) == pytest.approx(68_000 + 0.5 * step)


def test_increase_is_capped_by_the_received_rate_and_capacity_resets() -> None:
    a = AimdRateControl(start_bps=24_000, min_bps=5000)
    assert a.update(N, 10_000, 0.0) == 25_000  # +1 kbit/s reaches 1.5 x 10k + 10k
    assert a.update(N, 10_000, 1.0) == 25_000  # at the limit: no further increase
    c = AimdRateControl(start_bps=100_000, min_bps=5000)
    assert c.update(N, 10_000, 0.0) == 100_000  # above the limit: kept, not cut
    b = AimdRateControl(start_bps=100_000, min_bps=5000)
    b.update(OVER, 100_000, 0.0)
    assert b.link_capacity.has_estimate
    b.update(N, 200_000, 1.0)  # far above the capacity seen: reset, multiplicative again
    assert not b.link_capacity.has_estimate


def test_underuse_holds_the_rate() -> None:
    a = AimdRateControl(start_bps=100_000, min_bps=5000)
    a.update(N, 100_000, 0.0)
    r = a.update(N, 100_000, 0.5)
    assert a.update(U, 100_000, 1.0) == r
    assert a.state is RateControlState.HOLD
    assert a.update(U, 100_000, 2.0) == r


def test_time_to_reduce_further() -> None:
    a = AimdRateControl(start_bps=100_000, min_bps=5000)
    a.set_rtt(0.05)
    a.update(OVER, 100_000, 1.0)  # -> 85k
    assert not a.time_to_reduce_further(1.04, 80_000)  # within one RTT
    assert a.time_to_reduce_further(1.05, 80_000)
    assert a.time_to_reduce_further(1.01, 40_000)  # received < half the estimate


# --- loss-based ----------------------------------------------------------------------------

def _loss(start: float = 100_000) -> LossBasedControl:
    c = LossBasedControl(start_bps=start, min_bps=5000)
    c.update_packets_lost(0, 1, 0.0)  # first report at t = 0 (start phase until 2 s)
    return c


def test_loss_above_10_percent_cuts_by_half_the_loss() -> None:
    c = _loss()
    c.update_packets_lost(4, 20, 3.0)  # 20 % loss (q8: 1024 // 21 = 48)... see below
    q8 = (4 << 8) // 21
    assert c.fraction_loss_q8 == q8
    assert c.target_bps == pytest.approx(100_000 * (512 - q8) / 512)
    assert c.target_bps == pytest.approx(100_000 * (1 - 0.5 * 4 / 21), rel=0.01)
    t = c.target_bps
    c.update_estimate(3.5)  # the same fraction does not cut twice
    assert c.target_bps == t


def test_loss_below_2_percent_grows_8_percent_over_the_last_second_minimum() -> None:
    c = _loss()
    c.update_packets_lost(0, 30, 3.0)
    assert c.target_bps == pytest.approx(100_000 * 1.08 + 1000, abs=1)
    c.update_estimate(3.5)  # the minimum of the last second is still 100k
    assert c.target_bps == pytest.approx(100_000 * 1.08 + 1000, abs=1)
    c.update_estimate(4.1)  # 100k has left the window: the minimum is 109k
    assert c.target_bps == pytest.approx((100_000 * 1.08 + 1000) * 1.08 + 1000, abs=2)


def test_moderate_loss_holds_and_few_packets_give_no_fraction() -> None:
    c = _loss()
    c.update_packets_lost(1, 10, 3.0)  # 11 packets counted: no fraction yet
    assert c.fraction_loss_q8 == 0 and c.target_bps == 100_000
    c.update_packets_lost(1, 10, 3.1)  # 2 / 21 = 9.5 %: hold
    assert c.loss_fraction == pytest.approx(2 / 21, abs=1 / 256)
    assert c.target_bps == 100_000


def test_loss_based_rate_is_capped_by_the_delay_based_one_and_follows_it_at_start() -> None:
    c = LossBasedControl(start_bps=100_000, min_bps=5000)
    c.update_delay_based(60_000, 0.5)
    assert c.target_bps == 60_000
    c.update_packets_lost(0, 1, 0.6)
    c.update_delay_based(90_000, 1.0)
    c.update_estimate(1.0)  # start phase, no loss: up to the delay-based estimate
    assert c.target_bps == 90_000
    assert math.isinf(LossBasedControl(1e5, 5e3).delay_based_limit_bps)


# --- received rate -------------------------------------------------------------------------

def test_receive_rate_over_the_window() -> None:
    rr = ReceiveRate(window_s=0.5)
    assert rr.rate_bps() is None
    for k in range(20):
        rr.add(0.1 * k, 1000)
    assert rr.rate_bps() == pytest.approx(80_000)  # 1000 B every 100 ms
    rr.add(2.0, 11_000)  # a burst: 11 kB 100 ms after the last
    # the span starts at the last sample at or before newest - 0.5 s (1.4 s): the bytes
    # after it (1.5 ... 1.9 s and the burst) over 0.6 s
    assert rr.rate_bps() == pytest.approx((5 * 1000 + 11_000) * 8 / 0.6)
