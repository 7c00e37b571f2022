"""Item 9: SIGTERM ends a run as cleanly as Ctrl-C: workers gone, temp folder removed,
finished arms kept, a message, exit 143."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT, tiny_scenario
from tests.support.live_harness import wait_for


def _start(tmp_path: Path, **scenario: object) -> tuple[subprocess.Popen, Path, Path]:
    tmp = tmp_path / "tmp"  # the run's TMPDIR: its worker socket folder goes here
    tmp.mkdir()
    out = tmp_path / "o"
    path = tiny_scenario(tmp_path, **scenario)
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONUNBUFFERED="1")
    p = subprocess.Popen([sys.executable, str(ROOT / "run_sim.py"), str(path), "--no-dashboard",
                          "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env, cwd=tmp_path, start_new_session=True)
    return p, tmp, out


def _terminate(p: subprocess.Popen) -> tuple[int, str, list[psutil.Process]]:
    workers = psutil.Process(p.pid).children(recursive=True)
    p.send_signal(signal.SIGTERM)  # the coordinator only, as `kill PID` does
    try:
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    return p.returncode, err, workers


def _gone(workers: list[psutil.Process]) -> bool:
    return not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]


def test_sigterm_while_the_workers_start(tmp_path: Path) -> None:
    p, tmp, _ = _start(tmp_path)
    try:
        assert wait_for(lambda: any(tmp.iterdir())
                        and len(psutil.Process(p.pid).children()) == 2, 30), "no workers"
        rc, err, workers = _terminate(p)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert rc == 143, err[-2000:]
    assert "terminated" in err and "Traceback" not in err
    assert wait_for(lambda: _gone(workers), 10), "a worker outlived the coordinator"
    assert list(tmp.iterdir()) == []  # the worker socket folder is gone


@pytest.mark.slow  # a full arm with real workers first: 15-25 s on 2 cores
def test_sigterm_keeps_finished_arms(tmp_path: Path) -> None:
    p, tmp, out = _start(tmp_path, duration_s=20.0)
    frames = out / "frames.jsonl"
    try:
        assert wait_for(lambda: frames.exists() and frames.read_bytes().count(b"\n") >= 200,
                        120), "the first arm never finished"
        time.sleep(0.5)  # into the second arm
        rc, err, workers = _terminate(p)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert rc == 143 and "terminated" in err, err[-2000:]
    assert frames.read_bytes().count(b"\n") == 200  # the finished arm, whole
    assert wait_for(lambda: _gone(workers), 10)
    assert list(tmp.iterdir()) == []


@pytest.mark.slow  # waits for the orphans to finish importing torch: 5-15 s
def test_sigkill_while_the_workers_start_leaves_no_worker(tmp_path: Path) -> None:
    """SIGKILL gives no chance to clean up, so the workers must notice on their own, even
    when the coordinator died before they had finished importing (getppid() was then
    already 1 when they looked, and they waited forever)."""
    p, tmp, _ = _start(tmp_path)
    try:
        assert wait_for(lambda: len(psutil.Process(p.pid).children()) == 2, 30)
        workers = psutil.Process(p.pid).children()
        p.kill()  # the coordinator only, not its process group
        p.wait(10)
        assert wait_for(lambda: _gone(workers), 60), "orphaned workers never exited"
    finally:
        for w in workers if "workers" in locals() else []:
            if w.is_running():
                w.kill()
