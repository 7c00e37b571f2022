"""Plugins named in a scenario: found next to the scenario, and every mistake (wrong module,
missing class, broken contract, an import that raises, bad options) a ConfigError naming the
file, line and field, raised at load time, before any worker starts."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from diffstream.errors import ConfigError
from diffstream.scenario.load import load_scenario
from tests.conftest import ROOT
from tests.support.plugins import (
    JPEG_ALIAS,
    MODEL_POLICY,
    plugin_dir,
    write_module,
)
from tests.unit.codecs.test_plugin_codecs import OPTIONS_CODEC

__all__ = ["plugin_dir"]  # the fixture

SCENARIO = """\
name: t
seed: 1
duration_s: 5
frame: {{width: 64, height: 64, fps: 10}}
trace: {{kind: constant, mbps: 2.0, duration_s: 10}}
arms:
  - {{codec: jpeg, policy: {{kind: fixed, bpp: 1.0}}}}
  - codec: "{codec}"
    codec_options: {options}
    policy:
      kind: "{kind}"
"""
CODEC_LINE, OPTIONS_LINE, KIND_LINE = 8, 9, 11


def scenario(folder: Path, codec: str = "jpeg", kind: str = "rate", options: str = "{}") -> Path:
    path = folder / "s.yaml"
    path.write_text(SCENARIO.format(codec=codec, kind=kind, options=options))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    return str(info.value)


@pytest.fixture
def folder(plugin_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The scenario's own folder, not on sys.path (load_scenario adds it); sys.path is put
    back afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    out = tmp_path / "scen"
    out.mkdir()
    return out


def test_plugins_next_to_the_scenario_are_found(folder: Path) -> None:
    write_module(folder, "ps_codec", JPEG_ALIAS)
    write_module(folder, "ps_policy", MODEL_POLICY)
    assert str(folder) not in sys.path
    sc, _ = load_scenario(scenario(folder, "ps_codec:J", "ps_policy:Share"))
    assert sc.arms[1].codec == "ps_codec:J" and sc.arms[1].policy.kind == "ps_policy:Share"
    assert str(folder) in sys.path  # and so in every worker's PYTHONPATH
    assert sc.arms[1].label == "ps_codec:J-ps_policy:Share"


def test_a_scenario_without_import_paths_leaves_sys_path_alone(folder: Path) -> None:
    before = list(sys.path)
    load_scenario(scenario(folder))
    assert sys.path == before


@pytest.mark.parametrize(("codec", "source", "needle"), [
    ("ps_nomod:C", None, "cannot import 'ps_nomod'"),
    ("ps_nocls:C", "class D: pass\n", "has no 'C' (from 'ps_nocls:C'); it defines D"),
    ("ps_half:C", "class C:\n    progressive = False\n", "it lacks encode(), decode(), "
     "min_bits(); a codec needs"),
    ("ps_raise:C", "x = 1\nraise ImportError('needs CUDA')\n", "ps_raise.py:2"),
])
def test_codec_errors_name_the_arm_and_line(folder: Path, codec: str, source: str | None,
                                           needle: str) -> None:
    if source is not None:
        write_module(folder, codec.split(":")[0], source)
    msg = error_of(scenario(folder, codec=codec))
    assert f"s.yaml:{CODEC_LINE}: arms[1].codec: " in msg and needle in msg


def test_policy_errors_name_the_arm_and_line(folder: Path) -> None:
    msg = error_of(scenario(folder, kind="ps_nopolicy:P"))
    assert f"s.yaml:{KIND_LINE}: arms[1].policy.kind: cannot import 'ps_nopolicy'" in msg
    assert "is the module on PYTHONPATH?" in msg and str(folder) in msg
    write_module(folder, "ps_share", MODEL_POLICY)
    text = scenario(folder, kind="ps_share:Share").read_text() + "      share: 7\n"
    (folder / "s.yaml").write_text(text)
    msg = error_of(folder / "s.yaml")
    assert "s.yaml:12: arms[1].policy.share: Input should be less than or equal to 1" in msg


def test_codec_options_go_through_the_plugins_options_model(folder: Path) -> None:
    write_module(folder, "ps_flat", OPTIONS_CODEC)
    sc, _ = load_scenario(scenario(folder, "ps_flat:Flat", options="{level: 3}"))
    assert sc.arms[1].codec_options == {"level": 3}
    msg = error_of(scenario(folder, "ps_flat:Flat", options="{level: 300}"))
    assert f"s.yaml:{OPTIONS_LINE}: arms[1].codec_options.level: Input should be less" in msg
    assert "options: floor, level" in msg
    msg = error_of(scenario(folder, "ps_flat:Flat", options="{levl: 3}"))
    assert f"s.yaml:{OPTIONS_LINE}: arms[1].codec_options.levl: 'ps_flat:Flat' has no " \
           "option 'levl'; its options: floor, level" in msg


def test_codec_options_of_a_plugin_without_a_model_use_its_signature(folder: Path) -> None:
    write_module(folder, "ps_jpeg", JPEG_ALIAS)  # JpegCodec takes no options
    msg = error_of(scenario(folder, "ps_jpeg:J", options="{quality: 3}"))
    assert "arms[1].codec_options.quality: 'ps_jpeg:J' has no option 'quality'" in msg


def test_run_sim_exits_2_quickly_before_any_worker(tmp_path: Path) -> None:
    path = scenario(tmp_path, codec="ps_absent_mod:Codec")
    out = tmp_path / "out"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "run_sim.py"), str(path), "--out",
                           str(out), "--no-dashboard"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 2, proc.stderr
    assert f"s.yaml:{CODEC_LINE}: arms[1].codec: cannot import 'ps_absent_mod'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()  # nothing started, nothing written
    assert elapsed < 10, f"took {elapsed:.1f} s"  # loose: the interpreter start dominates
