"""``optimal`` (whole-arm DP) against ``oracle`` (greedy bound) in the simulator: the DP's
simulated QoE is never below the greedy oracle's, on the project's traces and a step drop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from diffstream.sim.session import RunOptions, run_scenario
from tests.conftest import ROOT, tiny_scenario

TRACES: dict[str, dict[str, Any]] = {
    "lte_like": {"kind": "mahimahi", "path": str(ROOT / "scenarios/traces/lte_like.down")},
    "lte_like_s11": {"kind": "mahimahi",
                     "path": str(ROOT / "scenarios/traces/lte_like_s11.down")},
    "lte_like_s12": {"kind": "mahimahi",
                     "path": str(ROOT / "scenarios/traces/lte_like_s12.down")},
    "lte_like_s13": {"kind": "mahimahi",
                     "path": str(ROOT / "scenarios/traces/lte_like_s13.down")},
    # 100 kbit/s, a drop to 20 kbit/s for 2 s, back (share 0.05)
    "step_drop": {"kind": "steps", "steps": [[0, 2.0], [1.5, 0.4], [3.5, 2.0]],
                  "duration_s": 10},
    "constant": {"kind": "constant", "mbps": 1.0, "duration_s": 10},
}
INTERACTIVE = {"kind": "interactive", "target_latency_ms": 300}
PLAYBACK = {"kind": "playback", "startup_s": 0.5, "max_buffer_s": 2.0}


def quiet() -> Console:
    return Console(file=open("/dev/null", "w"), width=160)  # noqa: SIM115


def arms_qoe(tmp_path: Path, trace: str, mode: dict[str, Any], *,
             network_only: bool = False) -> dict[str, Any]:
    share = 0.012 if trace.startswith("lte") else 0.05  # the default scenario's share
    path = tiny_scenario(tmp_path, trace=TRACES[trace], duration_s=5.0, mode=mode,
                         link={"share": share, "delay_ms": 30, "queue": {"bytes": 30000}},
                         arms=[{"codec": "jpeg", "policy": {"kind": "oracle"}},
                               {"codec": "jpeg", "policy": {"kind": "optimal"}}])
    res = run_scenario(path, RunOptions(live_dashboard=False, console=quiet(),
                                        network_only_bytes=0 if network_only else None))
    return {s.arm: s for s in res.summaries}


def test_optimal_runs_a_whole_arm_network_only(tmp_path: Path) -> None:
    """Plumbing, fast: the simulator gives the DP the future and the arm's context, and its
    closed-loop budgets never send a frame it knows will be late (payload = budget here)."""
    out = arms_qoe(tmp_path, "step_drop", INTERACTIVE, network_only=True)
    opt, orc = out["jpeg-optimal"], out["jpeg-oracle"]
    assert opt.frames == orc.frames == 50
    assert opt.freeze_s <= orc.freeze_s + 1e-9
    assert opt.mean_bpp > 0.1  # it sends real frames, not only skips


@pytest.mark.slow
@pytest.mark.parametrize("trace", sorted(TRACES))
def test_optimal_qoe_at_least_the_greedy_oracle_interactive(tmp_path: Path, trace: str) -> None:
    out = arms_qoe(tmp_path, trace, INTERACTIVE)
    assert out["jpeg-optimal"].qoe >= out["jpeg-oracle"].qoe, (
        out["jpeg-optimal"].qoe, out["jpeg-oracle"].qoe)


@pytest.mark.slow
@pytest.mark.parametrize("trace", ["lte_like", "step_drop"])
def test_optimal_qoe_at_least_the_greedy_oracle_playback(tmp_path: Path, trace: str) -> None:
    out = arms_qoe(tmp_path, trace, PLAYBACK)
    assert out["jpeg-optimal"].qoe >= out["jpeg-oracle"].qoe, (
        out["jpeg-optimal"].qoe, out["jpeg-oracle"].qoe)
