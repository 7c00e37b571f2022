"""``sim.best_run``: an arm whose policy names alternatives keeps the run that scores the
highest QoE in the simulation, played under the arm's own identity."""

from __future__ import annotations

from typing import Any

from diffstream.control.policies import OptimalPolicy
from diffstream.control.policies.oracle import OraclePolicy
from diffstream.scenario.schema import ArmSpec
from diffstream.sim.best_run import PlaysAs, alternatives_of, run_best


class FakeResult:
    def __init__(self, qoe: float, who: str) -> None:
        self.qoe, self.who, self.notes = qoe, who, []


def fake_runs(scores: dict[str, float]) -> tuple[Any, list[tuple[str, bool]]]:
    """A ``run(arm, primary)`` that scores each plan by the policy it plays."""
    calls: list[tuple[str, bool]] = []

    def run(arm: ArmSpec, primary: bool) -> Any:
        who = arm.policy.inner.kind if isinstance(arm.policy, PlaysAs) else arm.policy.kind
        calls.append((who, primary))
        return FakeResult(scores[who], who)

    return run, calls


def optimal_arm(**options: Any) -> ArmSpec:
    return ArmSpec(codec="jpeg", policy={"kind": "optimal", **options})


def test_the_higher_scoring_alternative_is_kept_and_said() -> None:
    run, calls = fake_runs({"optimal": 11.0, "oracle": 12.5})
    best = run_best(optimal_arm(), run, lambda r: r.qoe)
    assert best.who == "oracle" and calls == [("optimal", True), ("oracle", False)]
    assert "kept the oracle(greedy) plan (QoE 12.500" in best.notes[0]
    assert "optimal(DP) plan scored 11.000" in best.notes[0]


def test_the_own_plan_is_kept_when_it_wins_or_ties() -> None:
    for oracle_q in (9.0, 11.0):
        run, _ = fake_runs({"optimal": 11.0, "oracle": oracle_q})
        best = run_best(optimal_arm(), run, lambda r: r.qoe)
        assert best.who == "optimal" and "kept the optimal(DP) plan" in best.notes[0]


def test_no_alternatives_means_one_run_and_no_note() -> None:
    for arm in (optimal_arm(greedy_check=False), ArmSpec(codec="jpeg", policy={"kind": "rate"})):
        run, calls = fake_runs({"optimal": 1.0, "rate": 1.0})
        best = run_best(arm, run, lambda r: r.qoe)
        assert len(calls) == 1 and best.notes == []
    assert [type(p) for p in alternatives_of(optimal_arm())] == [OraclePolicy]


def test_an_alternative_opens_the_arm_as_the_arm_itself() -> None:
    """Label, records' policy column, calibration and the content tables stay the arm's own,
    so only the decisions differ between the two runs."""
    arm = optimal_arm(motion_ages=7)
    played = arm.model_copy(update={"policy": PlaysAs(arm.policy, OraclePolicy())})
    assert played.label == arm.label == "jpeg-optimal"
    assert played.needs_rate_quality is True and played.policy.needs_future is True
    assert played.policy.motion_ages == 7 and played.policy.kind == "optimal"
    assert OptimalPolicy().greedy_check is True


def test_reports_reach_the_played_policy() -> None:
    seen: list[Any] = []

    class Stateful:
        kind, label = "mine", "mine"

        def budget_bits(self, obs: Any) -> int:
            return 42

        def on_report(self, report: Any, now_s: float) -> None:
            seen.append((report, now_s))

    p = PlaysAs(OptimalPolicy(), Stateful())
    p.on_report("r", 1.5)
    assert seen == [("r", 1.5)] and p.budget_bits(None) == 42  # type: ignore[arg-type]


def test_non_repeatable_runs_are_not_checked() -> None:
    """Under measured compute two runs of the same plan differ: the best of them would
    flatter the arm, so the alternatives are not run, and the note says why."""
    run, calls = fake_runs({"optimal": 11.0, "oracle": 12.5})
    best = run_best(optimal_arm(), run, lambda r: r.qoe, repeatable=False)
    assert best.who == "optimal" and calls == [("optimal", True)]
    assert "non-repeatable" in best.notes[0]
