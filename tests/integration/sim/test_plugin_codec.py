"""Plugin codecs through ``python run_sim.py``: a module that is not part of diffstream, found
next to the scenario, runs in the worker processes and gives the built-in codec's records;
and the example package, installed with pip, runs its own scenario by entry-point names."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from diffstream.plugins import child_pythonpath
from tests.conftest import ROOT, tiny_scenario
from tests.support.plugins import JPEG_ALIAS, write_module

# Measured fields (wall-clock ms) differ run to run; everything else must match.
MEASURED = ("encode_ms", "decode_ms")


def run_sim(scenario: Path, out: Path, *, cwd: Path, pythonpath: str | None = None
            ) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run([sys.executable, str(ROOT / "run_sim.py"), str(scenario), "--out",
                           str(out), "--no-dashboard"], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def records(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "frames.jsonl").read_text().splitlines() if x]


def test_an_import_path_codec_gives_the_builtin_codecs_records(tmp_path: Path) -> None:
    write_module(tmp_path, "pj", JPEG_ALIAS)  # next to the scenario only, not on sys.path
    cost = {"encode_ms": 0.4, "decode_ms": 0.15}  # a compute profile: deterministic timing
    path = tiny_scenario(tmp_path, arms=[
        {"name": "a", "codec": "jpeg", "policy": {"kind": "rate"}},
        {"name": "b", "codec": "pj:J", "policy": {"kind": "rate"}}],
        compute={"kind": "profile", "profile": {"jpeg": cost, "pj:J": cost}})
    proc = run_sim(path, tmp_path / "out", cwd=ROOT)  # cwd elsewhere: the scenario's folder
    assert proc.returncode == 0, proc.stderr + proc.stdout
    recs = records(tmp_path / "out")
    a = [r for r in recs if r["arm"] == "a"]
    b = [r for r in recs if r["arm"] == "b"]
    assert len(a) == len(b) == 30 and sum(r["decoded"] for r in b) > 20
    assert {r["codec"] for r in b} == {"pj:J"}

    def same(r: dict) -> dict:
        return {k: v for k, v in r.items() if k not in ("arm", "codec", *MEASURED)}

    assert [same(r) for r in a] == [same(r) for r in b]


@pytest.mark.slow
def test_the_example_package_installs_and_runs_its_scenario(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT / "examples" / "plugin_codec", src,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "runs"))
    site = tmp_path / "site"  # a real install (dist-info, entry points), not the shared venv
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps",
                          "--no-build-isolation", "--target", str(site), "-q", str(src)],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr
    assert (site / "diffstream_plugin_example").is_dir()
    scenario = yaml.safe_load((src / "scenario.yaml").read_text())
    assert {a["codec"] for a in scenario["arms"]} == {"downwebp", "webp"}  # names, no paths
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    out = tmp_path / "out"
    proc = run_sim(path, out, cwd=tmp_path,
                   pythonpath=os.pathsep.join([str(site), child_pythonpath()]))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    recs = records(out)
    by_arm: dict[str, list[dict]] = {}
    for r in recs:
        by_arm.setdefault(r["arm"], []).append(r)
    assert set(by_arm) == {"downwebp-aimd", "webp-aimd", "downwebp-rate"}
    assert all(len(v) == 100 for v in by_arm.values())  # 10 s at 10 fps
    plugin = by_arm["downwebp-aimd"]
    assert {r["codec"] for r in plugin} == {"downwebp"}
    assert {r["policy"] for r in plugin} == {"aimd"}
    assert all(r["payload_bytes"] * 8 <= r["budget_bits"] for r in plugin)
    assert sum(r["decoded"] for r in plugin) > 50
    # the example's point: below WebP's floor it still sends pictures (smaller ones)
    assert min(r["bpp"] for r in plugin if r["decoded"]) < 0.6
    assert (out / "summary.csv").read_text().count("\n") == 4
