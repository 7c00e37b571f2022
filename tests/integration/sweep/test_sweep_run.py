"""Running sweeps: outputs, failures recorded without stopping, resume after a kill, a dead
pool worker, Ray against the local pool, and codec workers reused across runs."""

from __future__ import annotations

import functools
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from diffstream.scenario.schema import Scenario
from diffstream.sim.session import RunOptions, run_loaded
from diffstream.sweep.driver import SweepOptions, SweepResult, run_sweep_file
from tests.conftest import ROOT
from tests.integration.sweep.test_sweep_fixtures import (
    base_scenario,
    dying_runner,
    flaky_runner,
    make_traces,
    small_grid,
    write_sweep,
)


def quiet() -> Console:
    return Console(file=open(os.devnull, "w"), width=160)  # noqa: SIM115


def opts(**kw: object) -> SweepOptions:
    base = {"workers": 2, "live": False, "console": quiet()}
    base.update(kw)
    return SweepOptions(**base)  # type: ignore[arg-type]


def results(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines() if x]


def agg_text(res: SweepResult) -> str:
    return (res.out_dir / "aggregate.csv").read_text()


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """2 traces x 3 arms x 2 seeds = 12 network-only runs of 4 s."""
    make_traces(tmp_path / "traces", n=2)
    return write_sweep(tmp_path, grid=small_grid())


def test_local_pool_streams_results_and_aggregates(sweep: Path, tmp_path: Path) -> None:
    res = run_sweep_file(sweep, opts(out_dir=tmp_path / "out"))
    assert res.run.ok == 12 and not res.failed
    lines = results(res.out_dir)
    assert len(lines) == 12 and all(e["status"] == "ok" for e in lines)
    assert {e["id"] for e in lines} == {r.id for r in res.plan.runs}
    for e in lines:
        assert e["endpoint"] == "network-only" and e["summary"]["frames"] == 40
        assert (res.out_dir / "frames" / f"{e['id']}.jsonl").exists()
    for name in ("aggregate.csv", "aggregate.md", "runs.csv", "plan.jsonl",
                 "sweep.resolved.yaml"):
        assert (res.out_dir / name).exists(), name
    # the aggregate is the mean over the runs of each arm
    for row in res.aggregate.rows:
        qoe = [e["summary"]["qoe"] for e in lines if e["params"]["arm"] == row.arm]
        assert row.runs == 4 and math.isclose(row.stats["qoe"].mean, sum(qoe) / 4)
    oracle = next(r for r in res.aggregate.rows if r.arm == "jpeg-oracle")
    assert oracle.oracle_share == 1.0 and oracle.oracle_pairs == 4
    fixed = next(r for r in res.aggregate.rows if r.arm == "jpeg-fixed")
    assert fixed.baseline_ref == "jpeg-fixed" and fixed.oracle_share == 0.0
    assert "| jpeg-rate |" in (res.out_dir / "aggregate.md").read_text()


def test_a_run_equals_the_same_arm_in_a_session(sweep: Path, tmp_path: Path) -> None:
    res = run_sweep_file(sweep, opts(out_dir=tmp_path / "out", workers=1))
    spec = next(r for r in res.plan.runs if r.params["arm"] == "jpeg-rate")
    scenario = Scenario.model_validate(spec.scenario)
    session = run_loaded(scenario, Path(spec.scenario_dir) / "x.yaml",
                         RunOptions(out_dir=tmp_path / "session", live_dashboard=False,
                                    network_only_bytes=0, console=quiet()))
    mine = next(e for e in results(res.out_dir) if e["id"] == spec.id)["summary"]
    theirs = session.summaries[0].to_dict()
    assert {k: v for k, v in mine.items() if v is not None} == \
        {k: v for k, v in theirs.items() if not (isinstance(v, float) and math.isnan(v))}


def test_a_failing_run_is_recorded_and_resume_retries_it(sweep: Path, tmp_path: Path) -> None:
    runner = functools.partial(flaky_runner, marker_dir=str(tmp_path), target="jpeg-rate")
    out = tmp_path / "out"
    res = run_sweep_file(sweep, opts(out_dir=out, runner=runner, max_retries=0))
    assert res.run.ok == 11 and res.failed == 1  # the other runs went on
    bad = [e for e in results(out) if e["status"] == "failed"]
    assert len(bad) == 1 and bad[0]["params"]["arm"] == "jpeg-rate"
    assert "RuntimeError: injected failure" in bad[0]["error"]
    assert "Traceback (most recent call last)" in bad[0]["traceback"]
    row = next(r for r in res.aggregate.rows if r.arm == "jpeg-rate")
    assert row.runs == 3 and row.failed == 1
    assert "(1 failed)" in (out / "aggregate.md").read_text()

    again = run_sweep_file(sweep, opts(out_dir=out, runner=runner, resume=True))
    assert again.run.skipped == 11 and again.run.ok == 1 and not again.failed
    retry = results(out)[-1]
    assert retry["status"] == "ok" and retry["attempt"] == 2 and retry["id"] == bad[0]["id"]
    clean = run_sweep_file(sweep, opts(out_dir=tmp_path / "clean"))
    assert agg_text(again) == agg_text(clean)


def test_retries_within_one_invocation(sweep: Path, tmp_path: Path) -> None:
    runner = functools.partial(flaky_runner, marker_dir=str(tmp_path), target="jpeg-oracle")
    res = run_sweep_file(sweep, opts(out_dir=tmp_path / "out", runner=runner, max_retries=1))
    assert res.run.ok == 12 and not res.failed and res.run.attempts == 13
    states = [(e["status"], e["attempt"]) for e in results(res.out_dir)
              if e["params"]["arm"] == "jpeg-oracle" and e["params"]["seed"] == 1
              and e["params"]["trace"] == "t1.down"]
    assert states == [("failed", 1), ("ok", 2)]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_dead_pool_worker_is_replaced_and_nobody_else_is_charged(
        sweep: Path, tmp_path: Path, workers: int) -> None:
    runner = functools.partial(dying_runner, marker_dir=str(tmp_path), target="jpeg-rate")
    res = run_sweep_file(sweep, opts(out_dir=tmp_path / "out", runner=runner, workers=workers,
                                     max_retries=1))
    assert len(list(tmp_path.glob("?" * 16))) == 1  # the worker did die, once
    assert res.run.ok == 12 and not res.failed  # and the sweep went on
    failed = [e for e in results(res.out_dir) if e["status"] == "failed"]
    # Alone in flight, the culprit is known: charged, recorded, retried. With other runs in
    # flight it is not: they are all re-run one at a time, uncharged, so no bystander is
    # ever recorded as failed.
    assert all(e["params"]["arm"] == "jpeg-rate" and e["params"]["seed"] == 1 for e in failed)
    assert all("pool process running this run died" in e["error"] for e in failed)
    if workers == 1:
        assert len(failed) == 1


def test_resume_after_the_sweep_is_killed(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, "run_sim.py", str(sweep), "--out", str(out), "--workers", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        path = out / "results.jsonl"
        while time.monotonic() < deadline:
            if path.exists() and path.read_text().count("\n") >= 2:
                break
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)  # driver, forkserver and pool: all at once
    finally:
        proc.wait(timeout=30)
    killed_at = len(results(out))
    if killed_at >= 12:
        pytest.skip("the sweep finished before it could be killed (machine too fast)")
    res = run_sweep_file(sweep, opts(out_dir=out, resume=True))
    assert res.run.skipped == killed_at and res.run.ok == 12 - killed_at
    assert {e["id"] for e in results(out) if e["status"] == "ok"} == \
        {r.id for r in res.plan.runs}
    clean = run_sweep_file(sweep, opts(out_dir=tmp_path / "clean"))
    assert agg_text(res) == agg_text(clean)


def test_an_old_folder_needs_resume(sweep: Path, tmp_path: Path) -> None:
    from diffstream.errors import InputError

    run_sweep_file(sweep, opts(out_dir=tmp_path / "out", workers=1,
                               arms=["jpeg-fixed"]))
    with pytest.raises(InputError, match="--resume"):
        run_sweep_file(sweep, opts(out_dir=tmp_path / "out", workers=1))


@pytest.mark.slow
def test_ray_gives_the_same_aggregate_as_the_pool(sweep: Path, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="Ray is not installed (the [ray] extra)")
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"Ray cannot start here: {exc}")
    try:
        on_ray = run_sweep_file(sweep, opts(out_dir=tmp_path / "ray", executor="ray"))
    finally:
        ray.shutdown()
    local = run_sweep_file(sweep, opts(out_dir=tmp_path / "local"))
    assert on_ray.run.ok == 12 and not on_ray.failed
    assert agg_text(on_ray) == agg_text(local)
    by_id = {e["id"]: e["summary"] for e in results(local.out_dir)}
    assert all(by_id[e["id"]] == e["summary"] for e in results(on_ray.out_dir))
    assert {e["executor"] for e in results(on_ray.out_dir)} == {"ray"}


@pytest.mark.slow
def test_codec_runs_reuse_their_worker_processes(tmp_path: Path) -> None:
    base = base_scenario(duration_s=2.0, arms=[
        {"codec": "jpeg", "policy": {"kind": "rate"}},
        {"codec": "webp", "policy": {"kind": "fixed", "bpp": 1.5}}])
    path = write_sweep(tmp_path, base=base, grid={"seeds": [1]}, network_only_bytes=None)
    res = run_sweep_file(path, opts(out_dir=tmp_path / "out", workers=1))
    lines = results(res.out_dir)
    assert [e["endpoint"] for e in lines] == ["started", "reused"]
    assert len({e["worker"] for e in lines}) == 1
    assert all(e["summary"]["mean_psnr_db"] > 15 for e in lines)  # real codecs, scored
    assert res.aggregate.rows[0].stats["quality"].n == 1


@pytest.mark.slow
def test_reused_workers_give_the_session_results_and_survive_a_failure(tmp_path: Path) -> None:
    arms = [{"codec": "jpeg", "policy": {"kind": "rate"}},
            {"name": "broken", "codec": "jpeg", "codec_options": {"no_such_option": 1},
             "policy": {"kind": "rate"}},
            {"codec": "webp", "policy": {"kind": "mpc"}}]
    base = base_scenario(duration_s=3.0, arms=arms)
    path = write_sweep(tmp_path, base=base, grid={"seeds": [1]}, network_only_bytes=None)
    res = run_sweep_file(path, opts(out_dir=tmp_path / "out", workers=1, max_retries=0))
    lines = {e["params"]["arm"]: e for e in results(res.out_dir)}
    assert lines["broken"]["status"] == "failed" and "no_such_option" in lines["broken"]["error"]
    assert [lines[a]["endpoint"] for a in ("jpeg-rate", "broken", "webp-mpc")] == \
        ["started", "reused", "started"]  # a failure retires the pair
    scenario = Scenario.model_validate({**base, "seed": 1, "arms": [arms[0], arms[2]]})
    session = run_loaded(scenario, tmp_path / "x.yaml",
                         RunOptions(out_dir=tmp_path / "session", live_dashboard=False,
                                    console=quiet()))
    for s in session.summaries:
        mine = lines[s.arm]["summary"]
        assert mine["qoe"] == s.qoe and mine["mean_psnr_db"] == s.mean_psnr_db


def _descendants(pid: int) -> set[int]:
    """PIDs under ``pid`` (Linux /proc), to check nothing outlives an interrupted sweep."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(stat.parent.name)] = int(fields[1])
    out, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - out
        out |= frontier
    return out


def _running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_interrupting_a_codec_sweep_leaves_no_worker_processes(tmp_path: Path) -> None:
    base = base_scenario(duration_s=3.0)
    # enough runs that the sweep is still busy when the first result lands
    path = write_sweep(tmp_path, base=base, grid={"seeds": list(range(1, 25))},
                       network_only_bytes=None)
    out = tmp_path / "out"
    # A job started in the background (nohup, `&`) inherits SIGINT ignored, and Python
    # keeps it ignored; restore the default so the driver sees the Ctrl-C under test.
    proc = subprocess.Popen([sys.executable, "run_sim.py", str(path), "--out", str(out),
                             "--workers", "2"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out / "results.jsonl").exists():
        time.sleep(0.05)
    tree = _descendants(proc.pid)
    assert tree, "the sweep should have pool and codec worker processes by now"
    proc.send_signal(signal.SIGINT)  # the driver only, as `kill -INT` would
    assert proc.wait(timeout=60) == 130
    time.sleep(1.0)
    alive = {p for p in tree if _running(p)}
    assert not alive, f"left behind: {alive}"
    res = run_sweep_file(path, opts(out_dir=out, resume=True))
    assert not res.failed and res.run.ok + res.run.skipped == 24


def test_an_offline_bound_records_which_plan_it_kept(tmp_path: Path) -> None:
    """A sweep's ``optimal`` run checks the greedy oracle's plan in the simulation
    (sim.best_run) and its results line says which plan it kept; it never scores below the
    oracle's plan played under its own label."""
    make_traces(tmp_path / "traces", n=1)
    grid = {"traces": [{"kind": "mahimahi", "path": "traces/*.down"}], "codecs": ["jpeg"],
            "policies": [{"kind": "oracle"}, {"kind": "optimal"}], "seeds": [1]}
    res = run_sweep_file(write_sweep(tmp_path, grid=grid), opts(out_dir=tmp_path / "out"))
    lines = {e["params"]["arm"]: e for e in results(res.out_dir)}
    assert lines["jpeg-oracle"]["notes"] == []
    (note,) = lines["jpeg-optimal"]["notes"]
    assert note.startswith("jpeg-optimal: kept the ") and "oracle(greedy)" in note
