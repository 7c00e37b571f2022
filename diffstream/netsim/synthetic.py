"""Synthetic traces: constant, steps, and a seeded Markov-modulated cellular link.

The project must run without the real traces in ``../shared``, so it generates its own.

Markov-modulated cellular model (``markov_cellular``, parameters ``LTE_LIKE``)
------------------------------------------------------------------------------
A continuous-time Markov chain over five radio states. The chain stays in state ``i`` for an
exponential time with mean ``mean_dwell_s[i]``, then jumps according to row ``i`` of the
jump matrix (zero diagonal). The first state is drawn from the stationary distribution, so
a trace has no start-up transient.

========  ==========  ============  ===============================================
state     mean Mbit/s  mean dwell s  jump probabilities to E / G / F / P / O
========  ==========  ============  ===============================================
excellent     12.0         6.0       0    .70  .20  .07  .03
good           6.0         8.0       .30  0    .50  .15  .05
fair           3.0         6.0       .10  .50  0    .30  .10
poor           1.2         4.0       .05  .25  .45  0    .25
outage         0.0         1.5       .05  .25  .35  .35  0
========  ==========  ============  ===============================================

Within a state the rate is ``mean * exp(sigma * z - sigma**2 / 2)``: ``z`` is a stationary
AR(1) process sampled every 100 ms with lag-one correlation ``rho = 0.9`` (a correlation
time of about 1 s) and ``sigma = 0.35`` (the factor has mean 1 and a CV of about 0.36). The
noise runs continuously across state changes; an outage is 0 whatever the noise.

Resulting statistics.

- Stationary (exact, from the parameters): time in each state E/G/F/P/O =
  13.8 / 42.0 / 29.9 / 12.0 / 2.4 %, mean rate 5.21 Mbit/s, outage fraction 2.37 %, mean
  outage length 1.5 s (the outage dwell mean), about one outage per 63 s.
- Measured over 2000 s draws, seeds 0-19 (median, [min, max]):
  state path: outage fraction 2.2 % [1.1, 3.4], mean outage 1.6 s [1.0, 2.0];
  generated opportunities, by :func:`trace_stats`: mean 5.24 Mbit/s [4.80, 5.71],
  coefficient of variation of 1 s capacity 0.69 [0.66, 0.75], outages seen as gaps
  >= 0.5 s between opportunities: 2.1 % [1.0, 3.3] of the time, mean 1.9 s [1.4, 2.5]
  (longer than the dwell mean because gaps under 0.5 s are not counted: for an
  exponential dwell the mean of the counted ones is 0.5 + 1.5 = 2.0 s).

Everything is seeded with ``numpy.random.Generator(PCG64(seed))``: same seed, same trace.

Command line (writes a mahimahi file and prints its statistics)::

    python -m diffstream.netsim.synthetic markov --seed 7 --duration 300 --out x.down
    python -m diffstream.netsim.synthetic constant --mbps 5 --duration 60 --out c.down
    python -m diffstream.netsim.synthetic steps --steps 0:5,10:1,20:8 --duration 30 --out s.down
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffstream.netsim.trace import MTU_BYTES, Trace, trace_from_rates


# --------------------------------------------------------------------------- simple shapes
def constant(mbps: float, duration_s: float) -> Trace:
    """A constant-rate link of ``mbps`` Mbit/s lasting ``duration_s`` (then looping)."""
    return steps([(0.0, mbps)], duration_s)


def steps(steps: list[tuple[float, float]], duration_s: float) -> Trace:
    """Piecewise-constant rate: ``(t_s, mbps)`` holds from ``t_s`` to the next step.

    The first step must start at 0 and the last holds until ``duration_s``.
    """
    if not steps or steps[0][0] != 0:
        raise ValueError("steps must start with a step at t=0")
    t = np.array([s[0] for s in steps], dtype=np.float64)
    r = np.array([s[1] for s in steps], dtype=np.float64) * 1e6
    desc = ",".join(f"{a:g}:{b:g}" for a, b in steps)
    if len(steps) == 1:
        name, source = f"constant_{steps[0][1]:g}mbps", f"constant({steps[0][1]:g} Mbit/s)"
    else:
        name, source = "steps", f"steps({desc})"
    return trace_from_rates(t, r, duration_s, name=name, source=f"{source}, {duration_s:g} s")


# --------------------------------------------------------------------------- Markov model
@dataclass(frozen=True)
class MarkovParams:
    """States, their mean rates and dwell times, the jump matrix and the noise."""

    names: tuple[str, ...]
    mean_mbps: tuple[float, ...]
    mean_dwell_s: tuple[float, ...]
    jump: tuple[tuple[float, ...], ...]  # embedded jump chain: rows sum to 1, zero diagonal
    noise_sigma: float = 0.35
    noise_rho: float = 0.9
    noise_step_s: float = 0.1

    def __post_init__(self) -> None:
        k = len(self.names)
        if not (len(self.mean_mbps) == len(self.mean_dwell_s) == len(self.jump) == k) or k < 2:
            raise ValueError("names, mean_mbps, mean_dwell_s, jump need one entry per state")
        p = np.array(self.jump, dtype=np.float64)
        if p.shape != (k, k) or np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0):
            raise ValueError("jump must be a square matrix of probabilities with rows summing to 1")
        if np.any(np.diag(p) != 0):
            raise ValueError("jump must have a zero diagonal (dwell times model staying)")
        if min(self.mean_dwell_s) <= 0 or min(self.mean_mbps) < 0:
            raise ValueError("dwell times must be > 0 and rates >= 0")
        if not (0 <= self.noise_rho < 1 and self.noise_sigma >= 0 and self.noise_step_s > 0):
            raise ValueError("need 0 <= noise_rho < 1, noise_sigma >= 0, noise_step_s > 0")

    def stationary(self) -> np.ndarray:
        """Long-run fraction of time in each state (jump-chain stationary x dwell)."""
        p = np.array(self.jump, dtype=np.float64)
        k = p.shape[0]
        a = np.vstack([p.T - np.eye(k), np.ones(k)])
        b = np.zeros(k + 1)
        b[-1] = 1.0
        nu = np.linalg.lstsq(a, b, rcond=None)[0]
        pi = nu * np.array(self.mean_dwell_s)
        return pi / pi.sum()

    def stationary_mean_mbps(self) -> float:
        return float(self.stationary() @ np.array(self.mean_mbps))


LTE_LIKE = MarkovParams(
    names=("excellent", "good", "fair", "poor", "outage"),
    mean_mbps=(12.0, 6.0, 3.0, 1.2, 0.0),
    mean_dwell_s=(6.0, 8.0, 6.0, 4.0, 1.5),
    jump=(
        (0.0, 0.70, 0.20, 0.07, 0.03),
        (0.30, 0.0, 0.50, 0.15, 0.05),
        (0.10, 0.50, 0.0, 0.30, 0.10),
        (0.05, 0.25, 0.45, 0.0, 0.25),
        (0.05, 0.25, 0.35, 0.35, 0.0),
    ),
)


@dataclass(frozen=True)
class MarkovPath:
    """The sampled state path and the piecewise-constant rate it produces."""

    change_s: np.ndarray  # start time of each state visit (first is 0)
    states: np.ndarray  # state index of each visit
    starts_s: np.ndarray  # rate segment starts (state changes and noise ticks)
    rates_bps: np.ndarray  # rate on each segment
    duration_s: float

    @property
    def visit_durations_s(self) -> np.ndarray:
        """How long each state visit lasted (the last one cut at ``duration_s``)."""
        return np.diff(np.append(self.change_s, self.duration_s))


def _state_path(
    rng: np.random.Generator, duration_s: float, params: MarkovParams
) -> tuple[np.ndarray, np.ndarray]:
    pi = params.stationary()
    jump = np.array(params.jump)
    k = len(params.names)
    s = int(rng.choice(k, p=pi))
    t = 0.0
    times, states = [], []
    while t < duration_s:
        times.append(t)
        states.append(s)
        t += rng.exponential(params.mean_dwell_s[s])
        s = int(rng.choice(k, p=jump[s]))
    return np.array(times), np.array(states, dtype=np.int64)


def _ar1_factor(rng: np.random.Generator, n: int, params: MarkovParams) -> np.ndarray:
    """Mean-one lognormal factors from a stationary AR(1) in log space."""
    e = rng.standard_normal(n)
    z = np.empty(n)
    z[0] = e[0]
    rho, scale = params.noise_rho, math.sqrt(1.0 - params.noise_rho**2)
    for i in range(1, n):
        z[i] = rho * z[i - 1] + scale * e[i]
    sigma = params.noise_sigma
    return np.exp(sigma * z - sigma**2 / 2.0)


def markov_path(seed: int, duration_s: float, params: MarkovParams = LTE_LIKE) -> MarkovPath:
    """Sample the state path and the rate (states first, then noise, from one PCG64)."""
    if not duration_s > 0:
        raise ValueError("duration_s must be > 0")
    rng = np.random.Generator(np.random.PCG64(seed))
    change_s, states = _state_path(rng, duration_s, params)
    n_ticks = math.ceil(duration_s / params.noise_step_s - 1e-9)
    factor = _ar1_factor(rng, n_ticks, params)
    ticks = np.arange(n_ticks) * params.noise_step_s
    starts = np.union1d(change_s, ticks)
    state_at = states[np.searchsorted(change_s, starts, side="right") - 1]
    tick_at = np.searchsorted(ticks, starts, side="right") - 1
    rates = np.array(params.mean_mbps)[state_at] * 1e6 * factor[tick_at]
    return MarkovPath(change_s, states, starts, rates, float(duration_s))


def markov_cellular(seed: int, duration_s: float, params: MarkovParams = LTE_LIKE) -> Trace:
    """A seeded Markov-modulated cellular trace (see the module docstring)."""
    path = markov_path(seed, duration_s, params)
    return trace_from_rates(
        path.starts_s,
        path.rates_bps,
        duration_s,
        name=f"markov_cellular_seed{seed}",
        source=f"markov_cellular(seed={seed}, duration_s={duration_s:g})",
    )


# --------------------------------------------------------------------------- stats & output
@dataclass(frozen=True)
class TraceStats:
    mean_mbps: float
    cv: float  # std / mean of the capacity in bins of bin_s
    outage_fraction: float  # time inside gaps >= outage_gap_s, over the period
    n_outages: int
    mean_outage_s: float  # 0 when there is none
    max_outage_s: float

    def describe(self) -> str:
        return (
            f"mean {self.mean_mbps:.2f} Mbit/s, CV {self.cv:.2f} (1 s bins), "
            f"outages {self.n_outages} covering {100 * self.outage_fraction:.1f} % "
            f"(mean {self.mean_outage_s:.2f} s, max {self.max_outage_s:.2f} s)"
        )


def trace_stats(trace: Trace, *, bin_s: float = 1.0, outage_gap_s: float = 0.5) -> TraceStats:
    """Statistics measured on the opportunities themselves, so any trace can be compared.

    An outage is a gap of at least ``outage_gap_s`` between consecutive opportunities
    (within one period; the wrap-around gap is not counted).
    """
    _, bps = trace.rate_series(bin_s, trace.duration_s)
    gaps = np.diff(trace.opportunities_ms) / 1000.0
    out = gaps[gaps >= outage_gap_s]
    mean = float(bps.mean())
    return TraceStats(
        mean_mbps=trace.mean_bps / 1e6,
        cv=float(bps.std() / mean) if mean > 0 else 0.0,
        outage_fraction=float(out.sum() / trace.duration_s),
        n_outages=int(out.size),
        mean_outage_s=float(out.mean()) if out.size else 0.0,
        max_outage_s=float(out.max()) if out.size else 0.0,
    )


def write_mahimahi(trace: Trace, path: str | Path) -> Trace:
    """Write ``trace`` as a mahimahi file; return the trace as mahimahi will read it back.

    Mahimahi takes the last timestamp as the period, so idle time after the last
    opportunity is dropped from the loop (for the generators: less than one opportunity
    spacing, unless the trace ends in an outage).
    """
    if trace.bytes_per_opportunity != MTU_BYTES:
        raise ValueError("mahimahi files hold 1500-byte opportunities; this trace is scaled")
    opp = trace.opportunities_ms
    if np.any(opp != np.round(opp)):
        raise ValueError("mahimahi timestamps are whole milliseconds")
    if opp[-1] <= 0:
        raise ValueError("the last timestamp (the period) must be > 0")
    ints = opp.astype(np.int64)
    Path(path).write_text("\n".join(map(str, ints.tolist())) + "\n", encoding="utf-8")
    return Trace(opp.copy(), float(ints[-1]), name=Path(path).name, source=str(path))


# --------------------------------------------------------------------------- CLI
def _parse_steps(text: str) -> list[tuple[float, float]]:
    try:
        return [(float(a), float(b)) for a, b in (p.split(":") for p in text.split(","))]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 't_s:mbps,t_s:mbps,...' (e.g. 0:5,10:1), got {text!r}"
        ) from None


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m diffstream.netsim.synthetic",
        description="Generate a synthetic mahimahi trace and print its statistics.",
    )
    sub = ap.add_subparsers(dest="kind", required=True)
    m = sub.add_parser("markov", help="seeded Markov-modulated cellular (LTE-like)")
    m.add_argument("--seed", type=int, required=True)
    c = sub.add_parser("constant", help="constant rate")
    c.add_argument("--mbps", type=float, required=True)
    s = sub.add_parser("steps", help="piecewise-constant rate")
    s.add_argument("--steps", type=_parse_steps, required=True, help="t_s:mbps,... from t=0")
    for p in (m, c, s):
        p.add_argument("--duration", type=float, required=True, help="seconds")
        p.add_argument("--out", type=Path, required=True, help="mahimahi file to write")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.kind == "markov":
            trace = markov_cellular(args.seed, args.duration)
        elif args.kind == "constant":
            trace = constant(args.mbps, args.duration)
        else:
            trace = steps(args.steps, args.duration)
        written = write_mahimahi(trace, args.out)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {written.n} opportunities, period {written.duration_s:.3f} s")
    if written.period_ms != trace.period_ms:
        early = trace.duration_s - written.duration_s
        print(f"note: mahimahi loops at the last timestamp, {early:.3f} s before --duration")
    print(trace_stats(written).describe())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
