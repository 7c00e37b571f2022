"""The loss-based controller (draft-ietf-rmcat-gcc-02 section 6; libwebrtc
``modules/congestion_controller/goog_cc/send_side_bandwidth_estimation.cc``, the classic
path of ``SendSideBandwidthEstimation::UpdateEstimate``, without the v2 loss estimator).

Lost and expected packets are accumulated until at least 20 packets are counted; then the
loss fraction (in 1/256, as RTCP's) is fixed and the rate updated:

- loss <= 2 %: 8 % above the lowest rate of the last second, plus 1 kbit/s;
- 2 % < loss <= 10 %: unchanged;
- loss > 10 %: rate x (1 - loss / 2), at most once per fraction and per 300 ms + RTT.

The rule is re-applied on every update tick (libwebrtc: every process interval; here: every
report) until a loss report is older than 6 s. In the first 2 s after the first report,
with no loss yet, the rate follows the delay-based estimate upwards (start-up probing). The
result is always capped by the delay-based estimate, so the sender's rate is
min(delay-based, loss-based) clamped to [min, max].

Deviations: the draft increases by 5 % (section 6); libwebrtc's 8 % + 1 kbit/s over the last
second's minimum is used. libwebrtc's RTT back-off (``RttBasedBackoff``: cut when the RTT
passes 3 s) is left out: diffstream's deadlines are far below that.
"""

from __future__ import annotations

import math
from collections import deque

LIMIT_NUM_PACKETS = 20
"""``kLimitNumPackets`` (send_side_bandwidth_estimation.cc): no loss fraction from fewer."""

LOW_LOSS_THRESHOLD = 0.02
"""``kDefaultLowLossThreshold`` (send_side_bandwidth_estimation.cc); draft section 6: 2 %."""

HIGH_LOSS_THRESHOLD = 0.1
"""``kDefaultHighLossThreshold`` (send_side_bandwidth_estimation.cc); draft section 6: 10 %."""

INCREASE_FACTOR = 1.08
INCREASE_OFFSET_BPS = 1000.0
"""``min_bitrate_history_.front() * 1.08 + 0.5`` then ``+= 1000 bps`` (``UpdateEstimate``)."""

INCREASE_INTERVAL_S = 1.0
"""``kBweIncreaseInterval`` (send_side_bandwidth_estimation.cc): the min-history window."""

DECREASE_INTERVAL_S = 0.3
"""``kBweDecreaseInterval`` (send_side_bandwidth_estimation.cc): decreases at most once per
this + RTT."""

START_PHASE_S = 2.0
"""``kStartPhase`` (send_side_bandwidth_estimation.cc)."""

MAX_LOSS_REPORT_AGE_S = 1.2 * 5.0
"""``1.2 * kMaxRtcpFeedbackInterval`` (5 s): an older loss fraction is not acted upon."""


class LossBasedControl:
    def __init__(self, start_bps: float, min_bps: float, max_bps: float = math.inf,
                 low_loss: float = LOW_LOSS_THRESHOLD,
                 high_loss: float = HIGH_LOSS_THRESHOLD) -> None:
        self.min_bps, self.max_bps = min_bps, max_bps
        self.low_loss, self.high_loss = low_loss, high_loss
        self.delay_based_limit_bps = math.inf
        self.target_bps = min(max(start_bps, min_bps), max_bps)
        self.fraction_loss_q8 = 0  # the last loss fraction, in 1/256
        self.rtt_s = 0.0
        self._lost = 0
        self._expected = 0
        self._first_report_s: float | None = None
        self._last_loss_report_s: float | None = None
        self._time_last_decrease_s = -math.inf
        self._decreased_since_fraction = False
        self._min_history: deque[tuple[float, float]] = deque()  # (time, rate), increasing

    @property
    def loss_fraction(self) -> float:
        return self.fraction_loss_q8 / 256.0

    def update_rtt(self, rtt_s: float) -> None:
        if rtt_s > 0:
            self.rtt_s = rtt_s

    def update_delay_based(self, bps: float, now_s: float) -> None:
        """A new delay-based estimate: it caps this controller's rate
        (``UpdateDelayBasedEstimate`` -> ``ApplyTargetLimits``)."""
        self.delay_based_limit_bps = bps
        self._set_target(self.target_bps)

    def update_packets_lost(self, lost: int, expected: int, now_s: float) -> None:
        """One report's packet counts (``UpdatePacketsLost``)."""
        if self._first_report_s is None:
            self._first_report_s = now_s
        if expected <= 0:
            return
        self._lost += lost
        self._expected += expected
        if self._expected < LIMIT_NUM_PACKETS:
            return
        self._decreased_since_fraction = False
        self.fraction_loss_q8 = min((self._lost << 8) // self._expected, 255)
        self._lost = self._expected = 0
        self._last_loss_report_s = now_s
        self.update_estimate(now_s)

    def in_start_phase(self, now_s: float) -> bool:
        return self._first_report_s is None or now_s - self._first_report_s < START_PHASE_S

    def update_estimate(self, now_s: float) -> None:
        """Apply the loss rule (``UpdateEstimate``); called per report and per new fraction."""
        if self.fraction_loss_q8 == 0 and self.in_start_phase(now_s):
            new = self.target_bps
            if math.isfinite(self.delay_based_limit_bps):
                new = max(self.delay_based_limit_bps, new)
            if new != self.target_bps:
                self._min_history.clear()
                self._min_history.append((now_s, self.target_bps))
                self._set_target(new)
                return
        self._update_min_history(now_s)
        if self._last_loss_report_s is None or (
                now_s - self._last_loss_report_s >= MAX_LOSS_REPORT_AGE_S):
            self._set_target(self.target_bps)
            return
        loss = self.loss_fraction
        if loss <= self.low_loss:
            base = self._min_history[0][1]
            self._set_target(math.floor(base * INCREASE_FACTOR + 0.5) + INCREASE_OFFSET_BPS)
            return
        if (loss > self.high_loss and not self._decreased_since_fraction
                and now_s - self._time_last_decrease_s >= DECREASE_INTERVAL_S + self.rtt_s):
            self._time_last_decrease_s = now_s
            self._decreased_since_fraction = True
            self._set_target(self.target_bps * (512 - self.fraction_loss_q8) / 512.0)
            return
        self._set_target(self.target_bps)  # 2-10 % loss: hold

    def _update_min_history(self, now_s: float) -> None:
        hist = self._min_history
        # libwebrtc adds 1 ms so that a rate 0.5 ms short of a second old still leaves
        while hist and now_s - hist[0][0] + 0.001 > INCREASE_INTERVAL_S:
            hist.popleft()
        while hist and self.target_bps <= hist[-1][1]:
            hist.pop()
        hist.append((now_s, self.target_bps))

    def _set_target(self, bps: float) -> None:
        """``UpdateTargetBitrate``: capped by the delay-based estimate and max, >= min."""
        bps = min(bps, self.delay_based_limit_bps, self.max_bps)
        self.target_bps = max(bps, self.min_bps)
