"""The shipped leaderboard sweep (scenarios/sweep_policies.yaml) plans every real trace in
../shared/traces, and without them stops with an error that says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffstream.errors import ConfigError
from diffstream.sweep.plan import load_plan
from tests.conftest import ROOT, SHARED

SWEEP = ROOT / "scenarios" / "sweep_policies.yaml"


def shared_traces() -> list[Path]:
    t = SHARED / "traces"
    return sorted([*t.glob("mahimahi/*.down"), *[p for p in t.glob("pensieve/*") if p.is_file()],
                   *t.glob("sabre-4g/*.json")])


def test_the_leaderboard_plans_every_shared_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    files = shared_traces()
    if not files:
        pytest.skip("../shared/traces is not next to the repository")
    monkeypatch.chdir(ROOT)
    plan = load_plan(SWEEP)
    assert sorted(Path(t.file).name for t in plan.traces) == sorted(f.name for f in files)
    kinds = {r.params["policy"] for r in plan.runs}
    assert {"optimal", "oracle", "gcc", "mpc", "deadline", "rate"} <= kinds
    assert len(plan.runs) == len(plan.traces) * len(plan.arms)
    assert plan.sweep.report.oracle == "jpeg-optimal"


def test_without_the_shared_traces_it_says_so(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "repo" / "scenarios"
    folder.mkdir(parents=True)
    for name in ("sweep_policies.yaml", "lte_trace.yaml"):
        (folder / name).write_text((ROOT / "scenarios" / name).read_text())
    (folder / "traces").symlink_to(ROOT / "scenarios" / "traces")
    monkeypatch.chdir(tmp_path / "repo")  # no ../shared next to this "repository"
    with pytest.raises(ConfigError, match="every entry is optional and none matched"):
        load_plan(folder / "sweep_policies.yaml")
