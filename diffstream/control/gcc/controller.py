"""GCC's glue: one ``DeliveryReport`` at a time through the delay-based chain (libwebrtc
``DelayBasedBwe``: inter-arrival -> trendline -> detector -> AIMD) and the loss-based
controller (``SendSideBandwidthEstimation``), whose target, capped by the delay-based
estimate, is the sending rate.

Per report (``on_report``, in the order the reports reach the sender):

1. RTT = now - the frame's send time (the RTT of its last packet), for both controllers.
2. A frame that arrived: its bytes go to the received-rate window, and (send time, last
   arrival, delivered bytes) to the inter-arrival grouping. A completed group updates the
   trendline and the detector. Then the delay-based estimate is updated (over-use: only when
   ``TimeToReduceFurther``; without a received rate yet, halve at most once per RTT).
3. The frame's packets and missing packets go to the loss counters, and the loss rule runs.

A stream silent for 2 s (no arrival reported) resets the grouping and the filters
(``kStreamTimeOut``, delay_based_bwe.cc).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from diffstream.control.feedback import DeliveryReport
from diffstream.control.gcc.aimd import BACKOFF_FACTOR, AimdRateControl
from diffstream.control.gcc.inter_arrival import InterArrival
from diffstream.control.gcc.loss_based import (
    HIGH_LOSS_THRESHOLD,
    LOW_LOSS_THRESHOLD,
    LossBasedControl,
)
from diffstream.control.gcc.overuse import THRESHOLD_GAIN, BandwidthUsage, OveruseDetector
from diffstream.control.gcc.receive_rate import RATE_WINDOW_S, ReceiveRate
from diffstream.control.gcc.trendline import SMOOTHING_COEF, WINDOW_SIZE, TrendlineEstimator

STREAM_TIMEOUT_S = 2.0
"""``kStreamTimeOut`` (delay_based_bwe.cc): reset the delay filters after this silence."""

MIN_RATE_BPS = 5000.0
"""``kCongestionControllerMinBitrate`` (5 kbit/s; bwe_defines.h): the default floor."""


@dataclass(frozen=True)
class GccConfig:
    start_bps: float
    min_bps: float = MIN_RATE_BPS
    max_bps: float = math.inf
    backoff_factor: float = BACKOFF_FACTOR
    window_size: int = WINDOW_SIZE
    smoothing_coef: float = SMOOTHING_COEF
    threshold_gain: float = THRESHOLD_GAIN
    low_loss: float = LOW_LOSS_THRESHOLD
    high_loss: float = HIGH_LOSS_THRESHOLD
    rate_window_s: float = RATE_WINDOW_S


class GccController:
    def __init__(self, cfg: GccConfig) -> None:
        self.cfg = cfg
        start = min(max(cfg.start_bps, cfg.min_bps), cfg.max_bps)
        self.aimd = AimdRateControl(start, cfg.min_bps, cfg.backoff_factor)
        self.loss = LossBasedControl(start, cfg.min_bps, cfg.max_bps, cfg.low_loss,
                                     cfg.high_loss)
        self.receive_rate = ReceiveRate(cfg.rate_window_s)
        self._reset_delay_filters()
        self._last_seen_s: float | None = None
        self.reports = 0

    def _reset_delay_filters(self) -> None:
        self.inter_arrival = InterArrival()
        self.trendline = TrendlineEstimator(self.cfg.window_size, self.cfg.smoothing_coef)
        self.detector = OveruseDetector(self.cfg.threshold_gain)

    @property
    def usage(self) -> BandwidthUsage:
        return self.detector.state

    @property
    def delay_based_bps(self) -> float:
        return self.aimd.current_bps

    @property
    def target_bps(self) -> float:
        """The sending rate: the loss-based target, which is capped by the delay-based one."""
        rate = min(self.loss.target_bps, self.aimd.current_bps, self.cfg.max_bps)
        return max(rate, self.cfg.min_bps)

    def on_report(self, report: DeliveryReport, now_s: float) -> None:
        self.reports += 1
        arrived = report.last_arrival_s is not None and report.delivered_bytes > 0
        if arrived:
            rtt = now_s - report.send_s
            self.aimd.set_rtt(rtt)
            self.loss.update_rtt(rtt)
            self._delay_based(report, now_s)
        self.loss.update_packets_lost(report.packets_missing, report.packets, now_s)
        self.loss.update_estimate(now_s)

    def _delay_based(self, report: DeliveryReport, now_s: float) -> None:
        assert report.last_arrival_s is not None
        if self._last_seen_s is not None and now_s - self._last_seen_s > STREAM_TIMEOUT_S:
            self._reset_delay_filters()
        self._last_seen_s = now_s
        self.receive_rate.add(report.last_arrival_s, report.delivered_bytes)
        delta = self.inter_arrival.add(report.send_s, report.last_arrival_s, now_s,
                                       report.delivered_bytes)
        if delta is not None:
            trend = self.trendline.update(delta.arrival_delta_s * 1000,
                                          delta.send_delta_s * 1000,
                                          report.last_arrival_s * 1000)
            self.detector.detect(trend, self.trendline.num_of_deltas,
                                 delta.send_delta_s * 1000, report.last_arrival_s * 1000)
        acked = self.receive_rate.rate_bps()
        aimd = self.aimd
        if self.detector.state is BandwidthUsage.OVERUSING:
            if acked is not None:
                if aimd.time_to_reduce_further(now_s, acked):
                    aimd.update(BandwidthUsage.OVERUSING, acked, now_s)
            elif aimd.initial_time_to_reduce_further(now_s):
                aimd.set_estimate(aimd.current_bps / 2, now_s)  # no rate yet: halve
        else:
            aimd.update(self.detector.state, acked, now_s)
        self.loss.update_delay_based(aimd.current_bps, now_s)
