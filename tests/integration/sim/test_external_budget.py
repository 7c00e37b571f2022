"""ArmSimulation with external_budget=True: each budget is a Decision answered from outside
(sim/decision.py). Answering every decision with the arm's own policy must give the run
that run() gives, record for record (the hook the Gymnasium environment stands on)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from diffstream.scenario.build import build_trace
from diffstream.scenario.load import load_scenario
from diffstream.sim.arm import ArmSimulation
from diffstream.sim.endpoints import NetworkOnlyEndpoints
from tests.conftest import tiny_scenario

MARKOV = {"kind": "markov", "duration_s": 30}
LOSSY = {"share": 0.012, "delay_ms": 30, "queue": {"bytes": 8000},
         "loss": {"kind": "gilbert_elliott", "p_good_to_bad": 0.02, "p_bad_to_good": 0.3}}


def _sim(path: Path, arm: int, external: bool) -> ArmSimulation:
    sc, spath = load_scenario(path)
    trace = build_trace(sc, spath).scaled(sc.link.share)
    return ArmSimulation(sc, sc.arms[arm], trace, NetworkOnlyEndpoints(sc, None),
                         external_budget=external)


@pytest.mark.parametrize("mode", [{"kind": "interactive", "target_latency_ms": 300},
                                  {"kind": "playback", "startup_s": 0.5}])
def test_answering_each_decision_with_the_policy_gives_run(tmp_path: Path, mode: dict) -> None:
    path = tiny_scenario(tmp_path, duration_s=5.0, trace=MARKOV, link=LOSSY, mode=mode,
                         arms=[{"codec": "jpeg", "policy": {"kind": "mpc"}}])
    normal = _sim(path, 0, external=False).run()

    sim = _sim(path, 0, external=True)
    sim.start()
    frames = []
    while (decision := sim.advance()) is not None:
        frames.append(decision.obs.frame_index)
        decision.decide(sim.core.budget(decision.obs))
    driven = sim.finish()

    assert frames == list(range(len(normal.records)))
    assert len({r.budget_bits for r in normal.records}) > 3  # the policy really adapted
    assert [dataclasses.asdict(r) for r in driven.records] == \
        [dataclasses.asdict(r) for r in normal.records]
    assert driven.end_s == normal.end_s


def test_a_decision_is_answered_once(tmp_path: Path) -> None:
    sim = _sim(tiny_scenario(tmp_path), 0, external=True)
    sim.start()
    decision = sim.advance()
    assert decision is not None and decision.obs.frame_index == 0
    decision.decide(4096)
    with pytest.raises(RuntimeError, match="already decided"):
        decision.decide(4096)
