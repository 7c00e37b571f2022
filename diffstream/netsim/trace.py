"""Link capacity over time as a mahimahi-style schedule of delivery opportunities.

Every trace format (mahimahi, Pensieve, Sabre, CSV, synthetic) is converted to one
representation: a sorted list of millisecond timestamps, each one an opportunity to deliver
``bytes_per_opportunity`` bytes, repeating with period ``period_ms``. One representation
means one link model and capacity that is exact by construction (a count of opportunities),
not an approximation re-derived per format.

Wrap semantics follow mahimahi's ``LinkQueue``: opportunity ``i`` of loop ``k`` is at
``k * period_ms + opportunities_ms[i]``. For a mahimahi file the period is its last line,
so a file that starts with ``0`` and ends with ``140000`` has *two* opportunities at
140000 ms (the last of loop 0 and the first of loop 1). We keep that faithfully.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

MTU_BYTES = 1500.0
# A send time is converted to ms as ``t_s * 1000``; that product is not always the exact
# float of the ms value (0.001 * 3 != 0.003 exactly). Times within this many ms *after* an
# opportunity count as "at" it, so a packet sent at an opportunity's own time can use it.
TIME_EPS_MS = 1e-6
# Opportunity counts are ceil(bytes / bytes_per_opportunity); shave this off first so a
# ratio like 3.0000000000000004 is 3 opportunities, not 4 (the link's rule, netsim.link).
COUNT_EPS = 1e-9


@dataclass(frozen=True)
class PeriodLatency:
    """Per-period one-way latency carried by Sabre traces (capacity ignores it).

    Kept next to the trace, not inside the link, because only some formats have it; a
    scenario may choose to use it as the link's propagation delay.
    """

    start_ms: np.ndarray  # float64, sorted, first is 0: start of each period
    latency_ms: np.ndarray  # float64, latency during that period
    period_ms: float

    def at(self, t_s: float) -> float:
        """Latency (ms) in force at ``t_s``, looping with the trace period."""
        m = math.fmod(t_s * 1000.0, self.period_ms)
        if m < 0:
            m += self.period_ms
        j = int(np.searchsorted(self.start_ms, m, side="right")) - 1
        return float(self.latency_ms[max(j, 0)])

    def shifted(self, offset_ms: float) -> PeriodLatency:
        """The same schedule read from ``offset_ms`` on (wrapping)."""
        o = math.fmod(offset_ms, self.period_ms)
        starts = np.mod(self.start_ms - o, self.period_ms)
        first = self.at(o / 1000.0)
        keep = starts > 0
        starts = np.concatenate([[0.0], starts[keep]])
        lats = np.concatenate([[first], self.latency_ms[keep]])
        order = np.argsort(starts, kind="stable")
        return PeriodLatency(starts[order], lats[order], self.period_ms)


@dataclass(frozen=True, eq=False)  # eq=False: generated __eq__ cannot compare ndarrays
class Trace:
    """A looping schedule of delivery opportunities (see the module docstring)."""

    opportunities_ms: np.ndarray
    period_ms: float
    bytes_per_opportunity: float = MTU_BYTES
    name: str = ""
    source: str = ""
    latency: PeriodLatency | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        opp = np.asarray(self.opportunities_ms, dtype=np.float64)
        if opp.flags.writeable:  # own a read-only copy: traces are shared between links
            opp = opp.copy()
            opp.setflags(write=False)
        object.__setattr__(self, "opportunities_ms", opp)
        if opp.ndim != 1 or opp.size == 0:
            raise ValueError("a trace needs at least one delivery opportunity")
        if not (self.period_ms > 0 and math.isfinite(self.period_ms)):
            raise ValueError(f"period_ms must be a positive number, got {self.period_ms}")
        if not self.bytes_per_opportunity > 0:
            raise ValueError("bytes_per_opportunity must be > 0")
        if opp[0] < 0 or opp[-1] > self.period_ms or np.any(np.diff(opp) < 0):
            raise ValueError("opportunities_ms must be sorted and within [0, period_ms]")

    # ----------------------------------------------------------------- summary numbers
    @property
    def n(self) -> int:
        """Opportunities per period."""
        return int(self.opportunities_ms.size)

    @property
    def duration_s(self) -> float:
        return self.period_ms / 1000.0

    @property
    def mean_bps(self) -> float:
        """Mean capacity over one period (bits/s)."""
        return self.n * self.bytes_per_opportunity * 8.0 / self.duration_s

    def __repr__(self) -> str:
        return (
            f"Trace(name={self.name!r}, n={self.n}, period_ms={self.period_ms:g}, "
            f"bytes_per_opportunity={self.bytes_per_opportunity:g}, "
            f"mean={self.mean_bps / 1e6:.3f} Mbit/s)"
        )

    # ----------------------------------------------------------------- derived traces
    def scaled(self, factor: float) -> Trace:
        """Capacity times ``factor`` (a stream's link share); timing is unchanged.

        Scaling bytes per opportunity instead of thinning opportunities keeps the fluid
        capacity exact for any factor, at the price of fractional bytes per opportunity.
        """
        if not factor > 0:
            raise ValueError(f"scale factor must be > 0, got {factor}")
        return replace(
            self,
            bytes_per_opportunity=self.bytes_per_opportunity * factor,
            name=f"{self.name}x{factor:g}" if self.name else "",
        )

    def shifted(self, offset_s: float) -> Trace:
        """The trace as seen starting ``offset_s`` into it (wrapping); it still loops.

        The new schedule is the set of global opportunity times in
        ``[offset, offset + period)`` moved to start at 0, so every later loop matches too.
        """
        p = self.period_ms
        o = math.fmod(offset_s * 1000.0, p)
        if o < 0:
            o += p
        if o == 0:
            return self
        opp = self.opportunities_ms
        late = opp[opp >= o] - o
        early = opp[opp < o] + (p - o)
        latency = self.latency.shifted(o) if self.latency is not None else None
        return replace(
            self,
            opportunities_ms=np.concatenate([late, early]),
            name=f"{self.name}+{offset_s:g}s" if self.name else "",
            latency=latency,
        )

    # ----------------------------------------------------------------- time <-> index
    def opportunity_time_s(self, i: int | np.ndarray) -> float | np.ndarray:
        """Global (unwrapped) opportunity index -> absolute time in seconds."""
        k, j = np.divmod(i, self.n)
        t = (k * self.period_ms + self.opportunities_ms[j]) / 1000.0
        return float(t) if np.ndim(t) == 0 else t

    def _count_before_ms(self, t_ms: float | np.ndarray) -> np.ndarray:
        """Number of global opportunities strictly before ``t_ms`` (vectorised).

        Equals the global index of the first opportunity at or after ``t_ms``. Clamped at
        0: the formula would otherwise count a fictitious loop -1 whose last opportunity
        (at ``period_ms``) lands on time 0.
        """
        t = np.asarray(t_ms, dtype=np.float64) - TIME_EPS_MS
        k = np.floor(t / self.period_ms)
        r = t - k * self.period_ms
        j = np.searchsorted(self.opportunities_ms, r, side="right")
        return np.maximum(k.astype(np.int64) * self.n + j, 0)

    # Scalar twins of the two methods above, for the network-only fast path
    # (``sim.fastpath``): one frame's handful of packets costs less in plain floats than in
    # numpy calls. Same operations in the same order, so the same IEEE results.
    @cached_property
    def _opp_list(self) -> list[float]:
        return self.opportunities_ms.tolist()

    def count_before_ms(self, t_ms: float) -> int:
        """``_count_before_ms`` for one time (an int)."""
        t = float(t_ms) - TIME_EPS_MS
        opp = self._opp_list
        k = math.floor(t / self.period_ms)
        r = t - k * self.period_ms
        return max(k * len(opp) + bisect.bisect_right(opp, r), 0)

    def opportunity_times_s(self, idx: list[int]) -> list[float]:
        """``opportunity_time_s`` for a list of global indices (a list of floats)."""
        p, opp = self.period_ms, self._opp_list
        n = len(opp)
        out = []
        for i in idx:
            k, j = divmod(i, n)
            out.append((k * p + opp[j]) / 1000.0)
        return out

    def first_opportunity_at_or_after(self, t_s: float) -> int:
        """Global index of the first opportunity with time >= ``t_s``."""
        if t_s < 0:
            raise ValueError(f"time must be >= 0, got {t_s}")
        return int(self._count_before_ms(t_s * 1000.0))

    # ----------------------------------------------------------------- capacity
    def capacity_bytes(self, t0_s: float, t1_s: float) -> float:
        """Bytes of the opportunities with ``t0 <= time < t1`` (looping), O(log n)."""
        if t1_s <= t0_s:
            return 0.0
        c = self._count_before_ms(np.array([t0_s, t1_s]) * 1000.0)
        return float(c[1] - c[0]) * self.bytes_per_opportunity

    def finish_s(self, t0_s: float | np.ndarray, nbytes: float | np.ndarray
                 ) -> float | np.ndarray:
        """When the link, busy from ``t0_s`` on, has carried ``nbytes``: the time of the
        opportunity that completes them (``t0_s`` itself for ``nbytes <= 0``). The inverse
        of ``capacity_bytes``: the least ``t`` with ``capacity_bytes(t0, t + 1 ms) >= nbytes``
        (opportunities are whole milliseconds). Vectorised, O(log n) per element."""
        t0 = np.asarray(t0_s, dtype=np.float64)
        need = np.asarray(nbytes, dtype=np.float64)
        first = self._count_before_ms(t0 * 1000.0)
        m = np.maximum(np.ceil(need / self.bytes_per_opportunity - COUNT_EPS), 0).astype(np.int64)
        done = np.asarray(self.opportunity_time_s(first + np.maximum(m - 1, 0)), dtype=np.float64)
        out = np.where(m > 0, np.maximum(done, t0), t0)
        return float(out) if out.ndim == 0 else out

    def capacity_bps(self, t0_s: float, t1_s: float) -> float:
        """Mean capacity over ``[t0, t1)`` in bits/s."""
        if t1_s <= t0_s:
            raise ValueError("capacity_bps needs t1_s > t0_s")
        return self.capacity_bytes(t0_s, t1_s) * 8.0 / (t1_s - t0_s)

    def rate_series(self, bin_s: float, until_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(bin start times, capacity in bits/s per bin) over ``[0, until_s)``."""
        if not (bin_s > 0 and until_s > 0):
            raise ValueError("bin_s and until_s must be > 0")
        n_bins = math.ceil(until_s / bin_s - 1e-9)
        edges = np.arange(n_bins + 1, dtype=np.float64) * bin_s
        counts = np.diff(self._count_before_ms(edges * 1000.0))
        return edges[:-1], counts * self.bytes_per_opportunity * 8.0 / bin_s


def trace_from_rates(
    starts_s: np.ndarray,
    rates_bps: np.ndarray,
    end_s: float,
    *,
    name: str = "",
    source: str = "",
    latency: PeriodLatency | None = None,
) -> Trace:
    """Convert a piecewise-constant rate to 1500-byte opportunities (mahimahi convention).

    Rate ``rates_bps[j]`` holds on ``[starts_s[j], starts_s[j+1])`` (the last until
    ``end_s``); time 0 of the trace is ``starts_s[0]``. Opportunity k (k = 1, 2, ...) falls
    at the first whole millisecond at which the cumulative bytes reach ``k * 1500``, so the
    opportunities carry the integral to within one opportunity. The period is the duration
    rounded up to a whole millisecond, so every (whole-ms) opportunity lies inside it.
    Raises ValueError when the whole trace carries less than one opportunity.
    """
    starts = np.asarray(starts_s, dtype=np.float64)
    rates = np.asarray(rates_bps, dtype=np.float64)
    if starts.size == 0 or starts.shape != rates.shape:
        raise ValueError("need one rate per start time, at least one")
    if np.any(np.diff(starts) <= 0) or end_s <= starts[-1]:
        raise ValueError("start times must increase and end after the last start")
    if np.any(rates < 0) or not np.all(np.isfinite(rates)):
        raise ValueError("rates must be finite and >= 0")
    t_ms = np.append(starts, end_s) * 1000.0 - starts[0] * 1000.0
    seg_bytes = rates / 8000.0 * np.diff(t_ms)  # bytes per ms * ms
    cum = np.concatenate([[0.0], np.cumsum(seg_bytes)])
    total = float(cum[-1])
    n = math.floor(total / MTU_BYTES + 1e-9)
    if n < 1:
        raise ValueError(
            f"the trace carries {total:.0f} bytes in total, less than one "
            f"{MTU_BYTES:.0f}-byte packet: zero capacity"
        )
    # min(): float round-off must not push the last target past the total
    targets = np.minimum(np.arange(1, n + 1, dtype=np.float64) * MTU_BYTES, total)
    seg = np.searchsorted(cum, targets - 1e-9, side="left") - 1
    seg = np.clip(seg, 0, rates.size - 1)
    cross_ms = t_ms[seg] + (targets - cum[seg]) / (rates[seg] / 8000.0)
    period_ms = float(math.ceil(t_ms[-1] - 1e-6))
    opp = np.minimum(np.ceil(cross_ms - 1e-6), period_ms)
    return Trace(
        np.maximum(opp, 0.0), period_ms, MTU_BYTES, name=name, source=source, latency=latency
    )
