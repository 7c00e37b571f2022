"""A sweep dispatched over a two-node Ray cluster: a head and a worker node in two Linux
network namespaces joined by a veth pair (the live tests' harness), the driver on the head.
Its aggregate must be identical to the local pool's, and both nodes must have run runs.

Needs root (namespaces) and the [ray] extra; skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from diffstream.sweep.driver import run_sweep_file
from tests.integration.sweep.test_sweep_fixtures import make_traces, small_grid, write_sweep
from tests.integration.sweep.test_sweep_run import opts
from tests.support.live_harness import NetnsPair, netns_pair, netns_unavailable

pytestmark = pytest.mark.slow


def _ray_cli() -> str | None:
    exe = Path(sys.executable).with_name("ray")
    return str(exe) if exe.exists() else shutil.which("ray")


def _kill_ours(temp_dir: str) -> None:
    """Stop this cluster's processes only (``ray stop`` would stop every Ray on the machine):
    those whose command line names our private temp folder, then any left in our sessions."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if temp_dir.encode() in cmd and int(pid) != os.getpid():
            try:
                os.kill(int(pid), 9)
            except ProcessLookupError:
                pass


@pytest.fixture
def cluster() -> Iterator[tuple[NetnsPair, dict[str, str]]]:
    why = netns_unavailable()
    if why:
        pytest.skip(why)
    pytest.importorskip("ray", reason="Ray is not installed (the [ray] extra)")
    ray = _ray_cli()
    if ray is None:
        pytest.skip("the 'ray' command is not installed next to this Python")
    # short: Ray puts unix sockets under it, and socket paths are limited to ~107 bytes
    temp = tempfile.mkdtemp(prefix="dsray", dir="/tmp")
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN=secrets.token_hex(32))  # a token only this test's nodes share
    with netns_pair(60 + os.getpid() % 100) as pair:
        try:
            head = [*pair.exec_prefix(pair.a), ray, "start", "--head", "--port=6379",
                    f"--node-ip-address={pair.addr_a}", "--num-cpus=1",
                    "--include-dashboard=false", f"--temp-dir={temp}/a"]
            node = [*pair.exec_prefix(pair.b), ray, "start", f"--address={pair.addr_a}:6379",
                    f"--node-ip-address={pair.addr_b}", "--num-cpus=1", f"--temp-dir={temp}/b"]
            for cmd in (head, node):
                r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
                if r.returncode != 0:
                    pytest.fail(f"{' '.join(cmd)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
            yield pair, env
        finally:
            _kill_ours(temp)
            time.sleep(1.0)
            shutil.rmtree(temp, ignore_errors=True)


def test_a_sweep_across_two_namespaced_ray_nodes_matches_the_pool(
        cluster: tuple[NetnsPair, dict[str, str]], tmp_path: Path) -> None:
    pair, env = cluster
    make_traces(tmp_path / "traces", n=2)
    sweep = write_sweep(tmp_path, grid=small_grid())  # 12 network-only runs of 4 s
    out = tmp_path / "ray"
    cmd = [*pair.exec_prefix(pair.a), sys.executable, "-m", "diffstream", "run", str(sweep),
           "--executor", "ray", "--address", f"{pair.addr_a}:6379", "--out", str(out),
           "--no-dashboard"]
    r = subprocess.run(cmd, env=dict(env, PYTHONPATH=os.pathsep.join(sys.path)),
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    local = run_sweep_file(sweep, opts(out_dir=tmp_path / "local"))
    assert (out / "aggregate.csv").read_text() == (local.out_dir / "aggregate.csv").read_text()
    entries = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines() if x]
    assert len(entries) == 12 and {e["status"] for e in entries} == {"ok"}
    assert {e["executor"] for e in entries} == {"ray"}
    # both nodes worked: the worker node's runs came back over the veth pair
    assert {e["node"] for e in entries} == {pair.addr_a, pair.addr_b}
