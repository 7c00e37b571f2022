"""MPC that knows its codec: the floor as a ladder level and the codec's compute per level."""

from __future__ import annotations

import pytest

from diffstream.control.policies import MPCPolicy
from tests.unit.control.test_policy import make_obs, wire

# WebP's pink-noise floor at 64x64 (0.625 bpp); the default ladder's levels are 409, 819,
# 1433, 2048, 3072, 4096, 6144 and 8192 bits
FLOOR = 2560


def test_ladder_puts_the_floor_between_a_skip_and_the_levels_above() -> None:
    obs = make_obs(min_bits=FLOOR)
    with_floor = MPCPolicy(floor_level=True)
    assert with_floor.level_bits(obs) == [0, FLOOR, 3072, 4096, 6144, 8192]
    # the default ladder: one skip per sub-floor level, the cheapest frame is 3072 bits
    assert MPCPolicy().level_bits(obs) == [0, 0, 0, 0, 3072, 4096, 6144, 8192]
    # a floor on a level, or under the ladder, changes nothing
    assert with_floor.level_bits(make_obs(min_bits=2048)) == [0, 2048, 3072, 4096, 6144, 8192]
    assert with_floor.level_bits(make_obs(min_bits=100))[0] == 409


def test_mpc_sends_the_floor_when_only_the_floor_fits() -> None:
    # the floor frame is 400 wire bytes (320 B payload), the 3072-bit level 464: at this
    # rate they take 68 and 79 ms. With 10 ms encode, 20 ms one-way delay and 10 ms decode
    # only the floor frame beats a 110 ms deadline (108 ms vs 119 ms)
    thr = 8 * wire(FLOOR) / 0.068
    obs = make_obs(throughput_bps=(thr,) * 6, min_bits=FLOOR, deadline_s=0.11)
    assert MPCPolicy(floor_level=True).budget_bits(obs) == FLOOR
    # without the floor level the only frames are 3072 bits (late) or a skip
    assert MPCPolicy().budget_bits(obs) == 0


def test_budget_dependent_compute_enters_the_plan() -> None:
    # plenty of throughput; a codec whose encode grows with the budget (a per-step cost):
    # 2 bpp costs 80 ms of encode and misses the 100 ms deadline, 1 bpp (45 ms) makes it
    def compute_at(bits: int) -> tuple[float, float]:
        return (0.01 + 0.035 * bits / 4096, 0.005) if bits else (0.01, 0.0)

    fast = make_obs(throughput_bps=(1e9,) * 5)
    assert MPCPolicy().budget_bits(fast) == 8192  # constant compute: the top level
    slow = make_obs(throughput_bps=(1e9,) * 5, compute_at=compute_at)
    got = MPCPolicy().budget_bits(slow)
    enc, dec = compute_at(got)
    assert enc + 0.02 + dec <= 0.1 < sum(compute_at(MPCPolicy().level_bits(slow)[-1])) + 0.02
    assert got == 6144  # 1.5 bpp: 62.5 + 20 + 5 ms = 87.5 ms; 2 bpp: 100 ms is late


@pytest.mark.parametrize("floor_level", [True, False])
def test_explicit_skip_stays_available(floor_level: bool) -> None:
    # a queue of 20 kB ahead on 50 kb/s: every frame is late, the plan skips to drain it
    obs = make_obs(throughput_bps=(5e4,) * 5, inflight_bytes=20000.0, min_bits=FLOOR)
    assert MPCPolicy(floor_level=floor_level).budget_bits(obs) == 0
