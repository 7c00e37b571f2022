"""Sweeps with plugin codecs and policies: the grid's ``codecs`` and ``policies`` accept
import paths, the pool processes (and their codec workers) import the plugins the driver
found next to the sweep file, and so do Ray's workers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from diffstream.errors import ConfigError
from diffstream.sweep.driver import run_sweep_file
from diffstream.sweep.executors import LocalPoolExecutor
from diffstream.sweep.plan import load_plan
from tests.integration.sweep.test_sweep_fixtures import base_scenario, write_sweep
from tests.integration.sweep.test_sweep_run import opts, results
from tests.support.plugins import JPEG_ALIAS, PLAIN_POLICY, plugin_dir, write_module

__all__ = ["plugin_dir"]  # the fixture


@pytest.fixture
def folder(plugin_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The sweep's folder with the plugin modules (not on sys.path: the loader adds it)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    out = tmp_path / "sweep"
    out.mkdir()
    write_module(out, "sp_codec", JPEG_ALIAS)
    write_module(out, "sp_policy", PLAIN_POLICY)
    return out


def grid() -> dict:
    return {"codecs": ["jpeg", "sp_codec:J"],
            "policies": [{"kind": "fixed", "bpp": 1.0}, {"kind": "sp_policy:Half",
                                                         "factor": 0.5}]}


def frames(out: Path, run_id: str) -> list[dict]:
    text = (out / "frames" / f"{run_id}.jsonl").read_text()
    return [json.loads(x) for x in text.splitlines() if x]


def test_a_network_only_sweep_runs_plugin_policies_in_pool_processes(folder: Path) -> None:
    # the forkserver outlives pools: started before the sweep's folder joins sys.path, it
    # still starts each pool process with the driver's sys.path of the moment
    LocalPoolExecutor(1).close()
    path = write_sweep(folder, grid=grid())
    res = run_sweep_file(path, opts(out_dir=folder / "out"))
    assert res.run.ok == 4 and not res.failed
    half = [e for e in results(res.out_dir) if e["params"]["policy"] == "sp_policy:Half"]
    assert {e["params"]["codec"] for e in half} == {"jpeg", "sp_codec:J"}
    for e in half:  # the plugin decided every budget: 4 bpp cap x 4096 px x 0.5 x 0.5
        assert {r["budget_bits"] for r in frames(res.out_dir, e["id"])} == {4096}


def test_a_bad_plugin_in_the_grid_is_located_in_the_sweep_file(folder: Path) -> None:
    g = grid()
    g["codecs"][1] = "sp_codec:Nope"
    msg = _error_of(write_sweep(folder, grid=g))
    assert "sweep.codecs[1]: module 'sp_codec'" in msg and "it defines J" in msg
    g = grid()
    g["policies"][1]["kind"] = "sp_missing:P"
    msg = _error_of(write_sweep(folder, grid=g))
    assert "sweep.policies[1].kind: cannot import 'sp_missing'" in msg


def _error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_plan(path)
    text = str(info.value)
    line = next(ln for ln in text.splitlines() if "sweep." in ln)
    assert line.startswith(f"{path}:")  # file:line
    return text


def codec_sweep(folder: Path) -> Path:
    base = base_scenario(duration_s=2.0, arms=[{"codec": "jpeg", "policy": {"kind": "rate"}}],
                         compute={"kind": "profile", "profile": {
                             "sp_codec:J": {"encode_ms": 0.4, "decode_ms": 0.15}}})
    return write_sweep(folder, base=base, network_only_bytes=None, grid={
        "codecs": ["sp_codec:J"], "policies": [{"kind": "sp_policy:Half", "factor": 0.5}]})


@pytest.mark.slow
def test_codec_workers_of_pool_processes_import_the_plugin(folder: Path) -> None:
    res = run_sweep_file(codec_sweep(folder), opts(out_dir=folder / "out", workers=1))
    (line,) = results(res.out_dir)
    assert line["status"] == "ok", line.get("error")
    assert line["summary"]["mean_psnr_db"] > 15  # real frames, coded by the plugin


@pytest.mark.slow
def test_ray_workers_import_the_plugin(folder: Path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (the [ray] extra)")
    res = run_sweep_file(codec_sweep(folder), opts(out_dir=folder / "out", workers=1,
                                                   executor="ray"))
    (line,) = results(res.out_dir)
    assert line["status"] == "ok", line.get("error")
    assert line["executor"] == "ray" and line["summary"]["mean_psnr_db"] > 15
