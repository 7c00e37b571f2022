"""The delay-based rate controller: AIMD over the detector's signal (draft-ietf-rmcat-gcc-02
section 5.5; libwebrtc ``modules/remote_bitrate_estimator/aimd_rate_control.cc`` and
``modules/congestion_controller/goog_cc/link_capacity_estimator.cc``).

States Hold / Increase / Decrease, moved by the detector: normal -> Increase (from Hold),
over-use -> Decrease, under-use -> Hold (the queues are draining: wait). In Increase the rate
grows multiplicatively (8 %/s) while the link capacity is unknown, additively (about half a
packet per response time) near a known capacity; never above 1.5 x the received rate +
10 kbit/s. In Decrease it drops to ``beta`` x the received rate, and the state returns to Hold.

Deviation: libwebrtc since 2023 subtracts another 5 kbit/s after ``beta``; at diffstream's
tens-of-kbit/s streams that is an 8-15 % extra cut the draft does not have, so it is left out.
"""

from __future__ import annotations

import math
from enum import Enum

from diffstream.control.gcc.overuse import BandwidthUsage

BACKOFF_FACTOR = 0.85
"""``kDefaultBackoffFactor`` (aimd_rate_control.cc); the draft's ``beta`` (section 5.5)."""

DEFAULT_RTT_S = 0.2
"""``kDefaultRtt`` (aimd_rate_control.cc): the RTT until the first report gives one."""

MULTIPLICATIVE_INCREASE = 1.08
"""``alpha = 1.08`` per second (``MultiplicativeRateIncrease``); the draft's eta (5.5)."""

MIN_MULTIPLICATIVE_INCREASE_BPS = 1000.0
"""``DataRate::BitsPerSec(1000)``: the smallest multiplicative step."""

INCREASE_LIMIT_FACTOR = 1.5
INCREASE_LIMIT_OFFSET_BPS = 10_000.0
"""``1.5 * estimated_throughput + DataRate::KilobitsPerSec(10)`` (``ChangeBitrate``): the
rate never grows past this (the draft's ``A_hat < 1.5 * R_hat``)."""

NEAR_MAX_FRAME_INTERVAL_S = 1 / 30
"""``kFrameInterval = 1/30 s`` (``GetNearMaxIncreaseRateBpsPerSecond``): libwebrtc assumes
30 fps when it sizes the additive step; kept as is (it sets the step, not the budgets)."""

NEAR_MAX_PACKET_BYTES = 1200
"""``kPacketSize = 1200 bytes`` (``GetNearMaxIncreaseRateBpsPerSecond``)."""

RESPONSE_TIME_EXTRA_S = 0.1
"""``rtt + 100 ms``, doubled (``GetNearMaxIncreaseRateBpsPerSecond``): the over-use
detector's approximate reaction time."""

MIN_NEAR_MAX_INCREASE_BPS_PER_S = 4000.0
"""``kMinIncreaseRateBpsPerSecond = 4000`` (``GetNearMaxIncreaseRateBpsPerSecond``)."""

REDUCTION_INTERVAL_RANGE_S = (0.01, 0.2)
"""``rtt_.Clamped(10 ms, 200 ms)`` (``TimeToReduceFurther``): at most one decrease per RTT."""

# LinkCapacityEstimator (link_capacity_estimator.cc)
CAPACITY_ALPHA_OVERUSE = 0.05  # ``OnOveruseDetected``: Update(acknowledged_rate, 0.05)
CAPACITY_DEVIATION_RANGE = (0.4, 2.5)  # ``SafeClamp(deviation_kbps_, 0.4f, 2.5f)``
CAPACITY_BOUND_DEVIATIONS = 3.0  # ``estimate +- 3 * deviation_estimate_kbps()``


class LinkCapacityEstimator:
    """The link capacity seen at over-use: EWMA of the received rate at each decrease, with a
    normalised variance (kbit/s, as in libwebrtc). Reset when the received rate leaves
    estimate +- 3 deviations."""

    def __init__(self) -> None:
        self.estimate_kbps: float | None = None
        self.deviation_kbps = CAPACITY_DEVIATION_RANGE[0]

    @property
    def has_estimate(self) -> bool:
        return self.estimate_kbps is not None

    def reset(self) -> None:
        self.estimate_kbps = None

    def _deviation(self) -> float:
        assert self.estimate_kbps is not None
        return math.sqrt(self.deviation_kbps * self.estimate_kbps)

    def upper_bound_bps(self) -> float:
        if self.estimate_kbps is None:
            return math.inf
        return (self.estimate_kbps + CAPACITY_BOUND_DEVIATIONS * self._deviation()) * 1000

    def lower_bound_bps(self) -> float:
        if self.estimate_kbps is None:
            return 0.0
        return max(0.0, self.estimate_kbps - CAPACITY_BOUND_DEVIATIONS * self._deviation()) * 1000

    def on_overuse_detected(self, acknowledged_bps: float) -> None:
        alpha = CAPACITY_ALPHA_OVERUSE
        sample = acknowledged_bps / 1000
        if self.estimate_kbps is None:
            self.estimate_kbps = sample
        else:
            self.estimate_kbps = (1 - alpha) * self.estimate_kbps + alpha * sample
        norm = max(self.estimate_kbps, 1.0)
        err = self.estimate_kbps - sample
        dev = (1 - alpha) * self.deviation_kbps + alpha * err * err / norm
        lo, hi = CAPACITY_DEVIATION_RANGE
        self.deviation_kbps = min(hi, max(lo, dev))


class RateControlState(Enum):
    HOLD = "hold"
    INCREASE = "increase"
    DECREASE = "decrease"


class AimdRateControl:
    """libwebrtc's ``AimdRateControl`` after ``SetStartBitrate``: the estimate is valid from
    the start (diffstream always has a start rate), so its 5 s initialisation path is not
    needed. ``update`` returns the new rate; times in seconds, rates in bit/s."""

    def __init__(self, start_bps: float, min_bps: float,
                 backoff_factor: float = BACKOFF_FACTOR) -> None:
        self.min_bps = min_bps
        self.beta = backoff_factor
        self.current_bps = max(start_bps, min_bps)
        self.latest_throughput_bps = self.current_bps
        self.state = RateControlState.HOLD
        self.link_capacity = LinkCapacityEstimator()
        self.rtt_s = DEFAULT_RTT_S
        self.time_last_change_s: float | None = None
        self.time_last_decrease_s: float | None = None
        self.last_decrease_bps: float | None = None

    def set_rtt(self, rtt_s: float) -> None:
        self.rtt_s = rtt_s

    def set_estimate(self, bps: float, now_s: float) -> None:
        prev = self.current_bps
        self.current_bps = max(bps, self.min_bps)
        self.time_last_change_s = now_s
        if self.current_bps < prev:
            self.time_last_decrease_s = now_s

    def time_to_reduce_further(self, now_s: float, throughput_bps: float) -> bool:
        """Another decrease is allowed an RTT (10-200 ms) after the last change, or at once
        when the received rate fell below half the estimate."""
        lo, hi = REDUCTION_INTERVAL_RANGE_S
        interval = min(hi, max(lo, self.rtt_s))
        if self.time_last_change_s is None or now_s - self.time_last_change_s >= interval:
            return True
        return throughput_bps < 0.5 * self.current_bps

    def initial_time_to_reduce_further(self, now_s: float) -> bool:
        return self.time_to_reduce_further(now_s, self.current_bps / 2 - 1)

    def near_max_increase_bps_per_s(self) -> float:
        frame_bytes = self.current_bps * NEAR_MAX_FRAME_INTERVAL_S / 8
        packets = math.ceil(frame_bytes / NEAR_MAX_PACKET_BYTES) or 1
        avg_packet_bits = frame_bytes / packets * 8
        response_s = 2 * (self.rtt_s + RESPONSE_TIME_EXTRA_S)
        return max(MIN_NEAR_MAX_INCREASE_BPS_PER_S, avg_packet_bits / response_s)

    def _change_state(self, usage: BandwidthUsage) -> None:
        if usage is BandwidthUsage.NORMAL:
            if self.state is RateControlState.HOLD:
                self.state = RateControlState.INCREASE
        elif usage is BandwidthUsage.OVERUSING:
            self.state = RateControlState.DECREASE
        else:  # under-use: the queues drain, hold the rate until they are empty
            self.state = RateControlState.HOLD

    def update(self, usage: BandwidthUsage, throughput_bps: float | None,
               now_s: float) -> float:
        """One rate update (``ChangeBitrate``): ``usage`` from the detector,
        ``throughput_bps`` the received rate (None: not measured; the last one is used)."""
        if throughput_bps is not None:
            self.latest_throughput_bps = throughput_bps
        thr = self.latest_throughput_bps
        was_hold = self.state is RateControlState.HOLD
        self._change_state(usage)
        if was_hold and self.state is RateControlState.INCREASE:
            self.time_last_change_s = now_s  # Hold -> Increase: the increase starts now
        new: float | None = None
        if self.state is RateControlState.INCREASE:
            if thr > self.link_capacity.upper_bound_bps():
                self.link_capacity.reset()  # far above the capacity seen: ramp up again
            limit = INCREASE_LIMIT_FACTOR * thr + INCREASE_LIMIT_OFFSET_BPS
            if self.current_bps < limit:
                last = self.time_last_change_s
                dt = 0.0 if last is None else now_s - last
                if self.link_capacity.has_estimate:
                    step = self.near_max_increase_bps_per_s() * dt
                else:
                    alpha = MULTIPLICATIVE_INCREASE ** (min(dt, 1.0) if last is not None else 1.0)
                    step = max(self.current_bps * (alpha - 1.0), MIN_MULTIPLICATIVE_INCREASE_BPS)
                new = min(self.current_bps + step, limit)
            self.time_last_change_s = now_s
        elif self.state is RateControlState.DECREASE:
            decreased = thr * self.beta
            if decreased > self.current_bps and self.link_capacity.has_estimate:
                decreased = self.beta * self.link_capacity.estimate_kbps * 1000  # type: ignore[operator]
            if decreased < self.current_bps:  # never increase on over-use
                new = decreased
            if thr < self.current_bps:
                self.last_decrease_bps = 0.0 if new is None else self.current_bps - new
            if thr < self.link_capacity.lower_bound_bps():
                self.link_capacity.reset()  # far below the capacity seen: start afresh
            self.link_capacity.on_overuse_detected(thr)
            self.state = RateControlState.HOLD  # stay on hold until the pipes are cleared
            self.time_last_change_s = now_s
            self.time_last_decrease_s = now_s
        self.current_bps = max(new if new is not None else self.current_bps, self.min_bps)
        return self.current_bps
