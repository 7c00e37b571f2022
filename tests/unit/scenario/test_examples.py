"""The example scenarios shipped as package data: ``run --example``, ``diffstream examples``."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffstream.__main__ import main
from diffstream.cli import run
from diffstream.errors import InputError
from diffstream.scenario.examples import (
    EXAMPLES_DIR,
    copy_examples,
    example_files,
    example_path,
    examples,
)
from diffstream.scenario.load import load_scenario
from tests.conftest import ROOT


def test_examples_live_in_the_package_and_scenarios_points_at_them() -> None:
    assert EXAMPLES_DIR.parent.name == "diffstream"
    assert (ROOT / "scenarios").resolve() == EXAMPLES_DIR
    names = {e.name for e in examples()}
    assert {"lte_trace", "sweep_lte", "gic_lte"} <= names
    assert Path("traces/lte_like.down") in example_files()


def test_example_path_by_name_and_unknown_names_listed() -> None:
    assert example_path("lte_trace") == EXAMPLES_DIR / "lte_trace.yaml"
    assert example_path("lte_trace.yaml") == EXAMPLES_DIR / "lte_trace.yaml"
    with pytest.raises(InputError, match="unknown example 'nope'.*lte_trace.*sweep_lte"):
        example_path("nope")


def test_copied_examples_load_with_their_own_traces(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    written = copy_examples(tmp_path / "ex")
    assert len(written) == len(example_files())
    monkeypatch.chdir(tmp_path)  # nothing but the copy to resolve the trace against
    sc, path = load_scenario(tmp_path / "ex" / "lte_trace.yaml")
    assert sc.name == "lte_trace" and path.parent == tmp_path / "ex"


def test_copy_refuses_existing_files_unless_overwrite(tmp_path: Path) -> None:
    dest = tmp_path / "ex"
    (dest / "traces").mkdir(parents=True)
    (dest / "traces" / "lte_like.down").write_text("mine\n")
    with pytest.raises(InputError, match="1 example file.*--overwrite"):
        copy_examples(dest)
    assert not (dest / "lte_trace.yaml").exists()  # refused before copying anything
    assert (dest / "traces" / "lte_like.down").read_text() == "mine\n"
    copy_examples(dest, overwrite=True)
    assert (dest / "traces" / "lte_like.down").read_bytes() == (
        EXAMPLES_DIR / "traces" / "lte_like.down").read_bytes()


def test_copy_refuses_a_file_as_destination(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("x")
    with pytest.raises(InputError, match="is a file"):
        copy_examples(target)


def test_cli_examples_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["examples", "--list"]) == 0
    assert "lte_trace" in capsys.readouterr().out
    assert main(["examples", "--out", str(tmp_path / "ex")]) == 0
    assert (tmp_path / "ex" / "lte_trace.yaml").is_file()
    assert main(["examples", "--out", str(tmp_path / "ex")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["examples", "--out", str(tmp_path / "ex"), "--overwrite"]) == 0


def test_run_example_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--example", "nope"]) == 2
    assert "lte_trace" in capsys.readouterr().err
    assert run(["scenarios/lte_trace.yaml", "--example", "lte_trace"]) == 2
    assert "not both" in capsys.readouterr().err
    assert run([]) == 2
    assert "--example" in capsys.readouterr().err
