"""BudgetEnv (diffstream/rl/env.py): gymnasium's checker, replaying a rule policy's budgets
reproduces its simulated run frame by frame, the rewards add up to the arm's modelled QoE,
and reset(seed) is deterministic. Needs the [rl] extra (skipped without it)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium")

from gymnasium.utils.env_checker import check_env  # noqa: E402

from diffstream.control.policies.base import RateQualityModel  # noqa: E402
from diffstream.metrics.qoe import slot_trace  # noqa: E402
from diffstream.metrics.qoe_presets import DiffstreamQoE, score  # noqa: E402
from diffstream.pipeline.records import NETWORK_COLUMNS  # noqa: E402
from diffstream.rl.env import BudgetEnv  # noqa: E402
from diffstream.rl.reward import modelled_records  # noqa: E402
from diffstream.rl.spaces import DEFAULT_LEVELS_BPP, FEATURES  # noqa: E402
from diffstream.scenario.load import load_scenario  # noqa: E402
from diffstream.sim.session import RunOptions, run_loaded  # noqa: E402
from tests.conftest import tiny_scenario  # noqa: E402
from tests.support.plugins import plugin_dir, write_module  # noqa: E402

__all__ = ["plugin_dir"]  # the fixture

pytestmark = pytest.mark.slow

# a JPEG-like curve (dB vs bpp), so the environment needs no calibration encodes
RQ = RateQualityModel((0.3, 0.5, 1.0, 2.0, 4.0), (20.0, 21.5, 24.5, 27.3, 31.2))
MARKOV = {"kind": "markov", "duration_s": 30}
LOSSY = {"share": 0.012, "delay_ms": 30, "queue": {"bytes": 8000},
         "loss": {"kind": "gilbert_elliott", "p_good_to_bad": 0.02, "p_bad_to_good": 0.3}}
PLAYBACK = {"kind": "playback", "startup_s": 0.5}

# A rule policy whose budgets lie on the environment's ladder: the highest level whose
# on-link bytes the recent throughput carries in one frame interval, past the queue.
LADDER_POLICY = '''
from diffstream.control.policies import Observation, PolicyModel
from diffstream.control.policies.base import harmonic_mean, queued_bytes
from diffstream.rl.spaces import DEFAULT_LEVELS_BPP, level_bits


class Ladder(PolicyModel):
    def budget_bits(self, obs: Observation) -> int:
        thr = harmonic_mean(obs.throughput_bps[-3:])
        if thr is None:
            return level_bits(obs, DEFAULT_LEVELS_BPP[3])
        room = thr * obs.frame_interval_s / 8.0 - 0.5 * queued_bytes(obs)
        best = DEFAULT_LEVELS_BPP[0]
        for bpp in DEFAULT_LEVELS_BPP:
            if obs.wire_bytes(level_bits(obs, bpp)) <= room:
                best = bpp
        return level_bits(obs, best)
'''


def _scenario(tmp_path: Path, policy: dict, **over) -> Path:
    return tiny_scenario(tmp_path, duration_s=6.0, trace=MARKOV, link=LOSSY,
                         arms=[{"name": "a", "codec": "jpeg", "policy": policy}], **over)


def _rollout(env: BudgetEnv, actions, seed: int | None = None):
    obs, _ = env.reset(seed=seed)
    out = [obs]
    rewards = []
    for a in actions:
        obs, r, term, trunc, _ = env.step(a)
        out.append(obs)
        rewards.append(r)
        assert not trunc
        if term:
            break
    return out, rewards, term


def test_gymnasium_env_checker_passes(tmp_path: Path) -> None:
    env = BudgetEnv(_scenario(tmp_path, {"kind": "rate"}), "a", rate_quality=RQ, min_bits=700)
    check_env(env, skip_render_check=True)
    assert env.observation_space.shape == (len(FEATURES),)
    assert env.action_space.n == len(DEFAULT_LEVELS_BPP)


@pytest.mark.parametrize("mode", [None, PLAYBACK], ids=["interactive", "playback"])
def test_replaying_a_rule_policys_budgets_reproduces_its_run(
        tmp_path: Path, plugin_dir: Path, mode: dict | None) -> None:
    write_module(plugin_dir, "rl_ladder", LADDER_POLICY)
    over = {"mode": mode} if mode else {}
    path = _scenario(tmp_path, {"kind": "rl_ladder:Ladder"}, **over)
    sc, spath = load_scenario(path)
    # the normal simulator: the session, network-only (payload = budget)
    ran = run_loaded(sc, spath, RunOptions(out_dir=tmp_path / "run", live_dashboard=False,
                                           network_only_bytes=0)).records["a"]
    pixels = sc.frame.pixels
    levels = [int(DEFAULT_LEVELS_BPP.index(next(b for b in DEFAULT_LEVELS_BPP
                                                 if int(b * pixels) == r.budget_bits)))
              for r in ran]
    assert len(set(levels)) >= 3  # the policy moved along the ladder

    env = BudgetEnv(path, "a", rate_quality=RQ, min_bits=0)
    _, _, term = _rollout(env, levels)
    assert term and env.result is not None
    replayed = env.result.records
    assert len(replayed) == len(ran)
    for mine, theirs in zip(replayed, ran, strict=True):
        for col in (*NETWORK_COLUMNS, "skipped", "complete", "decoded", "shown",
                    "display_s", "stall_s", "deadline_met"):
            assert getattr(mine, col) == getattr(theirs, col), (mine.seq, col)


def test_rewards_add_up_to_the_arms_modelled_qoe(tmp_path: Path) -> None:
    path = _scenario(tmp_path, {"kind": "fixed", "bpp": 0.75})
    env = BudgetEnv(path, "a", rate_quality=RQ, min_bits=700)
    rng = np.random.default_rng(0)
    actions = rng.integers(0, env.action_space.n, size=200)
    _, rewards, term = _rollout(env, actions, seed=5)
    assert term and len(rewards) == env.scenario.frames_per_arm
    sc = env.scenario
    expected = score(DiffstreamQoE(), slot_trace(
        modelled_records(env.result.records, RQ, 700, "psnr"), mode="interactive",
        fps=sc.frame.fps, duration_s=sc.duration_s))
    assert sum(rewards) == pytest.approx(expected, abs=1e-9)
    assert sum(r != 0 for r in rewards) > len(rewards) // 2  # dense: most steps score
    # sparse rewards: the same sum, all on the last step
    sparse = BudgetEnv(path, "a", rate_quality=RQ, min_bits=700, dense_rewards=False)
    _, lumped, _ = _rollout(sparse, actions, seed=5)
    assert all(r == 0 for r in lumped[:-1]) and lumped[-1] == pytest.approx(sum(rewards))
    # the fixed policy's level replayed = the fixed policy's own run, scored the same way
    level = DEFAULT_LEVELS_BPP.index(0.75)
    _, fixed_rewards, _ = _rollout(env, [level] * 200, seed=5)
    assert sum(fixed_rewards) == pytest.approx(env.run_arm_policy(seed=5)[1], abs=1e-9)


def test_a_frame_below_the_codec_floor_is_not_shown(tmp_path: Path) -> None:
    path = _scenario(tmp_path, {"kind": "rate"})
    env = BudgetEnv(path, "a", rate_quality=RQ, min_bits=1000)  # level 0 = 409 bits
    _, rewards, _ = _rollout(env, [0] * 200)
    assert sum(r.shown for r in env.result.records) > 10  # the link delivered them...
    modelled = env.modelled(env.result.records)
    assert not any(r.shown for r in modelled)  # ...but the codec would have skipped them
    assert all(r.psnr_db is None for r in modelled)
    assert sum(rewards) == pytest.approx(-50.0)  # a frozen session: the whole stall weight


def test_reset_with_a_seed_is_deterministic(tmp_path: Path) -> None:
    env = BudgetEnv(_scenario(tmp_path, {"kind": "rate"}), "a", rate_quality=RQ,
                    min_bits=700)
    actions = list(np.random.default_rng(1).integers(0, env.action_space.n, size=200))
    a_obs, a_rew, _ = _rollout(env, actions, seed=11)
    b_obs, b_rew, _ = _rollout(env, actions, seed=3)
    c_obs, c_rew, _ = _rollout(env, actions, seed=11)
    assert a_rew == c_rew and all(np.array_equal(x, y) for x, y in zip(a_obs, c_obs, strict=True))
    assert a_rew != b_rew  # another seed: another Markov trace and loss realisation
    first = [dataclasses.asdict(r) for r in env.result.records]
    _rollout(env, actions)  # no seed: the last one again
    assert [dataclasses.asdict(r) for r in env.result.records] == first


def test_budget_is_the_level_times_pixels_clamped(tmp_path: Path) -> None:
    path = _scenario(tmp_path, {"kind": "rate"}, max_bpp=1.0)
    env = BudgetEnv(path, "a", rate_quality=RQ, min_bits=0, levels_bpp=(0.2, 0.5, 3.0))
    obs, _ = env.reset()
    _, _, _, _, info = env.step(1)
    assert info["budget_bits"] == int(0.5 * 64 * 64)
    _, _, _, _, info = env.step(2)
    assert info["budget_bits"] == 64 * 64  # 3 bpp clamped to max_bpp = 1
    with pytest.raises(ValueError, match="not in"):
        env.step(3)


def test_default_calibration_measures_the_codec(tmp_path: Path) -> None:
    env = BudgetEnv(_scenario(tmp_path, {"kind": "rate"}), "a")
    rq = env.rate_quality
    assert len(rq.bpp) >= 2 and list(rq.quality_db) == sorted(rq.quality_db)
    assert env.min_bits > 0
    obs, _ = env.reset()
    assert obs[FEATURES.index("min_bpp")] == pytest.approx(env.min_bits / 4096)
