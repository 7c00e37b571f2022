"""``optimal``: the DP equals an exhaustive search on its grid, beats the greedy oracle in
its model, and acts closed-loop from one cached plan per arm."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffstream.control.policies import OptimalPolicy, parse_policy
from diffstream.control.policies.base import Observation, OracleView, RateQualityModel
from diffstream.control.policies.optimal_dp import (
    InteractiveFrames,
    Ladder,
    PlaybackFrames,
    Weights,
    backlog_grid_step,
    evaluate_interactive,
    evaluate_playback,
    greedy_interactive,
    greedy_playback,
    playback_grid,
    playback_index,
    snap_up,
    solve_interactive,
    solve_playback,
)
from diffstream.netsim.trace import Trace, trace_from_rates

T = 0.1  # frame interval


def wire(bits: int) -> float:
    """40 header bytes + the payload, in 1500-byte packets with 40 bytes of overhead each."""
    payload = math.ceil(bits / 8)
    return 40.0 + payload + 40.0 * max(0, math.ceil(payload / 1460) - 1)


def step_trace(rates_kbps: list[float], seg_s: float = 0.1, loops: int = 20) -> Trace:
    """A trace of 100 ms segments at the given rates, repeated (so it covers any horizon)."""
    rates = np.tile(np.asarray(rates_kbps, dtype=float) * 1000.0, loops)
    starts = np.arange(rates.size) * seg_s
    return trace_from_rates(starts, rates, end_s=rates.size * seg_s)


TRACES = {
    "constant": step_trace([60.0]),
    "drop": step_trace([800.0, 800.0, 40.0, 40.0, 40.0, 800.0]),
    "spike": step_trace([60.0, 1200.0, 60.0, 60.0]),
}

LADDER_BITS = [0, 2_000, 5_000, 12_000]  # skip + three rungs
QUALITY = {0: 20.0, 2_000: 28.0, 5_000: 32.0, 12_000: 36.0}


def ladder(n: int, extra: list[int] | None = None) -> Ladder:
    bits = [LADDER_BITS + ([extra[j]] if extra else []) for j in range(n)]
    b = np.asarray(bits, dtype=np.int64)

    def q(x: int) -> float:
        return QUALITY[x] if x in QUALITY else 28.0 + 4.0 * math.log2(x / 2_000)

    return Ladder(bits=b, wire=np.vectorize(wire, otypes=[float])(b),
                  quality=np.vectorize(q, otypes=[float])(b))


def weights(n: int, switch: float = 1.0, stall: float = 50.0) -> Weights:
    return Weights.diffstream(n, T, n * T, switch, stall)


def interactive_frames(trace: Trace, n: int, *, latency: float = 0.25, enc: float = 0.01,
                       fixed: float = 0.03, queue: float = math.inf) -> InteractiveFrames:
    cap = trace.capacity_bytes
    now = np.arange(n) * T
    t0, t1 = now + enc, now + latency - fixed
    return InteractiveFrames(
        drain_encode=np.array([cap(a, b) for a, b in zip(now, t0, strict=True)]),
        drain_after=np.array([cap(t0[j], now[j + 1]) for j in range(n - 1)] + [0.0]),
        window_all=np.array([cap(a, b) for a, b in zip(now, t1, strict=True)]),
        window_frame=np.array([cap(a, b) for a, b in zip(t0, t1, strict=True)]),
        queue_limit=queue)


# --- interactive: DP == exhaustive search on the grid ----------------------------------------


@pytest.mark.parametrize("name", sorted(TRACES))
@pytest.mark.parametrize("prev_q", [None, 32.0])
@pytest.mark.parametrize("backlog0", [0.0, 900.0])
def test_interactive_dp_equals_exhaustive_search(name: str, prev_q: float | None,
                                                 backlog0: float) -> None:
    n, points = 5, 40
    frames = interactive_frames(TRACES[name], n)
    lad = ladder(n)
    w = weights(n)
    plan = solve_interactive(frames, lad, w, points=points, prev_quality=prev_q)
    step = backlog_grid_step(frames, points)
    s0 = int(snap_up(backlog0, step, points))
    values = {seq: evaluate_interactive(frames, lad, w, seq, points=points, step=step,
                                        backlog0=backlog0, prev_quality=prev_q)
              for seq in itertools.product(range(lad.n_actions), repeat=n)}
    best = max(values.values())
    assert plan.start_value[s0] == pytest.approx(best, abs=1e-12)
    # following the plan's actions (its policy table) from the start reaches that optimum
    seq, b, prev = [], float(s0) * step, 0
    for j in range(n):
        a = int(plan.action[j, int(snap_up(b, step, points)), prev])
        seq.append(a)
        wire_a = lad.wire[j, a]
        after = max(0.0, b - frames.drain_encode[j]) + wire_a
        ok = b + wire_a <= frames.window_all[j] + 1e-6 and wire_a <= frames.window_frame[j] + 1e-6
        prev = a if ok and lad.bits[j, a] > 0 else 0
        b = float(snap_up(max(0.0, after - frames.drain_after[j]), step, points)) * step
    assert values[tuple(seq)] == pytest.approx(best, abs=1e-12)
    # the cases are not trivial: the best plan differs from "always the top rung" and "skip"
    assert best > values[(0,) * n] and best > values[(lad.n_actions - 1,) * n]


def test_interactive_switch_term_is_what_the_search_checks() -> None:
    """Dropping the switch term from the DP (a broken solver) loses against the search."""
    n, points = 5, 40
    frames = interactive_frames(TRACES["drop"], n)
    lad, w = ladder(n), weights(n, switch=4.0)
    step = backlog_grid_step(frames, points)
    broken = solve_interactive(frames, lad, w, points=points, prev_quality=None, switch=False)
    seq, b, prev = [], 0.0, 0
    for j in range(n):
        a = int(broken.action[j, int(snap_up(b, step, points)), prev])
        seq.append(a)
        after = max(0.0, b - frames.drain_encode[j]) + lad.wire[j, a]
        ok = b + lad.wire[j, a] <= frames.window_all[j] + 1e-6
        prev = a if ok and lad.bits[j, a] > 0 else 0
        b = float(snap_up(max(0.0, after - frames.drain_after[j]), step, points)) * step
    got = evaluate_interactive(frames, lad, w, seq, points=points, step=step, backlog0=0.0,
                               prev_quality=None)
    best = solve_interactive(frames, lad, w, points=points, prev_quality=None).start_value[0]
    assert got < best - 1e-6


def test_interactive_drop_tail_limit_is_respected() -> None:
    n, points = 4, 30
    frames = interactive_frames(TRACES["constant"], n, queue=1200.0)
    lad, w = ladder(n), weights(n)
    plan = solve_interactive(frames, lad, w, points=points, prev_quality=None)
    step = backlog_grid_step(frames, points)
    values = [evaluate_interactive(frames, lad, w, seq, points=points, step=step,
                                   backlog0=0.0, prev_quality=None)
              for seq in itertools.product(range(lad.n_actions), repeat=n)]
    assert plan.start_value[0] == pytest.approx(max(values), abs=1e-12)
    assert wire(12_000) > 1200  # the top rung never fits the queue: it counts as late
    top_only = evaluate_interactive(frames, lad, w, (3,) * n, points=points, step=step,
                                    backlog0=0.0, prev_quality=None)
    assert top_only == pytest.approx(n * (w.quality_w * 20.0 - w.stall_w))


@pytest.mark.parametrize("name", sorted(TRACES))
def test_interactive_dp_beats_the_greedy_oracle_in_its_model(name: str) -> None:
    n, points = 30, 120
    frames = interactive_frames(TRACES[name], n)
    step = backlog_grid_step(frames, points)

    def fill(room: float) -> int:  # the largest payload with wire(bits) <= room
        if room < wire(0):
            return 0
        bits = int((room - 40.0) * 8)
        while bits > 0 and wire(bits) > room:
            bits -= 8
        return bits

    greedy = greedy_interactive(frames, fill, wire, points=points, step=step, backlog0=0.0)
    lad, w = ladder(n, extra=greedy), weights(n)
    plan = solve_interactive(frames, lad, w, points=points, prev_quality=None)
    oracle = evaluate_interactive(frames, lad, w, [lad.n_actions - 1] * n, points=points,
                                  step=step, backlog0=0.0, prev_quality=None)
    assert plan.start_value[0] >= oracle - 1e-12
    if name == "drop":  # the greedy fills the link before the drop and starves after it
        assert plan.start_value[0] > oracle + 1e-3


# --- playback: DP == exhaustive search on the grid -------------------------------------------


def playback_frames(trace: Trace, n: int, *, k0: int = 0, startup: int = 2,
                    max_buffer: float = 0.6) -> PlaybackFrames:
    return PlaybackFrames(k0=k0, n=n, interval_s=T, encode_s=0.01, fixed_s=0.03,
                          max_buffer_s=max_buffer, startup_frames=startup,
                          finish_s=trace.finish_s, capacity_bytes=trace.capacity_bytes)


@pytest.mark.parametrize("name", sorted(TRACES))
@pytest.mark.parametrize("started", [False, True])
def test_playback_dp_equals_exhaustive_search(name: str, started: bool) -> None:
    n = 5
    trace = TRACES[name]
    frames = playback_frames(trace, n, k0=3 if started else 0)
    start = (0.35, 0.5, 0.3) if started else (0.0, None, 0.0)
    lad, w = ladder(n), weights(n, stall=50.0)
    grid = playback_grid(frames, float(lad.wire.max()), start=start, step=0.02,
                         max_rebuffer_s=0.6)
    state = playback_index(frames, grid, 0, start)
    prev_q = 32.0 if started else None
    plan = solve_playback(frames, lad, w, grid=grid, prev_quality=prev_q)
    values = {seq: evaluate_playback(frames, lad, w, seq, grid=grid, state=state,
                                     prev_quality=prev_q)
              for seq in itertools.product(range(lad.n_actions), repeat=n)}
    best = max(values.values())
    assert plan.start_value[state] == pytest.approx(best, abs=1e-12)
    if name == "constant":  # (on the others the top rung fits: the startup fills the buffer)
        assert best > values[(0,) * n] and best > values[(lad.n_actions - 1,) * n]


def test_playback_rebuffering_is_charged() -> None:
    """On a slow link the top rung every frame rebuffers, and the model charges it."""
    frames = playback_frames(TRACES["constant"], 6)
    lad, w = ladder(6), weights(6)
    grid = playback_grid(frames, float(lad.wire.max()), start=(0.0, None, 0.0), step=0.02,
                         max_rebuffer_s=2.0)
    top = evaluate_playback(frames, lad, w, [3] * 6, grid=grid, state=(0, 0), prev_quality=None)
    no_stall = 6 * w.quality_w * 36.0
    assert top < no_stall - 0.1  # at least 0.1 dB of rebuffering penalty


@pytest.mark.parametrize("name", sorted(TRACES))
def test_playback_dp_beats_the_greedy_oracle_in_its_model(name: str) -> None:
    n = 20
    frames = playback_frames(TRACES[name], n)
    lad0 = ladder(n)
    start = (0.0, None, 0.0)
    grid = playback_grid(frames, float(lad0.wire.max()) * 4, start=start, step=0.02,
                         max_rebuffer_s=1.0)

    def fill(room: float) -> int:
        return max(0, int((room - 40.0) * 8 * 0.97)) if room > 40.0 else 0

    greedy = greedy_playback(frames, fill, wire, grid=grid, state=(0, 0))
    lad, w = ladder(n, extra=greedy), weights(n)
    plan = solve_playback(frames, lad, w, grid=grid, prev_quality=None)
    oracle = evaluate_playback(frames, lad, w, [lad.n_actions - 1] * n, grid=grid,
                               state=(0, 0), prev_quality=None)
    assert plan.start_value[0, 0] >= oracle - 1e-12


# --- the policy -----------------------------------------------------------------------------


RQ = RateQualityModel(bpp=(0.1, 0.5, 1.0, 2.0, 4.0), quality_db=(24.0, 29.0, 32.0, 35.0, 38.0))


def future(trace: Trace, backlog: float = 0.0, **extra: Any) -> OracleView:
    fields: dict[str, Any] = dict(capacity_bytes=trace.capacity_bytes, backlog_bytes=backlog,
                                  delay_s=0.02, frames_total=40, duration_s=4.0,
                                  finish_s=trace.finish_s)
    fields.update(extra)
    return OracleView(**fields)


def obs_at(k: int, trace: Trace, **overrides: Any) -> Observation:
    fields: dict[str, Any] = dict(
        now_s=k * T, frame_index=k, frame_interval_s=T, pixels=4096, mode="interactive",
        capture_s=k * T, deadline_s=k * T + 0.3, throughput_bps=(), rtt_s=0.04,
        one_way_delay_s=0.02, loss_rate=0.0, inflight_bytes=0.0, buffer_s=0.0,
        encode_s=0.01, decode_s=0.01, min_bits=200, max_bits=4 * 4096, wire_bytes=wire,
        rate_quality=RQ, future=future(trace))
    fields.update(overrides)
    return Observation(**fields)


def test_policy_parses_and_labels() -> None:
    p = parse_policy({"kind": "optimal"})
    assert isinstance(p, OptimalPolicy) and p.label == "optimal(DP)"
    assert OptimalPolicy.needs_future and OptimalPolicy.needs_rate_quality
    assert parse_policy({"kind": "oracle"}).needs_future
    with pytest.raises(ValueError, match="increasing"):
        OptimalPolicy(levels_bpp=(0.5, 0.2))


def test_policy_needs_the_future() -> None:
    obs = obs_at(0, TRACES["constant"], future=None)
    with pytest.raises(ValueError, match="obs.future"):
        OptimalPolicy().budget_bits(obs)


def test_policy_plans_once_and_replans_when_the_estimates_move() -> None:
    trace = TRACES["drop"]
    p = OptimalPolicy(n_levels=8, backlog_points=60)
    b0 = p.budget_bits(obs_at(0, trace, encode_s=0.0))
    first = p._arm
    assert first is not None and first.n == 40 and 0 <= b0 <= 4 * 4096
    p.budget_bits(obs_at(1, trace, encode_s=0.0))
    assert p._arm is first  # same arm, same estimates: the cached plan
    p.budget_bits(obs_at(2, trace, encode_s=0.012))
    assert p._arm is not first and p._arm.k0 == 2  # the encode estimate moved: replanned
    again = p._arm
    p.budget_bits(obs_at(0, trace))  # frame 0 again: a new arm
    assert p._arm is not again and p._arm.k0 == 0


def test_policy_follows_its_plan_and_skips_when_nothing_fits() -> None:
    trace = TRACES["constant"]  # 60 kbit/s: 750 bytes per 100 ms
    p = OptimalPolicy(n_levels=8, backlog_points=80)
    budgets = []
    for k in range(5):
        budgets.append(p.budget_bits(obs_at(k, trace)))
    assert all(0 < b <= 4 * 4096 for b in budgets)
    # a backlog the link cannot clear within the latency budget: every frame is late, skip
    late = obs_at(5, trace, future=future(trace, backlog=50_000.0))
    assert p.budget_bits(late) == 0


def test_policy_in_playback_returns_budgets() -> None:
    trace = TRACES["drop"]
    p = OptimalPolicy(n_levels=6, time_step_s=0.05)
    view = future(trace, startup_s=0.2, max_buffer_s=1.0)
    b = p.budget_bits(obs_at(0, trace, mode="playback", deadline_s=None, future=view))
    assert 0 <= b <= 4 * 4096
    b1 = p.budget_bits(obs_at(1, trace, mode="playback", deadline_s=None, future=view,
                              now_s=0.05))
    assert 0 <= b1 <= 4 * 4096


def test_trace_finish_inverts_capacity() -> None:
    trace = TRACES["drop"]
    for t0 in (0.0, 0.123, 0.5):
        for n in (1.0, 1500.0, 4000.0, 20_000.0):
            t = trace.finish_s(t0, n)
            assert trace.capacity_bytes(t0, t + 1e-3) >= n
            assert trace.capacity_bytes(t0, t) < n
    assert trace.finish_s(0.3, 0.0) == 0.3
    got = trace.finish_s(np.array([0.0, 0.1]), np.array([1500.0, 3000.0]))
    assert got.shape == (2,)


@settings(max_examples=30, deadline=None)
@given(now=st.floats(0, 100), latency=st.floats(-0.1, 1.0), rate=st.floats(0, 1e6),
       backlog=st.floats(0, 1e5), enc=st.floats(0, 0.3), dec=st.floats(0, 0.3),
       min_bits=st.integers(0, 5000), max_bits=st.integers(0, 1 << 16),
       left=st.integers(1, 12))
def test_policy_budgets_are_in_range_and_repeatable(now: float, latency: float, rate: float,
                                                    backlog: float, enc: float, dec: float,
                                                    min_bits: int, max_bits: int,
                                                    left: int) -> None:
    k = 7
    view = OracleView(capacity_bytes=lambda t0, t1: rate * max(0.0, t1 - t0),
                      backlog_bytes=backlog, delay_s=0.02, frames_total=k + left)
    obs = obs_at(k, TRACES["constant"], now_s=now, capture_s=now, deadline_s=now + latency,
                 encode_s=enc, decode_s=dec, min_bits=min_bits, max_bits=max_bits,
                 rate_quality=None, future=view)
    p = OptimalPolicy(n_levels=6, backlog_points=20)
    first = p.budget_bits(obs)
    assert isinstance(first, int) and 0 <= first <= max_bits
    assert first == 0 or first >= min_bits  # never a budget the codec would skip anyway
    assert p.budget_bits(obs) == first
    assert OptimalPolicy(n_levels=6, backlog_points=20).budget_bits(obs) == first
