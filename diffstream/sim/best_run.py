"""An offline bound checked in the simulation itself: run an arm's alternative plans and keep
the best.

``optimal``'s dynamic programme is optimal in its *model* of the link and the QoE (its plans
include the greedy oracle's, so in the model it is never below the oracle). The simulator
differs from that model in the loss draws (the DP plans their expectation; which frames a
draw hits moves with the packet count before it), WebRTC's averaged freeze threshold (a
fixed point along one path, not a state) and the stale-slot quality. On three of 18 real
traces that put the DP's realised QoE 0.04-0.37 dB under the greedy oracle's
(docs/policies.md). A bound must not score below a plan it can also play, so a policy may
name alternatives (``exact_alternatives()``): the arm is rerun with each one's decisions
under the *same* label, codec, seed and compute (the frame header carries the label, so
another label would change the bytes), and the run with the higher scenario QoE is the
arm's result. Runs are deterministic for a compute profile, so the kept run is exactly what
replaying its decisions gives. The policy column of the records keeps the arm's own kind;
``ArmResult.notes`` says which plan won and both scores.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from diffstream.control.policies.base import Observation
from diffstream.netsim.trace import Trace
from diffstream.pipeline.compute import ComputeModel
from diffstream.pipeline.costs import codec_charge
from diffstream.pipeline.records import FrameRecord
from diffstream.scenario.schema import ArmSpec, Scenario
from diffstream.sim.arm import ArmResult, ArmSimulation, summarise_result
from diffstream.sim.endpoints import Endpoints
from diffstream.sim.fastpath import FastArmSimulation


class PlaysAs:
    """``inner``'s decisions under ``outer``'s identity.

    Everything the simulator reads off a policy before the first decision (kind, so the arm's
    label and the records' policy column; ``needs_future``; ``needs_rate_quality``, which
    decides calibration; ``motion_ages``, which decides the content tables the encoder
    computes) is ``outer``'s, so the alternative run opens the arm exactly as the original
    did; only ``budget_bits`` and the report hook are ``inner``'s.
    """

    def __init__(self, outer: Any, inner: Any) -> None:
        self.outer, self.inner = outer, inner
        self.kind = outer.kind
        self.needs_future = bool(getattr(outer, "needs_future", False)) or bool(
            getattr(inner, "needs_future", False))
        self.needs_rate_quality = getattr(outer, "needs_rate_quality", False)
        self.motion_ages = getattr(outer, "motion_ages", 0)

    @property
    def name(self) -> str:
        return self.kind

    @property
    def label(self) -> str:
        return f"{self.outer.label} playing {self.inner.label}"

    def budget_bits(self, obs: Observation) -> int:
        return int(self.inner.budget_bits(obs))

    def on_report(self, report: Any, now_s: float) -> None:
        hook = getattr(self.inner, "on_report", None)
        if callable(hook):
            hook(report, now_s)

    def predicted_throughput_bps(self, obs: Observation) -> float | None:
        predict = getattr(self.inner, "predicted_throughput_bps", None)
        return predict(obs) if callable(predict) else None


def alternatives_of(arm: ArmSpec) -> list[Any]:
    """The plans ``arm``'s policy asks to be checked against (none for most policies)."""
    alts = getattr(arm.policy, "exact_alternatives", None)
    return list(alts()) if callable(alts) else []


def run_best(arm: ArmSpec, run: Callable[[ArmSpec, bool], ArmResult],
             qoe: Callable[[ArmResult], float], *, repeatable: bool = True) -> ArmResult:
    """``run(arm, primary)`` the arm, then each alternative under the arm's identity; return
    the run with the highest ``qoe`` (ties keep the arm's own plan). ``primary`` is True
    only for the first run (a caller shows that one live).

    ``repeatable``: the arm's runs are a function of scenario and seed (network-only, or a
    compute profile). When they are not (measured compute), the alternatives are not run:
    the best of several noisy runs would flatter the arm, and the kept run would not be
    what replaying its decisions gives."""
    best = run(arm, True)
    alts = alternatives_of(arm)
    if not alts:
        return best
    if not repeatable:
        best.notes.append(
            f"{arm.label}: kept the {arm.policy.label} plan without checking "
            f"{', '.join(a.label for a in alts)}: measured compute makes runs non-repeatable "
            "(use a compute profile)")
        return best
    best_q = own_q = qoe(best)
    best_label = arm.policy.label
    for alt in alts:
        result = run(arm.model_copy(update={"policy": PlaysAs(arm.policy, alt)}), False)
        q = qoe(result)
        if q > best_q:
            best, best_q, best_label = result, q, alt.label
    best.notes.append(
        f"{arm.label}: kept the {best_label} plan (QoE {best_q:.3f}; the arm's own "
        f"{arm.policy.label} plan scored {own_q:.3f}) after checking "
        f"{', '.join(a.label for a in alts)} in the simulation")
    return best


def simulate_arm(scenario: Scenario, arm: ArmSpec, stream: Trace, endpoints: Endpoints | None,
                 *, network_only_bytes: int | None, reference_loop: bool = False,
                 on_record: Callable[[FrameRecord], None] | None = None) -> ArmResult:
    """One arm as the session and the sweep run it: network-only on the fast path (the
    SimPy loop over ``endpoints`` with ``reference_loop``), codec runs over ``endpoints``,
    and the policy's alternatives checked by ``run_best``. ``on_record`` sees the first
    run only."""
    network_only = network_only_bytes is not None

    def run_one(spec: ArmSpec, primary: bool) -> ArmResult:
        shown = on_record if primary else None
        if network_only and not reference_loop:
            return FastArmSimulation(scenario, spec, stream, network_only_bytes or None,
                                     on_record=shown).run()
        assert endpoints is not None, "the SimPy loop needs endpoints"
        return ArmSimulation(scenario, spec, stream, endpoints,
                             calibrate=not network_only and spec.needs_rate_quality,
                             on_record=shown).run()

    repeatable = network_only or codec_charge(
        ComputeModel(scenario.compute), arm.codec, arm.codec_options).deterministic
    return run_best(arm, run_one, lambda r: summarise_result(scenario, r).qoe,
                    repeatable=repeatable)
