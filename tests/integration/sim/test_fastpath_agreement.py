"""The fast network-only path (``sim.fastpath``) against the full SimPy loop
(``sim.arm.ArmSimulation`` with ``NetworkOnlyEndpoints``): frame by frame, every record
column equal (the network columns - send, arrivals, bytes, packets, loss, skips, budget,
delivery, deadline - and the playout columns that follow from them), on every shipped
scenario and on a grid of traces x policies x modes x loss models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from diffstream.control.policies.base import Observation
from diffstream.errors import ConfigError
from diffstream.scenario.build import build_trace
from diffstream.scenario.load import load_scenario
from diffstream.scenario.schema import Scenario
from diffstream.sim.arm import ArmSimulation
from diffstream.sim.endpoints import NetworkOnlyEndpoints
from diffstream.sim.fastpath import FastArmSimulation
from tests.conftest import ROOT
from tests.integration.sim.tie_scenario import tie_scenario


def _scenario_files() -> list[Path]:
    out = []
    for p in sorted((ROOT / "scenarios").glob("*.yaml")):
        try:
            load_scenario(p)
        except ConfigError:  # a sweep file, not a scenario
            continue
        out.append(p)
    return out


def _line(rec: Any) -> str:
    return json.dumps(rec.to_dict())  # exact floats and int/float types, as frames.jsonl


def assert_agree(sc: Scenario, trace_path: Path, payload: int | None) -> int:
    """Run every arm both ways; fail naming the first frame and columns that differ."""
    trace = build_trace(sc, trace_path).scaled(sc.link.share)
    frames = 0
    for arm in sc.arms:
        ref = ArmSimulation(sc, arm, trace, NetworkOnlyEndpoints(sc, payload),
                            calibrate=False).run()
        fast = FastArmSimulation(sc, arm, trace, payload).run()
        assert len(fast.records) == len(ref.records) == sc.frames_per_arm
        for r, f in zip(ref.records, fast.records, strict=True):
            if _line(r) != _line(f):
                a, b = r.to_dict(), f.to_dict()
                diff = {k: (a[k], b[k]) for k in a if json.dumps(a[k]) != json.dumps(b[k])}
                pytest.fail(f"arm {arm.label} frame {r.seq}: full loop vs fast path {diff}")
        assert fast.offered_bytes == ref.offered_bytes
        assert fast.end_s == ref.end_s
        frames += len(ref.records)
    return frames


@pytest.mark.slow
@pytest.mark.parametrize("path", _scenario_files(), ids=lambda p: p.stem)
@pytest.mark.parametrize("payload", [None, 1000], ids=["budget", "1kB"])
def test_every_shipped_scenario_agrees(path: Path, payload: int | None) -> None:
    sc, spath = load_scenario(path)
    sc = sc.model_copy(update={"duration_s": min(sc.duration_s, 8.0)})
    assert assert_agree(sc, spath, payload) > 0


def _grid_scenario(trace: dict, mode: dict, loss: dict, policies: list[dict],
                   queue: dict, fps: float = 30.0, duration: float = 5.0) -> Scenario:
    return Scenario.model_validate({
        "name": "agree", "seed": 5, "duration_s": duration,
        "frame": {"width": 128, "height": 128, "fps": fps},
        "mode": mode, "trace": trace,
        "link": {"share": 0.2, "delay_ms": 30, "queue": queue, "loss": loss},
        "arms": [{"codec": "jpeg", "policy": p} for p in policies],
    })


TRACES = {
    "lte": {"kind": "mahimahi", "path": str(ROOT / "scenarios/traces/lte_like.down")},
    "markov": {"kind": "markov", "duration_s": 30},
    "constant": {"kind": "constant", "mbps": 2.0, "duration_s": 10},
}
MODES = {
    "interactive": {"kind": "interactive", "target_latency_ms": 200},
    "playback": {"kind": "playback", "startup_s": 0.5, "max_buffer_s": 2.0,
                 "max_outstanding": 3},
}
POLICIES = [{"kind": "fixed", "bpp": 0.5}, {"kind": "rate"}, {"kind": "deadline"},
            {"kind": "mpc"}, {"kind": "oracle"}, {"kind": "buffer"}, {"kind": "gcc"},
            {"kind": "optimal"}]


@pytest.mark.parametrize("trace", list(TRACES))
@pytest.mark.parametrize("mode", list(MODES))
def test_grid_agrees(trace: str, mode: str) -> None:
    policies = [p for p in POLICIES if mode == "playback" or p["kind"] != "buffer"]
    sc = _grid_scenario(TRACES[trace], MODES[mode], {"kind": "bernoulli", "p": 0.02},
                        policies, {"bytes": 30000}, duration=2.0)
    assert assert_agree(sc, ROOT / "scenarios" / "x.yaml", None) > 0


@pytest.mark.parametrize("mode", list(MODES))
def test_bursty_loss_packet_queue_and_fixed_payloads_agree(mode: str) -> None:
    sc = _grid_scenario(TRACES["lte"], MODES[mode],
                        {"kind": "gilbert_elliott", "p_good_to_bad": 0.05,
                         "p_bad_to_good": 0.3, "loss_bad": 0.6},
                        [{"kind": "rate"}, {"kind": "mpc"}], {"packets": 8}, fps=25.0,
                        duration=3.0)
    assert assert_agree(sc, ROOT / "scenarios" / "x.yaml", 3000) > 0


def test_ties_of_reports_and_capture_times_agree() -> None:
    """Reports landing exactly on capture times (``tie_scenario``): the fast path must order
    the sender's timeout before the report, as SimPy does."""
    sc = tie_scenario("rate", "mpc")
    assert assert_agree(sc, ROOT / "scenarios" / "x.yaml", 1000) > 0
    # the shipped policies only react to throughput samples, and a frame that left at its
    # send time gives none: a policy reading the report's other fields sees the order
    sc.arms[:] = [sc.arms[0].model_copy(update={"policy": _FeedbackEcho()})]
    assert assert_agree(sc, ROOT / "scenarios" / "x.yaml", 1000) > 0


class _FeedbackEcho:
    """A test policy whose budget encodes what the sender has heard back (reports, RTT,
    bytes in flight), so any difference in report delivery order shows in ``budget_bits``."""

    kind = "echo"
    label = "echo"

    def budget_bits(self, obs: Observation) -> int:
        rtt_us = int((obs.rtt_s or 0.0) * 1e6)
        return 1000 + int(obs.inflight_bytes) + rtt_us % 1000


@pytest.mark.parametrize("mode", list(MODES))
def test_session_outputs_are_the_same_both_ways(tmp_path: Path, mode: str) -> None:
    """``run_sim.py --network-only`` (fast path) and ``--reference-loop``: the same
    frames.jsonl and summary.csv, byte for byte."""
    from diffstream.sim.session import RunOptions, run_scenario
    from tests.conftest import tiny_scenario

    arms = [{"codec": "jpeg", "policy": {"kind": k}} for k in ("rate", "mpc", "oracle")]
    path = tiny_scenario(tmp_path, mode=MODES[mode], arms=arms,
                         link={"share": 0.05, "delay_ms": 20, "queue": {"bytes": 20000},
                               "loss": {"kind": "bernoulli", "p": 0.02}})
    outs = {}
    for ref in (False, True):
        out = tmp_path / ("ref" if ref else "fast")
        run_scenario(path, RunOptions(out_dir=out, live_dashboard=False, network_only_bytes=0,
                                      reference_loop=ref))
        outs[ref] = [(out / f).read_text() for f in ("frames.jsonl", "summary.csv")]
    assert outs[False] == outs[True]
    assert outs[False][0].count("\n") == 3 * 30


def test_reference_loop_needs_network_only(tmp_path: Path) -> None:
    from diffstream.cli import run
    from tests.conftest import tiny_scenario

    assert run([str(tiny_scenario(tmp_path)), "--reference-loop", "--no-dashboard"]) == 2


def test_sweep_cell_is_the_same_both_ways(tmp_path: Path) -> None:
    """A network-only sweep cell (``sweep.execute``): fast path by default, the full loop
    with ``reference_loop``; same summary and frames."""
    from dataclasses import replace

    from diffstream.sweep.execute import execute
    from diffstream.sweep.plan import RunSpec

    sc = _grid_scenario(TRACES["lte"], MODES["playback"], {"kind": "bernoulli", "p": 0.02},
                        [{"kind": "mpc"}], {"bytes": 30000}, duration=2.0)
    spec = RunSpec(id="cell", index=0, params={}, scenario=sc.model_dump(mode="json"),
                   scenario_dir=str(ROOT / "scenarios"), network_only_bytes=0)
    fast, ref = execute(spec), execute(replace(spec, reference_loop=True))
    assert fast["status"] == ref["status"] == "ok", (fast.get("error"), ref.get("error"))
    assert json.dumps(fast["summary"]) == json.dumps(ref["summary"])  # NaN-safe
    assert [_line(r) for r in fast["frames"]] == [_line(r) for r in ref["frames"]]
