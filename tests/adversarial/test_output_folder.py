"""Item 5: a rerun never destroys earlier results before (or instead of) producing new ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffstream.cli import run
from tests.conftest import tiny_scenario


def _snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


def _first_run(tmp_path: Path) -> tuple[Path, Path, dict[str, bytes]]:
    sc = tiny_scenario(tmp_path, duration_s=1.0)
    out = tmp_path / "runs" / "o"
    assert run([str(sc), "--no-dashboard", "--network-only", "0", "--out", str(out)]) == 0
    before = _snapshot(out)
    assert before["frames.jsonl"].count(b"\n") == 20
    return sc, out, before


def test_bad_input_on_a_rerun_leaves_the_old_results(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's repro (--arms typo), and a bad trace, into a folder that holds a finished
    run, even with --overwrite: exit 2, and every old file byte for byte as it was."""
    sc, out, before = _first_run(tmp_path)
    (tmp_path / "b").mkdir()
    bad_trace = tiny_scenario(tmp_path / "b", trace={"kind": "steps", "steps": [[0, -1.0]],
                                                     "duration_s": 5})
    for argv in ([str(sc), "--arms", "typo"], [str(sc), "--arms", "typo", "--overwrite"],
                 [str(bad_trace), "--overwrite"]):
        assert run([*argv, "--no-dashboard", "--network-only", "0", "--out", str(out)]) == 2
        assert _snapshot(out) == before, argv
    assert "typo" in capsys.readouterr().err


def test_existing_results_need_overwrite(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    sc, out, before = _first_run(tmp_path)
    assert run([str(sc), "--no-dashboard", "--network-only", "0", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and str(out) in err.replace("\n", "")
    assert _snapshot(out) == before
    assert run([str(sc), "--no-dashboard", "--network-only", "100", "--out", str(out),
                "--overwrite"]) == 0
    after = _snapshot(out)
    assert after["frames.jsonl"] != before["frames.jsonl"]  # the new run's payloads
    assert after["frames.jsonl"].count(b"\n") == 20
    assert sorted(p.name for p in out.parent.iterdir()) == ["o"]  # no staging folder left


def test_an_empty_folder_is_fine(tmp_path: Path) -> None:
    sc = tiny_scenario(tmp_path, duration_s=1.0)
    (tmp_path / "empty").mkdir()
    assert run([str(sc), "--no-dashboard", "--network-only", "0", "--out",
                str(tmp_path / "empty")]) == 0


def test_a_failed_overwrite_keeps_the_old_results(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """--overwrite replaces the old results only once the new run has finished: a run cut
    short (here Ctrl-C in its second arm) leaves them, and its own finished arm is kept in
    the staging folder it names."""
    import diffstream.sim.best_run as arm_runner  # where the session builds each arm

    sc, out, before = _first_run(tmp_path)
    real = arm_runner.FastArmSimulation  # network-only runs take the fast path

    class Cut(real):  # type: ignore[misc, valid-type]
        def run(self):  # type: ignore[no-untyped-def]
            if self.arm.label == "webp-rate":
                raise KeyboardInterrupt
            return super().run()

    monkeypatch.setattr(arm_runner, "FastArmSimulation", Cut)
    assert run([str(sc), "--no-dashboard", "--network-only", "100", "--out", str(out),
                "--overwrite"]) == 130
    assert _snapshot(out) == before
    staging = [p for p in out.parent.iterdir() if p.name != "o"]
    assert len(staging) == 1 and staging[0].name.startswith(".o.partial-")
    assert (staging[0] / "frames.jsonl").read_bytes().count(b"\n") == 10  # the finished arm
