"""The trendline filter: the slope of the one-way delay variation (libwebrtc
``modules/congestion_controller/goog_cc/trendline_estimator.cc``, ``UpdateTrendline``).

Each group delta ``d = arrival delta - send delta`` (ms) is accumulated, smoothed
exponentially, and the last ``window_size`` (arrival time, smoothed delay) points are fitted
by least squares. The slope approximates (send rate - capacity) / capacity: positive while
queues fill, 0 when steady, negative while they drain. libwebrtc's default replaced the
draft's Kalman arrival-time filter (section 5.3) with this estimator; diffstream follows
libwebrtc. Times are in ms, as in libwebrtc, so the thresholds keep their units.
"""

from __future__ import annotations

from collections import deque

WINDOW_SIZE = 20
"""``TrendlineEstimatorSettings::kDefaultTrendlineWindowSize`` (trendline_estimator.h)."""

WINDOW_SIZE_RANGE = (10, 200)
"""Allowed window sizes: ``TrendlineEstimatorSettings`` falls back to the default outside
[10, 200] packets (trendline_estimator.cc)."""

SMOOTHING_COEF = 0.9
"""``kDefaultTrendlineSmoothingCoeff`` (trendline_estimator.cc)."""

DELTA_COUNTER_MAX = 1000
"""``kDeltaCounterMax`` (trendline_estimator.cc): the delta count saturates here."""


def linear_fit_slope(points: deque[tuple[float, float]]) -> float | None:
    """Least-squares slope of y on x (``LinearFitSlope``); None when all x are equal."""
    n = len(points)
    x_avg = sum(p[0] for p in points) / n
    y_avg = sum(p[1] for p in points) / n
    num = sum((x - x_avg) * (y - y_avg) for x, y in points)
    den = sum((x - x_avg) ** 2 for x, _ in points)
    return None if den == 0 else num / den


class TrendlineEstimator:
    def __init__(self, window_size: int = WINDOW_SIZE,
                 smoothing_coef: float = SMOOTHING_COEF) -> None:
        self.window_size = window_size
        self.smoothing_coef = smoothing_coef
        self.num_of_deltas = 0
        self.first_arrival_ms: float | None = None
        self.accumulated_delay_ms = 0.0
        self.smoothed_delay_ms = 0.0
        self.trend = 0.0  # the last fitted slope (kept until the window is full again)
        self._hist: deque[tuple[float, float]] = deque(maxlen=window_size)

    def update(self, recv_delta_ms: float, send_delta_ms: float, arrival_ms: float) -> float:
        """Add one group delta; returns the current trend (slope, ms of delay per ms)."""
        delta_ms = recv_delta_ms - send_delta_ms
        self.num_of_deltas = min(self.num_of_deltas + 1, DELTA_COUNTER_MAX)
        if self.first_arrival_ms is None:
            self.first_arrival_ms = arrival_ms
        self.accumulated_delay_ms += delta_ms
        c = self.smoothing_coef
        self.smoothed_delay_ms = c * self.smoothed_delay_ms + (1 - c) * self.accumulated_delay_ms
        self._hist.append((arrival_ms - self.first_arrival_ms, self.smoothed_delay_ms))
        if len(self._hist) == self.window_size:
            slope = linear_fit_slope(self._hist)
            if slope is not None:
                self.trend = slope
        return self.trend
