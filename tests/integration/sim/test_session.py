"""The simulation loop end to end: worker processes over ZeroMQ, outputs, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from diffstream.cli import run
from diffstream.output.report import read_frames_jsonl
from diffstream.pipeline.records import NETWORK_COLUMNS
from diffstream.scenario.load import load_scenario
from diffstream.sim.endpoints import WorkerError
from diffstream.sim.session import RunOptions, run_loaded, run_scenario
from tests.conftest import ROOT, tiny_scenario


def quiet() -> Console:
    return Console(file=open("/dev/null", "w"), width=160)  # noqa: SIM115


def network_columns(path: Path, arms: set[str] | None = None) -> list[tuple]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows = sorted((r for r in rows if arms is None or r["arm"] in arms),
                  key=lambda r: (r["arm"], r["seq"]))
    return [tuple(r[c] for c in NETWORK_COLUMNS) for r in rows]


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_worker_processes_exchange_frames(tmp_path: Path, transport: str) -> None:
    path = tiny_scenario(tmp_path)
    res = run_scenario(path, RunOptions(live_dashboard=False, transport=transport,
                                        console=quiet()))
    records = read_frames_jsonl(res.out_dir / "frames.jsonl")
    assert len(records) == 2 * 30  # every frame of every arm is accounted for
    for arm in ("jpeg-fixed", "webp-rate"):
        rs = [r for r in records if r.arm == arm]
        assert [r.seq for r in rs] == list(range(30))
        shown = [r for r in rs if r.shown]
        # 100 kbit/s carries ~2.4 bpp per frame: nearly every frame is decoded and shown
        assert len(shown) >= 25, arm
        assert all(r.decoded and r.psnr_db is not None and r.psnr_db > 20 for r in shown)
        assert all(r.payload_bytes * 8 <= r.budget_bits for r in rs if not r.skipped)
        assert all(r.latency_s is not None and r.latency_s <= 0.3 + 1e-9 for r in shown)
        assert not any(r.error for r in rs)
        # the receiver's sample of each delivered frame is logged; so is the rate policy's
        # own prediction (the fixed policy has none)
        assert sum(r.throughput_bps is not None for r in rs) >= 25
        preds = [r.throughput_pred_bps for r in rs]
        assert all(p is None for p in preds) if arm == "jpeg-fixed" else sum(
            p is not None for p in preds) >= 25
    assert (res.out_dir / "summary.csv").exists()
    assert (res.out_dir / "scenario.resolved.yaml").exists()
    assert "sender[" in (res.out_dir / "workers.log").read_text()  # both workers logged


def test_network_only_is_deterministic_and_seed_sensitive(tmp_path: Path) -> None:
    lossy = {"share": 0.05, "delay_ms": 20, "queue": {"bytes": 6000},
             "loss": {"kind": "bernoulli", "p": 0.05}}
    cols = []
    for i, seed in enumerate((3, 3, 4)):
        d = tmp_path / f"r{i}"
        d.mkdir()
        path = tiny_scenario(d, seed=seed, link=lossy, duration_s=10.0,
                             trace={"kind": "markov", "duration_s": 30})
        run_scenario(path, RunOptions(live_dashboard=False, network_only_bytes=0,
                                      console=quiet()))
        cols.append(network_columns(d / "out" / "frames.jsonl"))
    assert cols[0] == cols[1]
    assert cols[0] != cols[2]  # the seed drives the trace and the loss


def test_playback_mode_runs(tmp_path: Path) -> None:
    path = tiny_scenario(tmp_path, mode={"kind": "playback", "startup_s": 0.5,
                                         "max_buffer_s": 2.0},
                         arms=[{"codec": "jpeg", "policy": {"kind": "buffer"}},
                               {"codec": "jpeg", "policy": {"kind": "oracle"}}])
    res = run_scenario(path, RunOptions(live_dashboard=False, network_only_bytes=0,
                                        console=quiet()))
    for arm, recs in res.records.items():
        assert len(recs) == 30, arm
        assert all(r.deadline_s is None for r in recs)
        shown = [r.display_s for r in recs if r.shown]
        assert shown == sorted(shown)  # playout order
        assert sum(r.shown for r in recs) >= 25


def test_worker_failure_is_reported(tmp_path: Path) -> None:
    path = tiny_scenario(tmp_path, arms=[{"codec": "jpeg", "codec_options": {"bogus": 1},
                                          "policy": {"kind": "fixed", "bpp": 1.0}}])
    # a scenario file gets its codec_options checked before any worker starts (exit 2)...
    assert run([str(path), "--no-dashboard"]) == 2
    # ...so a worker failure needs a scenario that bypassed the file checks
    good, spath = load_scenario(tiny_scenario(tmp_path))
    arm = good.arms[0].model_copy(update={"codec_options": {"bogus": 1}})
    sc = good.model_copy(update={"arms": [arm]})
    with pytest.raises(WorkerError, match="bogus"):
        run_loaded(sc, spath, RunOptions(live_dashboard=False, console=quiet()))


def test_cli_writes_outputs_and_respects_arm_filter(tmp_path: Path) -> None:
    path = tiny_scenario(tmp_path)
    out = tmp_path / "cli"
    assert run([str(path), "--no-dashboard", "--out", str(out), "--arms", "jpeg-fixed",
                "--network-only", "500"]) == 0
    recs = read_frames_jsonl(out / "frames.jsonl")
    assert {r.arm for r in recs} == {"jpeg-fixed"}
    assert all(r.payload_bytes == 500 for r in recs)


@pytest.mark.slow
def test_lte_trace_twice_same_network_columns(tmp_path: Path) -> None:
    """The default scenario, as a user runs it; then again (same seed) for one arm: the same
    network columns. (The rerun is one arm, not thirteen, to keep CI short: every arm's
    network timeline is a function of scenario and seed alone, and the learned codecs'
    cross-process determinism has tests of its own, e.g. test_gic's two-process decode.)"""
    again = ["jpeg-mpc"]
    outs = [tmp_path / "run0", tmp_path / "run1"]
    assert run([str(ROOT / "scenarios" / "lte_trace.yaml"), "--no-dashboard",
                "--out", str(outs[0])]) == 0
    assert run([str(ROOT / "scenarios" / "lte_trace.yaml"), "--no-dashboard",
                "--out", str(outs[1]), "--arms", ",".join(again)]) == 0
    for name in ("frames.jsonl", "summary.csv", "scenario.resolved.yaml", "timeline.png",
                 "quality.png", "latency_cdf.png"):
        assert (outs[0] / name).stat().st_size > 0, name
    assert {r.arm for r in read_frames_jsonl(outs[1] / "frames.jsonl")} == set(again)
    assert (network_columns(outs[0] / "frames.jsonl", set(again))
            == network_columns(outs[1] / "frames.jsonl"))
    recs = read_frames_jsonl(outs[0] / "frames.jsonl")
    sc, _ = load_scenario(ROOT / "scenarios" / "lte_trace.yaml")
    assert len(recs) == len(sc.arms) * sc.frames_per_arm
    # the scenario is tuned so chosen budgets cross the codecs' working range
    adaptive = [r.budget_bits / sc.frame.pixels for r in recs if r.policy in ("rate", "mpc")]
    assert min(adaptive) < 0.3 and max(adaptive) > 1.5


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


@pytest.mark.slow
def test_workers_exit_when_the_coordinator_is_killed(tmp_path: Path) -> None:
    """A SIGKILLed coordinator cannot say bye: its workers must notice and exit."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    path = tiny_scenario(tmp_path, duration_s=600.0)
    coord = subprocess.Popen([sys.executable, "run_sim.py", str(path), "--no-dashboard"],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        kids: list[psutil.Process] = []
        while time.monotonic() < deadline and len(kids) < 2:
            time.sleep(0.5)
            kids = psutil.Process(coord.pid).children()
        assert len(kids) == 2, "the coordinator did not start its two workers"
        log = tmp_path / "out" / "workers.log"
        while time.monotonic() < deadline and "ready" not in _text(log):
            time.sleep(0.5)  # both workers up and serving (imports done)
    finally:
        os.kill(coord.pid, signal.SIGKILL)
        coord.wait()
    gone, alive = psutil.wait_procs(kids, timeout=30)
    for p in alive:
        p.kill()
    assert not alive, "workers outlived their killed coordinator"


@pytest.mark.parametrize("network_only", [False, True])
def test_an_arms_name_costs_no_bytes(tmp_path: Path, network_only: bool) -> None:
    """Two arms that differ only in their names send the same bytes and get the same network
    results: the frame header carries a fixed-width tag of the label, not the label (a longer
    label used to cost a byte per character on every frame; on a lossy link that changed
    which frames the loss hit)."""
    arm = {"codec": "jpeg", "policy": {"kind": "rate"}}
    path = tiny_scenario(
        tmp_path, duration_s=3.0,
        link={"share": 0.05, "delay_ms": 20, "queue": {"bytes": 20000},
              "loss": {"kind": "gilbert_elliott", "p_good_to_bad": 0.05, "p_bad_to_good": 0.3}},
        arms=[{**arm, "name": "a"}, {**arm, "name": "a-much-longer-name-for-the-same-arm"}])
    res = run_scenario(path, RunOptions(live_dashboard=False, console=quiet(),
                                        network_only_bytes=0 if network_only else None))
    short, long = (res.records[k] for k in ("a", "a-much-longer-name-for-the-same-arm"))
    cols = [c for c in NETWORK_COLUMNS if c != "arm"]
    assert [[getattr(r, c) for c in cols] for r in short] == \
        [[getattr(r, c) for c in cols] for r in long]
    assert sum(r.header_bytes for r in short) == sum(r.header_bytes for r in long) > 0
