"""Scenario validation: every error names the file, the line and the field, exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffstream.cli import run
from diffstream.errors import ConfigError
from diffstream.scenario.load import load_scenario
from diffstream.sweep.plan import load_plan
from diffstream.sweep.schema import is_sweep_file

ROOT = Path(__file__).resolve().parents[3]

GOOD = """\
name: t
seed: 1
duration_s: 5
frame: {width: 64, height: 64, fps: 10}
trace: {kind: constant, mbps: 2.0, duration_s: 10}
link:
  share: 0.05
arms:
  - {codec: jpeg, policy: {kind: fixed, bpp: 1.0}}
  - codec: webp
    policy:
      kind: rate
      window: 3
"""


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as exc:
        load_scenario(path)
    return str(exc.value)


def test_good_scenario_loads_with_defaults(tmp_path: Path) -> None:
    sc, _ = load_scenario(write(tmp_path, GOOD))
    assert sc.frames_per_arm == 50
    assert sc.arms[1].policy.window == 3
    assert sc.arms[0].label == "jpeg-fixed"
    assert sc.mode.kind == "interactive" and sc.compute.kind == "profile"


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "scenarios").glob("*.yaml")))
def test_shipped_scenarios_validate(name: str) -> None:
    path = ROOT / "scenarios" / name
    if name == "mahimahi_example.yaml" and not (ROOT.parent / "shared").exists():
        pytest.skip("mahimahi_example.yaml needs ../shared/traces (not shipped)")
    try:
        if is_sweep_file(path):  # a sweep (docs/sweeps.md): its own loader, same errors
            load_plan(path)
        else:
            load_scenario(path)
    except ConfigError as exc:
        if "../shared" in str(exc):
            pytest.skip("needs ../shared/traces relative to the cwd")
        raise


def test_default_scenario_shows_generative_codecs() -> None:
    """The first thing a user runs compares the project's generative codec with the classics."""
    sc, _ = load_scenario(ROOT / "scenarios" / "lte_trace.yaml")
    codecs = {a.codec for a in sc.arms}
    assert {"gic", "lic"} <= codecs and {"jpeg", "webp"} <= codecs
    gic_policies = {a.policy.kind for a in sc.arms if a.codec == "gic"}
    assert {"rate", "mpc"} <= gic_policies


def test_unknown_key_names_line_field_and_suggestion(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, GOOD.replace("      window: 3", "      windw: 3")))
    assert "s.yaml:13:" in msg
    assert "arms[1].policy.windw" in msg
    assert "did you mean 'window'" in msg


def test_wrong_type_names_line(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, GOOD.replace("share: 0.05", "share: lots")))
    assert "s.yaml:7:" in msg and "link.share" in msg


def test_missing_field(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, GOOD.replace("duration_s: 5\n", "")))
    assert "duration_s" in msg and "required" in msg


def test_unknown_policy_kind_and_codec(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, GOOD.replace("kind: rate", "kind: magic")))
    assert "s.yaml:12:" in msg and "'fixed'" in msg  # lists the valid tags
    msg = error_of(write(tmp_path, GOOD.replace("codec: webp", "codec: h266")))
    assert "s.yaml:10:" in msg and "unknown codec 'h266'" in msg and "jpeg" in msg


def test_missing_trace_file(tmp_path: Path) -> None:
    text = GOOD.replace("trace: {kind: constant, mbps: 2.0, duration_s: 10}",
                        "trace: {kind: mahimahi, path: nowhere.down}")
    msg = error_of(write(tmp_path, text))
    assert "s.yaml:5:" in msg and "nowhere.down" in msg and "not found" in msg


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "name: [unclosed\n"))
    assert "s.yaml:" in msg and "YAML" in msg
    assert "not found" in error_of(tmp_path / "absent.yaml")


def test_duplicate_arm_names(tmp_path: Path) -> None:
    text = GOOD.replace("  - codec: webp\n    policy:\n      kind: rate\n      window: 3\n",
                        "  - {codec: jpeg, policy: {kind: fixed, bpp: 0.5}}\n")
    assert "unique" in error_of(write(tmp_path, text))


def test_cli_exit_code_2_and_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path, GOOD.replace("fps: 10", "fps: -1"))
    assert run([str(bad), "--no-dashboard", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "s.yaml:4:" in err and "frame.fps" in err
    assert not (tmp_path / "o").exists()  # nothing half-written for a rejected scenario
