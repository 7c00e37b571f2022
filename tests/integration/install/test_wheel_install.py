"""diffstream installed without the repository (issue 12, item 6): a real non-editable
``pip install`` into a temp venv, then the shipped example scenario run from an empty folder,
and the examples copied out and run from the copy."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.support.temp_venv import TempVenv

pytestmark = pytest.mark.slow

# One arm of the default scenario keeps the run short (the full scenario has its own slow
# tests in tests/integration/sim/).
ARM = "jpeg-rate"


def _arms(summary: Path) -> list[str]:
    with summary.open(newline="") as fh:
        return [row["arm"] for row in csv.DictReader(fh)]


def test_installed_package_is_the_wheel_not_the_checkout(diffstream_venv: TempVenv,
                                                         tmp_path: Path) -> None:
    out = diffstream_venv.run([diffstream_venv.python, "-c",
                               "import diffstream, pathlib; "
                               "print(pathlib.Path(diffstream.__file__).resolve())"],
                              cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    where = Path(out.stdout.strip())
    assert diffstream_venv.root.resolve() in where.parents, where
    assert (where.parent / "examples" / "traces" / "lte_like.down").is_file()


def test_run_example_from_an_empty_folder(diffstream_venv: TempVenv,
                                          tmp_path: Path) -> None:
    cli = diffstream_venv.bin("diffstream")
    done = diffstream_venv.run([cli, "run", "--example", "lte_trace", "--no-dashboard",
                                "--arms", ARM, "--out", "out"], cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _arms(tmp_path / "out" / "summary.csv") == [ARM]

    bad = diffstream_venv.run([cli, "run", "--example", "no_such_example"], cwd=tmp_path)
    assert bad.returncode == 2
    assert "lte_trace" in bad.stderr  # the message lists the examples


def test_examples_copied_out_run_and_are_not_overwritten(diffstream_venv: TempVenv,
                                                         tmp_path: Path) -> None:
    cli = diffstream_venv.bin("diffstream")
    done = diffstream_venv.run([cli, "examples", "--out", "ex"], cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "ex" / "lte_trace.yaml").is_file()
    assert (tmp_path / "ex" / "traces" / "lte_like.down").is_file()

    again = diffstream_venv.run([cli, "examples", "--out", "ex"], cwd=tmp_path)
    assert again.returncode == 2 and "--overwrite" in again.stderr

    # Network-only (fixed payloads, no codec workers): what this checks is that the copied
    # scenario finds its copied trace; the codecs ran through the wheel in the test above.
    run = diffstream_venv.run([cli, "run", "ex/lte_trace.yaml", "--no-dashboard", "--arms", ARM,
                               "--network-only", "0", "--out", "out"], cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert _arms(tmp_path / "out" / "summary.csv") == [ARM]


def test_example_plugin_installs_beside_the_wheel_and_runs(diffstream_venv: TempVenv,
                                                          tmp_path: Path) -> None:
    """Both installs in one venv: the wheel above, and the example plugin package, whose
    entry points the installed ``diffstream`` finds with no PYTHONPATH and no checkout."""
    from tests.conftest import ROOT
    from tests.support.temp_venv import copy_source

    src = copy_source(ROOT / "examples" / "plugin_codec", tmp_path / "plugin_src")
    done = diffstream_venv.pip_install(src, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    cli = diffstream_venv.bin("diffstream")
    listed = diffstream_venv.run([cli, "codecs", "downwebp", "--size", "64x64"], cwd=tmp_path)
    assert listed.returncode == 0 and "downwebp" in listed.stdout, listed.stdout + listed.stderr
    run = diffstream_venv.run([cli, "run", str(src / "scenario.yaml"), "--no-dashboard",
                               "--arms", "downwebp-aimd", "--out", "out"], cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert _arms(tmp_path / "out" / "summary.csv") == ["downwebp-aimd"]
