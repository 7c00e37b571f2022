"""Budget policies against hand-computed budgets.

Wire model used throughout (``wire``): 40 header bytes + ceil(b/8) payload bytes + 40 bytes per
1460-byte packet. So wire(0) = 40, one payload byte costs 81, and a payload of p bytes with
k = ceil(p/1460) packets costs 40 + p + 40k. Expected budgets below are derived by hand from
that formula; numbers are chosen so that no float rounding lands on a boundary.
"""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from diffstream.control.policies import (
    BufferPolicy,
    DeadlinePolicy,
    FixedPolicy,
    MPCPolicy,
    Observation,
    OraclePolicy,
    OracleView,
    PolicySpec,
    RatePolicy,
    RateQualityModel,
    parse_policy,
    payload_bits_for_wire_budget,
    policy_kinds,
)
from diffstream.control.policies.base import robust_throughput_bps


def wire(bits: int) -> float:
    payload = math.ceil(bits / 8)
    return 40 + payload + 40 * math.ceil(payload / 1460)


def make_obs(**overrides: Any) -> Observation:
    """A 64x64 interactive frame at 10 fps: now 0, deadline 0.1 s, 40 ms of fixed latency."""
    fields: dict[str, Any] = dict(
        now_s=0.0,
        frame_index=10,
        frame_interval_s=0.1,
        pixels=4096,
        mode="interactive",
        capture_s=0.0,
        deadline_s=0.1,
        throughput_bps=(),
        rtt_s=0.04,
        one_way_delay_s=0.02,
        loss_rate=0.0,
        inflight_bytes=0.0,
        buffer_s=0.0,
        encode_s=0.01,
        decode_s=0.01,
        min_bits=100,
        max_bits=1_000_000,
        wire_bytes=wire,
    )
    fields.update(overrides)
    return Observation(**fields)


def constant_capacity(rate_bytes_s: float):
    return lambda t0, t1: rate_bytes_s * max(0.0, t1 - t0)


def capacity_until(rate_bytes_s: float, stop_s: float):
    """``rate_bytes_s`` until ``stop_s``, then nothing (an outage)."""
    return lambda t0, t1: rate_bytes_s * max(0.0, min(t1, stop_s) - min(t0, stop_s))


# --- wire-budget inversion ------------------------------------------------------------------


def test_payload_bits_for_wire_budget_hand_values() -> None:
    obs = make_obs()
    assert payload_bits_for_wire_budget(obs, 39.9) == 0  # even an empty frame does not fit
    assert payload_bits_for_wire_budget(obs, 80.9) == 0  # one payload byte needs 81
    assert payload_bits_for_wire_budget(obs, 81) == 8
    assert payload_bits_for_wire_budget(obs, 1540) == 1460 * 8  # one full packet
    # one more payload byte opens a second packet (+40), so 1541..1580 buys nothing more
    assert payload_bits_for_wire_budget(obs, 1580.9) == 1460 * 8
    assert payload_bits_for_wire_budget(obs, 1581) == 1461 * 8
    assert payload_bits_for_wire_budget(obs, 1e18) == obs.max_bits
    assert payload_bits_for_wire_budget(obs, float("nan")) == 0


@settings(max_examples=60, deadline=None)
@given(budget=st.floats(-10, 3e5), upper=st.integers(0, 2_000_000))
def test_payload_bits_for_wire_budget_is_the_largest(budget: float, upper: int) -> None:
    b = payload_bits_for_wire_budget(make_obs(), budget, upper=upper)
    assert 0 <= b <= upper
    if wire(0) <= budget:
        assert wire(b) <= budget
        assert b == upper or wire(b + 1) > budget
    else:
        assert b == 0


def test_payload_bits_for_wire_budget_closed_form_is_the_bisections() -> None:
    """With SenderCore's ``layout`` on ``wire_bytes`` (closed-form inverse) the answer is the
    bisection's, including a skip header larger than the coded one (wire(0) > wire(1)),
    budgets on packet edges, and a layout that lies (caught by the check, then bisected)."""
    rng = random.Random(3)
    for coded, skip, lie in ((40, 40, 0), (40, 75, 0), (12, 5, 0), (40, 40, 9)):
        def wire_of(bits: int, coded: int = coded, skip: int = skip) -> float:
            payload = math.ceil(bits / 8)
            head = skip if bits == 0 else coded
            return float(head + payload + 40 * max(1, math.ceil((head + payload) / 1460)))

        calls = []

        def fast_fn(bits: int, f: Any = wire_of, calls: list = calls) -> float:
            calls.append(bits)
            return f(bits)

        fast_fn.layout = (coded + lie, 1460)  # type: ignore[attr-defined]
        budgets = [rng.uniform(0, 40_000) for _ in range(400)]
        budgets += [float(k * 1500 + d) for k in range(1, 6) for d in (-1, 0, 1, 39, 40, 41)]
        for budget in budgets:
            for upper in (None, 7, 40_000):
                ref = payload_bits_for_wire_budget(make_obs(wire_bytes=wire_of), budget, upper)
                calls.clear()
                got = payload_bits_for_wire_budget(make_obs(wire_bytes=fast_fn), budget, upper)
                assert got == ref, (coded, skip, lie, budget, upper)
                if not lie and upper is None:  # the closed form was used, not the search
                    assert len(calls) <= 4, calls


# --- fixed, rate ----------------------------------------------------------------------------


def test_fixed() -> None:
    assert FixedPolicy(bpp=0.5).budget_bits(make_obs()) == 2048
    assert FixedPolicy(bpp=0.3).budget_bits(make_obs()) == 1228  # int(1228.8)
    assert FixedPolicy(bpp=1000).budget_bits(make_obs()) == 1_000_000  # clamped to max_bits


def test_rate_harmonic_mean_times_safety_times_interval() -> None:
    # hm(1e6, 2e6) = 4e6/3; x 0.85 x 0.1 s / 8 = 14166.67 wire bytes.
    # 10 packets: p + 40 + 400 <= 14166.67 -> p = 13726 bytes -> 109808 bits.
    obs = make_obs(throughput_bps=(1e6, 2e6))
    assert RatePolicy().budget_bits(obs) == 109_808
    # window=2 ignores the older, slower sample
    assert RatePolicy(window=2).budget_bits(make_obs(throughput_bps=(1e3, 1e6, 2e6))) == 109_808
    assert RatePolicy().budget_bits(make_obs(throughput_bps=(1e3, 1e6, 2e6))) < 109_808


def test_rate_startup_fallback() -> None:
    assert RatePolicy().budget_bits(make_obs()) == 1024  # 0.25 bpp x 4096 px
    assert RatePolicy(startup_bpp=0.5).budget_bits(make_obs()) == 2048


# --- deadline -------------------------------------------------------------------------------


def deadline_lhs(obs: Observation, bits: int, thr: float) -> float:
    owd = obs.one_way_delay_s or 0.0
    return (obs.inflight_bytes + wire(bits)) * 8 / thr + obs.encode_s + owd + obs.decode_s


def test_deadline_meets_the_inequality_and_one_more_bit_breaks_it() -> None:
    # thr = 4e6/3 x 0.9 = 1.2e6 b/s; slack = 0.1 - 0.01 - 0.02 - 0.01 = 0.06 s -> 9000 bytes,
    # minus 999.5 in flight = 8000.5 wire bytes. 6 packets: p + 280 <= 8000.5 -> p = 7720.
    obs = make_obs(throughput_bps=(1e6, 2e6), inflight_bytes=999.5)
    b = DeadlinePolicy(robust=False).budget_bits(obs)
    assert b == 7720 * 8
    thr = 4e6 / 3 * 0.9
    assert deadline_lhs(obs, b, thr) <= obs.deadline_s - obs.now_s
    assert deadline_lhs(obs, b + 1, thr) > obs.deadline_s - obs.now_s


def test_deadline_unknown_delay_counts_as_zero() -> None:
    # slack 0.08 s -> 12000 - 999.5 = 11000.5 bytes; 8 packets: p + 360 <= 11000.5 -> 10640
    obs = make_obs(throughput_bps=(1e6, 2e6), inflight_bytes=999.5, one_way_delay_s=None)
    assert DeadlinePolicy(robust=False).budget_bits(obs) == 10640 * 8


def test_deadline_infeasible_returns_zero() -> None:
    # 20 kB in flight take 0.133 s at 1.2 Mb/s: late whatever this frame's size
    backlogged = make_obs(throughput_bps=(1e6, 2e6), inflight_bytes=2e4)
    assert DeadlinePolicy(robust=False).budget_bits(backlogged) == 0
    # encode alone overshoots the deadline
    plain = DeadlinePolicy(robust=False)
    assert plain.budget_bits(make_obs(throughput_bps=(1e6,), encode_s=0.2)) == 0


def test_deadline_playback_uses_the_buffer() -> None:
    # window = buffer 0.4 s + one frame interval 0.1 s (the fetched frame plays after the
    # buffered ones); slack 0.46 s x 1.2e6 / 8 = 69000 - 0.5 in flight = 68999.5 bytes.
    # 46 packets: p + 40 + 1840 <= 68999.5 -> p = 67119.
    obs = make_obs(
        mode="playback", deadline_s=None, buffer_s=0.4, frame_interval_s=0.1,
        inflight_bytes=0.5, throughput_bps=(1e6, 2e6),
    )  # fmt: skip
    assert DeadlinePolicy(burst_frames=None, robust=False).budget_bits(obs) == 67119 * 8
    # an empty buffer still leaves one frame interval, so the buffer can refill
    empty = make_obs(mode="playback", deadline_s=None, buffer_s=0.0, frame_interval_s=0.1,
                     throughput_bps=(1e6, 2e6))
    assert 0 < DeadlinePolicy(burst_frames=None, robust=False).budget_bits(empty) < 67119 * 8


def test_deadline_burst_cap() -> None:
    # same window as above, but at most 2 intervals of 1.2e6 b/s = 30000 wire bytes:
    # 20 packets: p + 40 + 800 <= 30000 -> p = 29160
    obs = make_obs(mode="playback", deadline_s=None, buffer_s=0.4, frame_interval_s=0.1,
                   inflight_bytes=0.5, throughput_bps=(1e6, 2e6))
    assert DeadlinePolicy(robust=False).budget_bits(obs) == 29160 * 8
    assert DeadlinePolicy(burst_frames=1.0, robust=False).budget_bits(obs) < 29160 * 8


def test_deadline_startup_fallback() -> None:
    assert DeadlinePolicy(startup_bpp=0.1, robust=False).budget_bits(make_obs()) == 409


# --- buffer (BBA-0) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("buffer_s", "bits"),
    [
        (0.0, 409),  # interactive-like empty buffer: min_bpp 0.1 x 4096
        (0.5, 409),
        (1.0, 409),  # at the reservoir
        (2.0, 4300),  # mid-cushion: 0.1 + 1.9 / 2 = 1.05 bpp -> int(4300.8)
        (3.0, 8192),  # reservoir + cushion: max_bpp 2.0
        (30.0, 8192),
    ],
)
def test_bba_rate_map(buffer_s: float, bits: int) -> None:
    obs = make_obs(mode="playback", deadline_s=None, buffer_s=buffer_s)
    assert BufferPolicy().budget_bits(obs) == bits


def test_bba_rejects_inverted_range() -> None:
    with pytest.raises(ValidationError, match="max_bpp"):
        BufferPolicy(min_bpp=1.0, max_bpp=0.5)


# --- MPC ------------------------------------------------------------------------------------


def test_mpc_robust_throughput_hand_value() -> None:
    # hm(1e6, 2e6) = 1.333e6; sample 2e6 was predicted as 1e6: relative error 0.5
    assert robust_throughput_bps((1e6, 2e6), 5) == pytest.approx(4e6 / 3 / 1.5)
    assert robust_throughput_bps((3e5,) * 6, 5) == pytest.approx(3e5)  # never wrong
    assert robust_throughput_bps((), 5) is None


@pytest.mark.parametrize("mode", ["interactive", "playback"])
def test_mpc_extremes(mode: str) -> None:
    extra: dict[str, Any] = {"mode": "playback", "deadline_s": None} if mode == "playback" else {}
    huge = make_obs(throughput_bps=(1e12,) * 5, **extra)
    tiny = make_obs(throughput_bps=(1e3,) * 5, **extra)
    assert MPCPolicy().budget_bits(huge) == 8192  # 2.0 bpp
    assert MPCPolicy().budget_bits(tiny) == 409  # 0.1 bpp


def test_mpc_robust_discount_lowers_the_choice() -> None:
    alternating = (5e4, 2e5) * 3  # last 5: hm = 90909 b/s
    jumpy = make_obs(throughput_bps=alternating)
    steady = make_obs(throughput_bps=(90909.09,) * 5)  # same harmonic mean, never mispredicted
    policy = MPCPolicy()
    # worst recent error: 2e5 predicted as 5e4 -> 0.75, so the plan uses 90909 / 1.75
    assert policy.predicted_throughput_bps(jumpy) == pytest.approx(90909.09 / 1.75)
    assert policy.budget_bits(jumpy) < policy.budget_bits(steady)
    # at 52 kb/s with 40 ms of fixed latency and a 0.1 s deadline: 1.0 bpp (592 wire bytes,
    # 91 ms) arrives at 0.131 s and 0.75 bpp (464 B, 71 ms) at 0.111 s - both late, so lost;
    # 0.5 bpp (336 B, 51.7 ms) arrives at 0.092 s, on time
    assert policy.budget_bits(jumpy) == 2048


def test_mpc_skips_when_even_the_floor_cannot_make_it() -> None:
    # floor 1.5 bpp; a queue of 20 kB ahead on a 50 kb/s link: every encodable level is late
    # by seconds, so the plan is to skip (0 bits) and let the queue drain
    obs = make_obs(throughput_bps=(5e4,) * 5, inflight_bytes=20000.0, min_bits=6144)
    assert MPCPolicy().budget_bits(obs) == 0
    roomy = make_obs(throughput_bps=(5e6,) * 5, min_bits=6144)
    assert MPCPolicy().budget_bits(roomy) >= 6144


def test_mpc_startup_fallback() -> None:
    assert MPCPolicy().budget_bits(make_obs()) == 1024


def brute_force_mpc(policy: MPCPolicy, obs: Observation) -> tuple[float, dict[int, float]]:
    """Independent pure-Python MPC: best objective overall and per first level."""
    thr = policy.predicted_throughput_bps(obs)
    assert thr is not None
    levels = policy.levels_bpp
    # levels below the codec floor are explicit skips: 0 bits, floor quality - penalty
    raw = [int(b * obs.pixels) for b in levels]
    bits = [0 if r < obs.min_bits else max(0, min(obs.max_bits, r)) for r in raw]
    if obs.rate_quality is not None:
        floor_q = obs.rate_quality.quality_at(max(obs.min_bits, 1) / obs.pixels)
        quality = [obs.rate_quality.quality_at(b / obs.pixels) if b else
                   floor_q - policy.skip_penalty_db for b in bits]
    else:
        floor_q = 10 * math.log10(max(obs.min_bits, 1) / obs.pixels / levels[0]) + 25
        quality = [10 * math.log10(lv / levels[0]) + 25 if b else floor_q - policy.skip_penalty_db
                   for lv, b in zip(levels, bits, strict=True)]
    wire_bits = [8 * wire(b) for b in bits]
    best: dict[int, float] = {}
    queued = obs.backlog_bytes if obs.backlog_bytes is not None else obs.inflight_bytes
    for seq in itertools.product(range(len(levels)), repeat=policy.horizon):
        stall = 0.0
        q_eff = [0.0] * policy.horizon
        if obs.mode == "playback":
            buf = obs.buffer_s
            for j in seq:
                d = wire_bits[j] / thr
                stall += max(0.0, d - buf)
                buf = max(buf - d, 0.0) + obs.frame_interval_s
        else:
            owd = obs.one_way_delay_s or 0.0
            skip_q = floor_q - policy.skip_penalty_db
            clear = obs.now_s + queued * 8 / thr
            for i, j in enumerate(seq):
                start = obs.now_s + i * obs.frame_interval_s + obs.encode_s
                clear = max(clear, start) + wire_bits[j] / thr
                due = obs.deadline_s + i * obs.frame_interval_s
                late = clear + owd + obs.decode_s > due + 1e-12
                q_eff[i] = skip_q if late else quality[j]
                stall += obs.frame_interval_s if late else 0.0
        q = q_eff if obs.mode != "playback" else [quality[j] for j in seq]
        switches = sum(abs(a - b) for a, b in zip(q[1:], q[:-1], strict=True))
        value = sum(q) - policy.switch_weight * switches - policy.stall_weight * stall
        best[seq[0]] = max(best.get(seq[0], -math.inf), value)
    return max(best.values()), best


def random_mpc_case(rng: random.Random) -> tuple[MPCPolicy, Observation]:
    policy = MPCPolicy(
        horizon=rng.choice([1, 2, 3, 4]),
        levels_bpp=tuple(sorted(rng.sample([0.05, 0.1, 0.2, 0.4, 0.7, 1.0, 1.6, 3.0], 5))),
        window=rng.choice([1, 3, 5]),
        switch_weight=rng.uniform(0, 3),
        stall_weight=rng.uniform(0, 200),
    )
    playback = rng.random() < 0.5
    rq = None
    if rng.random() < 0.5:
        rq = RateQualityModel(bpp=(0.1, 0.5, 2.0), quality_db=(24.0, 31.0, 38.5))
    now = rng.uniform(0, 100)
    obs = make_obs(
        now_s=now,
        mode="playback" if playback else "interactive",
        deadline_s=None if playback else now + rng.uniform(0.0, 0.3),
        buffer_s=rng.uniform(0, 3) if playback else 0.0,
        throughput_bps=tuple(rng.uniform(2e4, 5e5) for _ in range(rng.randint(1, 8))),
        inflight_bytes=rng.uniform(0, 3000),
        one_way_delay_s=rng.choice([None, rng.uniform(0, 0.05)]),
        encode_s=rng.uniform(0, 0.05),
        decode_s=rng.uniform(0, 0.05),
        max_bits=rng.choice([1_000_000, 5000]),
        rate_quality=rq,
    )
    return policy, obs


def test_mpc_vectorised_matches_brute_force() -> None:
    rng = random.Random(20240601)
    for _ in range(25):
        policy, obs = random_mpc_case(rng)
        best, per_first = brute_force_mpc(policy, obs)
        plan = policy.plan(obs)
        assert plan is not None and len(plan) == policy.horizon
        # the chosen first level starts an optimal plan (ties may pick either)
        assert per_first[plan[0]] == pytest.approx(best, rel=1e-9, abs=1e-9)
        assert policy.budget_bits(obs) == policy.level_bits(obs)[plan[0]]
        objectives = policy.objectives(obs, policy.predicted_throughput_bps(obs))
        assert objectives.max() == pytest.approx(best, rel=1e-9, abs=1e-9)


def test_mpc_rejects_bad_ladders() -> None:
    with pytest.raises(ValidationError, match="increasing"):
        MPCPolicy(levels_bpp=(0.5, 0.2))
    with pytest.raises(ValidationError):
        MPCPolicy(levels_bpp=(0.0, 0.2))
    with pytest.raises(ValidationError, match="plans"):
        MPCPolicy(horizon=12)


# --- oracle ---------------------------------------------------------------------------------

RATE = 100_001.0  # bytes/s; the extra 1 B/s keeps hand-computed budgets off float boundaries


def oracle_obs(capacity, backlog: float = 500.0, **overrides: Any) -> Observation:
    future = OracleView(capacity_bytes=capacity, backlog_bytes=backlog, delay_s=0.02)
    return make_obs(future=future, **overrides)


def test_oracle_constant_capacity() -> None:
    # frame enters at 0.01, must clear by 0.1 - 0.02 - 0.01 = 0.07:
    # min(cap(0, .07) - 500, cap(.01, .07)) = min(6500.07, 6000.06) -> wire 6000 -> p = 5800
    assert OraclePolicy().budget_bits(oracle_obs(constant_capacity(RATE))) == 5800 * 8


def test_oracle_backlog_binds() -> None:
    # 5000 queued bytes clear at 0.05; the frame gets the last 20 ms: 2000.07 bytes -> p = 1880
    obs = oracle_obs(constant_capacity(RATE), backlog=5000.0)
    assert OraclePolicy().budget_bits(obs) == 1880 * 8


def test_oracle_capacity_step_gives_smaller_budget() -> None:
    # outage from 0.04: the frame has [0.01, 0.04): 3000.03 bytes -> p = 2880
    full = OraclePolicy().budget_bits(oracle_obs(constant_capacity(RATE)))
    cut = OraclePolicy().budget_bits(oracle_obs(capacity_until(RATE, 0.04)))
    assert cut == 2880 * 8 < full


def test_oracle_playback_window_is_the_buffer() -> None:
    # clear by 0.5 - 0.02 - 0.01 = 0.47: min(47000.47 - 500, 46000.46) -> p = 44720 (32 pkts)
    obs = oracle_obs(constant_capacity(RATE), mode="playback", deadline_s=None, buffer_s=0.4,
                     frame_interval_s=0.1)  # window = buffer + one frame interval
    assert OraclePolicy().budget_bits(obs) == 44720 * 8


def test_oracle_too_late_or_blind() -> None:
    late = oracle_obs(constant_capacity(RATE), encode_s=0.09)  # ready after the last chance
    assert OraclePolicy().budget_bits(late) == 0
    with pytest.raises(ValueError, match="obs.future"):
        OraclePolicy().budget_bits(make_obs())


# --- configuration --------------------------------------------------------------------------


def test_policy_spec_parses_and_rejects() -> None:
    policy = parse_policy({"kind": "rate", "window": 3})
    assert isinstance(policy, RatePolicy)
    assert (policy.window, policy.safety) == (3, 0.85)
    assert policy.label == "rate(k=3,s=0.85)"
    for bad in (
        {"kind": "rate", "windw": 3},  # unknown option
        {"kind": "magic"},  # unknown kind
        {"window": 3},  # no kind
        {"kind": "rate", "window": 0},
        {"kind": "rate", "safety": 1.5},
        {"kind": "oracle", "bpp": 1.0},
    ):
        with pytest.raises(ValidationError):
            parse_policy(bad)


def test_policy_spec_embeds_in_a_scenario_model() -> None:
    class Scenario(BaseModel):
        policy: PolicySpec

    scenario = Scenario.model_validate({"policy": {"kind": "mpc", "levels_bpp": [0.1, 1.0]}})
    assert isinstance(scenario.policy, MPCPolicy)
    assert scenario.policy.levels_bpp == (0.1, 1.0)
    with pytest.raises(ValidationError, match="policy"):
        Scenario.model_validate({"policy": {"kind": "buffer", "cushion_s": -1}})
    with pytest.raises(ValidationError):
        scenario.policy.horizon = 5  # frozen: a running session cannot mutate its policy


def test_kinds_labels_and_names() -> None:
    assert policy_kinds() == ["fixed", "rate", "deadline", "buffer", "mpc", "oracle", "gcc",
                              "optimal"]
    defaults = [parse_policy({"kind": k}) for k in policy_kinds()]
    assert [p.name for p in defaults] == policy_kinds()
    assert [p.label for p in defaults] == [
        "fixed(bpp=0.5)",
        "rate(k=5,s=0.85)",
        "deadline(k=5,s=0.9)",
        "buffer(r=1,c=2,bpp=0.1-2)",
        "mpc(h=3,L=8,k=5,sw=1,st=50)",
        "oracle(greedy)",
        "gcc(b=0.85)",
        "optimal(DP)",
    ]


# --- properties over random observations ----------------------------------------------------

ALL_POLICIES = [
    FixedPolicy(bpp=0.7),
    RatePolicy(),
    DeadlinePolicy(robust=False),
    BufferPolicy(),
    MPCPolicy(),
    MPCPolicy(horizon=2, levels_bpp=(0.05, 5.0), stall_weight=1000.0),
    OraclePolicy(),
]


@st.composite
def observations(draw: st.DrawFn) -> Observation:
    playback = draw(st.booleans())
    now = draw(st.floats(0, 1e4))
    delay = draw(st.floats(0, 0.2))
    return make_obs(
        now_s=now,
        mode="playback" if playback else "interactive",
        deadline_s=None if playback else now + draw(st.floats(-0.1, 1.0)),
        buffer_s=draw(st.floats(0, 10)),
        pixels=draw(st.integers(1, 1 << 20)),
        throughput_bps=tuple(draw(st.lists(st.floats(0, 1e9), max_size=8))),
        one_way_delay_s=draw(st.none() | st.just(delay)),
        inflight_bytes=draw(st.floats(0, 1e6)),
        encode_s=draw(st.floats(0, 0.5)),
        decode_s=draw(st.floats(0, 0.5)),
        min_bits=draw(st.integers(0, 1000)),
        max_bits=draw(st.integers(0, 1 << 24)),
        future=OracleView(
            capacity_bytes=constant_capacity(draw(st.floats(0, 1e8))),
            backlog_bytes=draw(st.floats(0, 1e6)),
            delay_s=delay,
        ),
    )


@settings(max_examples=60, deadline=None)
@given(obs=observations())
def test_every_policy_is_pure_and_in_range(obs: Observation) -> None:
    for policy in ALL_POLICIES:
        first = policy.budget_bits(obs)
        assert isinstance(first, int)
        assert 0 <= first <= obs.max_bits, policy.label
        assert policy.budget_bits(obs) == first, policy.label
        twin = parse_policy(policy.model_dump())  # same options, fresh object
        assert twin.budget_bits(obs) == first, policy.label


@settings(max_examples=60, deadline=None)
@given(obs=observations())
def test_deadline_budget_always_meets_its_own_inequality(obs: Observation) -> None:
    b = DeadlinePolicy(robust=False).budget_bits(obs)
    positive = [s for s in obs.throughput_bps[-5:] if s > 0]
    if positive and b > 0:
        thr = len(positive) / sum(1 / s for s in positive) * 0.9
        window = (obs.buffer_s + obs.frame_interval_s if obs.mode == "playback"
                  else obs.deadline_s - obs.now_s)
        assert deadline_lhs(obs, b, thr) <= window * (1 + 1e-9) + 1e-12


def test_backlog_estimate_replaces_inflight() -> None:
    # 999.5 bytes unacknowledged, but the sender estimates only 0.5 still queued: the deadline
    # budget grows by exactly the 999 bytes the link has already drained.
    stale = make_obs(throughput_bps=(1e6, 2e6), inflight_bytes=999.5)
    fresh = make_obs(throughput_bps=(1e6, 2e6), inflight_bytes=999.5, backlog_bytes=0.5)
    assert DeadlinePolicy(robust=False).budget_bits(stale) == 7720 * 8
    plain = DeadlinePolicy(robust=False)
    assert plain.budget_bits(fresh) > plain.budget_bits(stale)
    assert MPCPolicy().budget_bits(fresh) >= MPCPolicy().budget_bits(stale)


def test_deadline_robust_discount() -> None:
    # a steady link is left alone; a jumpy one (50 % prediction error) gets 1/1.5 of the rate
    steady = make_obs(throughput_bps=(1.2e6,) * 5)
    assert DeadlinePolicy().budget_bits(steady) == DeadlinePolicy(robust=False).budget_bits(steady)
    jumpy = make_obs(throughput_bps=(1e6, 2e6))
    assert robust_throughput_bps(jumpy.throughput_bps, 5) == pytest.approx(4e6 / 3 / 1.5)
    assert DeadlinePolicy().budget_bits(jumpy) < DeadlinePolicy(robust=False).budget_bits(jumpy)
