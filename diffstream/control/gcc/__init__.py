"""Google Congestion Control (draft-ietf-rmcat-gcc-02 and libwebrtc's goog_cc), one small
class per component, driven by diffstream's per-frame delivery reports.

- ``inter_arrival.InterArrival``: packets -> send-time groups -> (send delta, arrival delta).
- ``trendline.TrendlineEstimator``: the smoothed accumulated delay's least-squares slope.
- ``overuse.OveruseDetector``: the slope against an adaptive threshold -> ``BandwidthUsage``.
- ``aimd.AimdRateControl`` (with ``LinkCapacityEstimator``): the delay-based rate.
- ``loss_based.LossBasedControl``: the loss-based rate, capped by the delay-based one.
- ``receive_rate.ReceiveRate``: the acknowledged (received) bitrate the AIMD backs off to.
- ``controller.GccController``: the glue (libwebrtc's ``DelayBasedBwe`` plus
  ``SendSideBandwidthEstimation``), fed one ``DeliveryReport`` at a time.

The policy that turns the rate into per-frame budgets is ``control.policies.gcc.GccPolicy``;
docs/policies/gcc.md lists every constant with its source and every deviation.
"""

from diffstream.control.gcc.aimd import AimdRateControl, LinkCapacityEstimator, RateControlState
from diffstream.control.gcc.controller import GccConfig, GccController
from diffstream.control.gcc.inter_arrival import GroupDelta, InterArrival
from diffstream.control.gcc.loss_based import LossBasedControl
from diffstream.control.gcc.overuse import BandwidthUsage, OveruseDetector
from diffstream.control.gcc.receive_rate import ReceiveRate
from diffstream.control.gcc.trendline import TrendlineEstimator

__all__ = [
    "AimdRateControl",
    "BandwidthUsage",
    "GccConfig",
    "GccController",
    "GroupDelta",
    "InterArrival",
    "LinkCapacityEstimator",
    "LossBasedControl",
    "OveruseDetector",
    "RateControlState",
    "ReceiveRate",
    "TrendlineEstimator",
]
