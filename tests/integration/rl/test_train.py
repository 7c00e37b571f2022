"""python -m diffstream.rl.train, then the weights as a policy plugin in the simulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("gymnasium")

from diffstream.rl.env import BudgetEnv  # noqa: E402
from diffstream.rl.policy import LearnedPolicy, load_weights  # noqa: E402
from diffstream.rl.spaces import DEFAULT_LEVELS_BPP  # noqa: E402
from diffstream.rl.train import episode_return, main  # noqa: E402
from diffstream.scenario.load import load_scenario  # noqa: E402
from diffstream.sim.session import RunOptions, run_loaded  # noqa: E402
from tests.conftest import tiny_scenario  # noqa: E402

pytestmark = pytest.mark.slow

KIND = "diffstream.rl.policy:LearnedPolicy"


def test_train_then_run_the_weights_as_a_plugin(tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    markov = {"kind": "markov", "duration_s": 30}
    scenario = tiny_scenario(tmp_path, duration_s=4.0, trace=markov,
                             link={"share": 0.012, "delay_ms": 30, "queue": {"bytes": 8000}},
                             arms=[{"codec": "jpeg", "policy": {"kind": "rate"}}])
    out = tmp_path / "w.json"
    assert main([str(scenario), "--out", str(out), "--iterations", "2", "--population", "4",
                 "--seeds", "1", "--eval-seeds", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(ln.startswith("iteration ") for ln in lines) == 2
    assert any(ln.startswith("held-out seeds: learned ") and "rate" in ln and "mpc" in ln
               for ln in lines)
    meta = json.loads(out.read_text())["meta"]
    assert meta["iterations"] == 2 and set(meta["return_train_seeds"]) == {
        "learned", "rate", "mpc"}

    # the learned policy through the normal simulator = its greedy actions through the env
    env = BudgetEnv(scenario, dense_rewards=False)
    model = load_weights(str(out))
    policy = LearnedPolicy(kind=KIND, weights=str(out))
    result, qoe = env.run_arm_policy(seed=0, policy=policy)
    assert episode_return(env, model, seed=0) == pytest.approx(qoe, abs=1e-9)
    assert [r.budget_bits for r in env.result.records] == [r.budget_bits
                                                           for r in result.records]
    assert meta["return_train_seeds"]["learned"] == pytest.approx(qoe, abs=1e-6)

    # and as a plugin in a scenario, with the real codec in the worker processes
    run = tiny_scenario(tmp_path, duration_s=2.0, arms=[
        {"name": "learned", "codec": "jpeg", "policy": {"kind": KIND, "weights": str(out)}}])
    sc, spath = load_scenario(run)
    records = run_loaded(sc, spath, RunOptions(out_dir=tmp_path / "run",
                                               live_dashboard=False)).records["learned"]
    ladder = {min(int(b * 4096), int(sc.max_bpp * sc.frame.pixels))
              for b in DEFAULT_LEVELS_BPP}
    assert records and all(r.budget_bits in ladder for r in records)
    assert all(r.policy == KIND for r in records)
    assert any(r.psnr_db is not None for r in records)  # decoded and scored for real
