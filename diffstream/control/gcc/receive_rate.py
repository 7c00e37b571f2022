"""The received bitrate ``R_hat`` the delay-based controller backs off to and caps its
increases with (draft-ietf-rmcat-gcc-02 section 5.5: "the incoming bitrate measured over a
T seconds window", T between 0.5 and 1 s).

Deviation: libwebrtc measures it with a Bayesian ``BitrateEstimator`` over 150-500 ms
windows of per-packet feedback. Here each report is one sample (a frame's delivered bytes
at its last arrival), and the rate is the bytes after the window's oldest arrival over the
time from it to the newest: with frame-level samples a fixed T would count 5 or 6 frames of
a 10 fps stream depending on phase, a 20 % jitter; the span does not.
"""

from __future__ import annotations

import bisect

RATE_WINDOW_S = 0.5
"""The draft's T (section 5.5): 0.5 s, the short end of its 0.5-1 s range."""


class ReceiveRate:
    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self._samples: list[tuple[float, int]] = []  # (arrival_s, bytes), by arrival

    def add(self, arrival_s: float, delivered_bytes: int) -> None:
        bisect.insort(self._samples, (arrival_s, delivered_bytes))
        newest = self._samples[-1][0]
        cut = bisect.bisect_left(self._samples, (newest - self.window_s, -1))
        # keep one sample older than the window: the span starts at it
        del self._samples[:max(0, cut - 1)]

    def rate_bps(self) -> float | None:
        """Bits/s over the window; None until two samples span a positive time."""
        s = self._samples
        if len(s) < 2:
            return None
        span = s[-1][0] - s[0][0]
        if span <= 0:
            return None
        return sum(b for _, b in s[1:]) * 8.0 / span
