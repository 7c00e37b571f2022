"""The over-use detector and its adaptive threshold (draft-ietf-rmcat-gcc-02 sections 5.4
and 5.6 use the same rules; constants from libwebrtc
``modules/congestion_controller/goog_cc/trendline_estimator.cc``, ``Detect`` and
``UpdateThreshold``, where the detector lives inside the trendline estimator).

The trend is scaled to ``modified_trend = min(num_of_deltas, 60) * trend * gain`` and
compared with a threshold ``gamma`` that follows ``|modified_trend|``: slowly up
(``K_UP``), faster down (``K_DOWN``), per ms of arrival time (at most 100 ms a step), not at
all on spikes more than 15 ms above it, clamped to [6, 600]. Above ``gamma`` for more than
10 ms (and at least two samples in a row, with a non-decreasing trend): over-use. Below
``-gamma``: under-use. Otherwise normal.

A note on frame-level groups: one group per frame puts 1/fps between updates, and
``K_DOWN * min(dt, 100 ms)`` exceeds 1 from 26 ms on (``0.039 * 26``), so a step down
overshoots ``|modified_trend|`` and lands on the 6 ms floor. libwebrtc does the same for a
30 fps stream at low rates (one group per frame there too); the rule is kept as written.
"""

from __future__ import annotations

import math
from enum import Enum


class BandwidthUsage(Enum):
    NORMAL = "normal"
    UNDERUSING = "underusing"
    OVERUSING = "overusing"


THRESHOLD_GAIN = 4.0
"""``kDefaultTrendlineThresholdGain`` (trendline_estimator.cc)."""

MIN_NUM_DELTAS = 60
"""``kMinNumDeltas`` (trendline_estimator.cc): the trend's scale grows with the number of
deltas seen, up to this many."""

OVERUSING_TIME_THRESHOLD_MS = 10.0
"""``kOverUsingTimeThreshold`` (trendline_estimator.cc); the draft's ``overuse_time_th``
(section 5.4) of 10 ms."""

INITIAL_THRESHOLD_MS = 12.5
"""``threshold_(12.5)`` (TrendlineEstimator's constructor); the draft's initial
``del_var_th`` of 12.5 ms (section 5.4)."""

K_UP = 0.0087
"""``k_up_(0.0087)`` (TrendlineEstimator's constructor): threshold gain per ms going up."""

K_DOWN = 0.039
"""``k_down_(0.039)`` (TrendlineEstimator's constructor): threshold gain per ms going down."""

MAX_ADAPT_OFFSET_MS = 15.0
"""``kMaxAdaptOffsetMs`` (trendline_estimator.cc): no adaptation on a spike more than this
above the threshold (e.g. a sudden capacity drop); the draft's 15 ms (section 5.4)."""

MAX_TIME_DELTA_MS = 100.0
"""``kMaxTimeDeltaMs = 100`` (``UpdateThreshold``): one adaptation step spans at most this."""

THRESHOLD_RANGE_MS = (6.0, 600.0)
"""``SafeClamp(threshold_, 6.f, 600.f)`` (``UpdateThreshold``); the draft's [6, 600] ms."""


class OveruseDetector:
    def __init__(self, threshold_gain: float = THRESHOLD_GAIN) -> None:
        self.threshold_gain = threshold_gain
        self.threshold = INITIAL_THRESHOLD_MS
        self.state = BandwidthUsage.NORMAL
        self.modified_trend = math.nan
        self._time_over_using = -1.0
        self._overuse_counter = 0
        self._prev_trend = 0.0
        self._last_update_ms: float | None = None

    def detect(self, trend: float, num_of_deltas: int, send_delta_ms: float,
               now_ms: float) -> BandwidthUsage:
        """One detection step after a trendline update (``Detect``)."""
        if num_of_deltas < 2:
            self.state = BandwidthUsage.NORMAL
            return self.state
        modified = min(num_of_deltas, MIN_NUM_DELTAS) * trend * self.threshold_gain
        self.modified_trend = modified
        if modified > self.threshold:
            if self._time_over_using == -1:
                # assume over-use began half-way since the previous sample
                self._time_over_using = send_delta_ms / 2
            else:
                self._time_over_using += send_delta_ms
            self._overuse_counter += 1
            if (self._time_over_using > OVERUSING_TIME_THRESHOLD_MS
                    and self._overuse_counter > 1 and trend >= self._prev_trend):
                self._time_over_using = 0.0
                self._overuse_counter = 0
                self.state = BandwidthUsage.OVERUSING
        elif modified < -self.threshold:
            self._time_over_using = -1
            self._overuse_counter = 0
            self.state = BandwidthUsage.UNDERUSING
        else:
            self._time_over_using = -1
            self._overuse_counter = 0
            self.state = BandwidthUsage.NORMAL
        self._prev_trend = trend
        self.update_threshold(modified, now_ms)
        return self.state

    def update_threshold(self, modified_trend: float, now_ms: float) -> None:
        """The adaptive threshold (``UpdateThreshold``)."""
        if self._last_update_ms is None:
            self._last_update_ms = now_ms
        if abs(modified_trend) > self.threshold + MAX_ADAPT_OFFSET_MS:
            self._last_update_ms = now_ms  # a latency spike: do not adapt to it
            return
        k = K_DOWN if abs(modified_trend) < self.threshold else K_UP
        dt = min(now_ms - self._last_update_ms, MAX_TIME_DELTA_MS)
        self.threshold += k * (abs(modified_trend) - self.threshold) * dt
        lo, hi = THRESHOLD_RANGE_MS
        self.threshold = min(hi, max(lo, self.threshold))
        self._last_update_ms = now_ms
