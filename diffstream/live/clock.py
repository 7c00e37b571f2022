"""Clock offset between the two machines without synchronised clocks (NTP's on-wire method).

The receiver probes the sender (PING, and the HELLO that opens every connection) and keeps
four timestamps per exchange, each read on its own machine's monotonic clock:

    t1  receiver sends the probe        t2  sender reads it
    t3  sender sends the answer         t4  receiver reads the answer

With ``theta`` the true offset (sender clock = receiver clock + theta) and clocks that do not
drift during one exchange, causality alone gives ``t2 >= t1 + theta`` and
``t4 >= t3 - theta``, so

    t3 - t4  <=  theta  <=  t2 - t1

an interval of width ``delta = (t4 - t1) - (t3 - t2)`` (the round trip minus the sender's
hold time). Its midpoint ``((t2 - t1) + (t3 - t4)) / 2`` is the estimate, and its error is
at most ``delta / 2`` whatever the path's asymmetry, queueing or processing delay: those only
widen the interval. This is a bound, not a standard deviation.

Like NTP's clock filter, the estimator keeps the recent exchanges and uses the one with the
smallest ``delta`` (the tightest interval). The machines' oscillators drift apart by up to
``drift_ppm`` (a few tens of ppm for ordinary crystals, 100 assumed), so an exchange ``age``
seconds old has its bound widened by ``drift_ppm * 1e-6 * age``, and exchanges older than
``window_s`` are forgotten. On a LAN the bound is typically well under a millisecond; over a
congested or shaped path it is half the smallest RTT seen in the window.

Latency is then ``display (receiver clock + theta) - capture (sender clock)``, with the same
error bound.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class OffsetSample:
    at: float  # t4, receiver clock
    theta: float  # midpoint estimate
    delta: float  # interval width (>= 0)


@dataclass(frozen=True)
class OffsetEstimate:
    theta: float  # sender clock - receiver clock, seconds
    bound: float  # |theta - true offset| <= bound (drift included)
    rtt: float  # round trip of the chosen exchange, seconds
    samples: int


class OffsetEstimator:
    def __init__(self, window_s: float = 60.0, max_samples: int = 256,
                 drift_ppm: float = 100.0) -> None:
        self.window_s = window_s
        self.drift = drift_ppm * 1e-6
        self._samples: deque[OffsetSample] = deque(maxlen=max_samples)
        self._rtts: deque[float] = deque(maxlen=max_samples)

    def add(self, t1: float, t2: float, t3: float, t4: float) -> OffsetSample | None:
        """Record one exchange; returns None (and keeps nothing) when it is inconsistent
        (negative round trip: timestamps from another exchange or a broken clock)."""
        rtt = t4 - t1
        hold = t3 - t2
        delta = rtt - hold
        if rtt < 0 or hold < 0 or delta < 0:
            return None
        s = OffsetSample(at=t4, theta=((t2 - t1) + (t3 - t4)) / 2.0, delta=delta)
        self._samples.append(s)
        self._rtts.append(rtt)
        return s

    def estimate(self, now: float) -> OffsetEstimate | None:
        """The tightest recent exchange (bound widened by drift since it was taken)."""
        while self._samples and now - self._samples[0].at > self.window_s and len(
            self._samples
        ) > 1:
            self._samples.popleft()
            self._rtts.popleft()
        best: tuple[float, OffsetSample, float] | None = None
        for s, rtt in zip(self._samples, self._rtts, strict=True):
            bound = s.delta / 2.0 + self.drift * max(0.0, now - s.at)
            if best is None or bound < best[0]:
                best = (bound, s, rtt)
        if best is None:
            return None
        bound, s, rtt = best
        return OffsetEstimate(theta=s.theta, bound=bound, rtt=rtt, samples=len(self._samples))
