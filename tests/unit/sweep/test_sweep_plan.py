"""Sweep files: expansion into runs, stable run ids, and validation errors (file:line, exit 2)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from diffstream.cli import run
from diffstream.errors import ConfigError
from diffstream.sweep.plan import load_plan
from diffstream.sweep.schema import is_sweep_file
from tests.conftest import ROOT, SHARED, tiny_scenario
from tests.integration.sweep.test_sweep_fixtures import (
    base_scenario,
    make_traces,
    small_grid,
    write_sweep,
)


def ids(path: Path) -> dict[tuple, str]:
    plan = load_plan(path)
    return {(r.params["trace"], r.params["arm"], r.params["share"], r.params["seed"]): r.id
            for r in plan.runs}


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as exc:
        load_plan(path)
    return str(exc.value)


# --------------------------------------------------------------------------- expansion
def test_grid_expands_to_every_cell(tmp_path: Path) -> None:
    make_traces(tmp_path / "traces", n=2)
    grid = {**small_grid(), "shares": [0.05, 0.1]}
    plan = load_plan(write_sweep(tmp_path, grid=grid))
    assert len(plan.runs) == 2 * 3 * 2 * 2
    assert plan.arms == ["jpeg-fixed", "jpeg-rate", "jpeg-oracle"]
    assert [t.label for t in plan.traces] == ["t1.down", "t2.down"]
    cells = {(r.params["trace"], r.params["arm"], r.params["share"], r.params["seed"])
             for r in plan.runs}
    assert len(cells) == len(plan.runs)
    r = plan.runs[0]
    # each run is the base scenario with one arm and the cell's values applied
    assert r.scenario["seed"] == r.params["seed"]
    assert r.scenario["link"]["share"] == r.params["share"]
    assert r.scenario["link"]["delay_ms"] == 20  # from the base
    assert [a["name"] for a in r.scenario["arms"]] == [r.params["arm"]]
    assert Path(r.scenario["trace"]["path"]).is_absolute()
    assert r.network_only_bytes == 0
    # arms innermost: the arms of one cell are submitted together
    assert [x.params["arm"] for x in plan.runs[:3]] == plan.arms


def test_axes_default_to_the_base_scenario(tmp_path: Path) -> None:
    base = tiny_scenario(tmp_path)  # a scenario file: constant trace, two arms, seed 3
    plan = load_plan(write_sweep(tmp_path, base=str(base), grid={"seeds": [1, 2, 3]}))
    assert len(plan.runs) == 1 * 2 * 1 * 3
    assert plan.arms == ["jpeg-fixed", "webp-rate"]
    assert plan.shares == [0.05] and plan.traces[0].label == "constant(2Mbps)"


def test_overrides_merge_onto_the_base(tmp_path: Path) -> None:
    make_traces(tmp_path / "traces", n=1)
    path = write_sweep(tmp_path, grid=small_grid(),
                       overrides={"duration_s": 2.0, "link": {"delay_ms": 5}})
    r = load_plan(path).runs[0]
    assert r.scenario["duration_s"] == 2.0
    assert r.scenario["link"]["delay_ms"] == 5
    assert r.scenario["link"]["queue"] == {"bytes": 20000, "packets": None}  # kept from base


def test_ids_are_stable_and_order_independent(tmp_path: Path) -> None:
    make_traces(tmp_path / "traces", n=2)
    a = write_sweep(tmp_path, grid={**small_grid(), "shares": [0.05, 0.1]}, filename="a.yaml")
    grid = small_grid()
    grid.update(policies=grid["policies"][::-1], seeds=[2, 1], shares=[0.1, 0.05],
                traces=[{"kind": "mahimahi", "path": "traces/t2.down"},
                        {"kind": "mahimahi", "path": "traces/t1.down"}])
    b = write_sweep(tmp_path, grid=grid, filename="b.yaml", description="reordered")
    ia, ib = ids(a), ids(b)
    assert ia == ib  # same cell, same id, whatever the order of the lists
    assert len(set(ia.values())) == len(ia)  # and every cell its own id
    # a smaller grid keeps the ids of the cells it shares (resume after editing a sweep)
    c = write_sweep(tmp_path, grid={**small_grid(), "seeds": [2]}, filename="c.yaml")
    assert all(ia[k] == v for k, v in ids(c).items())


def test_ids_ignore_location_and_presentation(tmp_path: Path) -> None:
    make_traces(tmp_path / "a" / "traces", n=2)
    first = ids(write_sweep(tmp_path / "a", grid=small_grid()))
    shutil.copytree(tmp_path / "a", tmp_path / "elsewhere" / "b")
    moved = write_sweep(tmp_path / "elsewhere" / "b", grid=small_grid(), name="renamed",
                        description="other words",
                        output={"dir": str(tmp_path / "x"), "plots": True, "frames": False})
    assert ids(moved) == first


def test_ids_change_with_what_changes_results(tmp_path: Path) -> None:
    make_traces(tmp_path / "traces", n=1)
    ref = ids(write_sweep(tmp_path, grid=small_grid(), filename="ref.yaml"))
    changes = [
        {"network_only_bytes": 500},
        {"overrides": {"link": {"delay_ms": 21}}},
        {"overrides": {"duration_s": 5.0}},
    ]
    for i, top in enumerate(changes):
        other = ids(write_sweep(tmp_path, grid=small_grid(), filename=f"c{i}.yaml", **top))
        assert not set(other.values()) & set(ref.values()), top
    # a trace file with other content is another run, even under the same name
    (tmp_path / "traces" / "t1.down").write_text("0\n1\n2\n3\n")
    other = ids(write_sweep(tmp_path, grid=small_grid(), filename="ref.yaml"))
    assert other.keys() == ref.keys() and not set(other.values()) & set(ref.values())


def test_ids_do_not_depend_on_the_interpreter(tmp_path: Path) -> None:
    make_traces(tmp_path / "traces", n=1)
    path = write_sweep(tmp_path, grid=small_grid())
    code = ("import json, sys; from diffstream.sweep.plan import load_plan; "
            "print(json.dumps([r.id for r in load_plan(sys.argv[1]).runs]))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, check=True, cwd=ROOT,
                         env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert json.loads(out.stdout) == [r.id for r in load_plan(path).runs]


def test_same_file_twice_runs_once(tmp_path: Path) -> None:
    make_traces(tmp_path / "traces", n=2)
    grid = small_grid()
    grid["traces"] = [{"kind": "mahimahi", "path": "traces/*.down"},
                      {"kind": "mahimahi", "path": "traces/t1.down"}]
    plan = load_plan(write_sweep(tmp_path, grid=grid))
    assert [t.label for t in plan.traces] == ["t1.down", "t2.down"]
    assert any("same as" in n for n in plan.notes)


def test_detects_sweep_files(tmp_path: Path) -> None:
    assert is_sweep_file(ROOT / "scenarios" / "sweep_lte.yaml")
    assert not is_sweep_file(ROOT / "scenarios" / "lte_trace.yaml")
    assert not is_sweep_file(tmp_path / "missing.yaml")


def test_project_sweep_expands() -> None:
    plan = load_plan(ROOT / "scenarios" / "sweep_lte.yaml")
    assert [t.label for t in plan.traces] == ["lte_like.down", "lte_like_s11.down",
                                              "lte_like_s12.down", "lte_like_s13.down"]
    assert len(plan.runs) == 4 * 10 * 1 * 2


@pytest.mark.skipif(not (SHARED / "traces").is_dir(), reason="needs ../shared/traces")
def test_shared_sweep_reads_every_format() -> None:
    cwd = os.getcwd()
    os.chdir(ROOT)  # the example's paths are relative to the project root
    try:
        plan = load_plan(ROOT / "scenarios" / "sweep_shared.yaml")
    finally:
        os.chdir(cwd)
    kinds = {r.scenario["trace"]["kind"] for r in plan.runs}
    assert kinds == {"mahimahi", "pensieve", "sabre"}
    assert not any(t.label.endswith((".up", ".md")) for t in plan.traces)
    assert len(plan.traces) == 21


# --------------------------------------------------------------------------- validation
def line_of(path: Path, needle: str) -> int:
    return next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if needle in ln)


def test_unknown_key_names_file_line_and_suggests(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, grid={"seedz": [1, 2]})
    msg = error_of(path)
    assert f"{path}:{line_of(path, 'seedz')}: sweep.seedz" in msg
    assert "did you mean 'seeds'" in msg


def test_bad_values_are_located(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, grid={"shares": [0.5, 1.5], "seeds": [1, 1]})
    msg = error_of(path)
    assert "sweep.shares[1]" in msg and "less than or equal to 1" in msg
    path = write_sweep(tmp_path, grid={"seeds": [1, 1]})
    assert "repeated values" in error_of(path)


def test_glob_that_matches_nothing(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, grid=small_grid("nowhere/*.down"))
    msg = error_of(path)
    assert f"{path}:{line_of(path, 'nowhere')}: sweep.traces[0].path" in msg
    assert "matches no file" in msg


def test_optional_trace_entries_are_skipped_with_a_note(tmp_path: Path) -> None:
    grid = small_grid()
    make_traces(tmp_path / "traces")
    grid["traces"] = [{**grid["traces"][0]},
                      {"kind": "pensieve", "path": "absent/*", "optional": True}]
    plan = load_plan(write_sweep(tmp_path, grid=grid))
    assert {t.label for t in plan.traces} == {"t1.down", "t2.down"}
    assert any("skipped sweep.traces[1] (optional)" in n for n in plan.notes)
    # the same entry without `optional` is an error; all entries absent is one too
    grid["traces"][1]["optional"] = False
    assert "matches no file" in error_of(write_sweep(tmp_path, grid=grid))
    grid["traces"] = [{"kind": "pensieve", "path": "absent/*", "optional": True}]
    path = write_sweep(tmp_path, grid=grid)
    msg = error_of(path)
    assert f"{path}:{line_of(path, 'traces')}: sweep.traces: every entry is optional" in msg


def test_trace_in_the_wrong_format(tmp_path: Path) -> None:
    (tmp_path / "traces").mkdir()
    (tmp_path / "traces" / "p.txt").write_text("0.0 1.5\n1.0 2.0\n")  # pensieve, not mahimahi
    path = write_sweep(tmp_path, grid=small_grid("traces/p.txt"))
    msg = error_of(path)
    assert f"{path}:{line_of(path, 'p.txt')}: sweep.traces[0].path (read as mahimahi)" in msg
    assert "p.txt:1" in msg  # the loader's own file:line


def test_csv_traces_need_a_unit(tmp_path: Path) -> None:
    grid = {"traces": [{"kind": "csv", "path": "x.csv"}]}
    assert "csv_unit" in error_of(write_sweep(tmp_path, grid=grid))


def test_error_in_a_base_file_points_into_that_file(tmp_path: Path) -> None:
    make_traces(tmp_path / "traces", n=1)
    base = tmp_path / "base.yaml"
    data = base_scenario()
    data["frame"]["fpz"] = 10
    base.write_text(yaml.safe_dump(data, sort_keys=False))
    msg = error_of(write_sweep(tmp_path, base="base.yaml", grid=small_grid()))
    assert f"{base}:{line_of(base, 'fpz')}: frame.fpz" in msg and "did you mean 'fps'" in msg


def test_error_in_an_inline_base_points_into_the_sweep(tmp_path: Path) -> None:
    make_traces(tmp_path / "traces", n=1)
    data = base_scenario()
    data["link"]["delay_ms"] = -5
    path = write_sweep(tmp_path, base=data, grid=small_grid())
    msg = error_of(path)
    assert f"{path}:{line_of(path, 'delay_ms')}: base.link.delay_ms" in msg


def test_error_in_an_override_points_at_the_override(tmp_path: Path) -> None:
    make_traces(tmp_path / "traces", n=1)
    path = write_sweep(tmp_path, grid=small_grid(), overrides={"duration_s": -1})
    msg = error_of(path)
    assert f"{path}:{line_of(path, 'duration_s: -1')}: overrides.duration_s" in msg


def test_missing_base_file(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, base="nope.yaml", grid={"seeds": [1]})
    assert f"{path}:{line_of(path, 'nope.yaml')}: base: scenario file 'nope.yaml' not found" \
        in error_of(path)


def test_arm_rules(tmp_path: Path) -> None:
    grid = {"codecs": ["jpeg"], "policies": [{"kind": "rate"}, {"kind": "rate", "window": 3}]}
    assert "arm names must be unique" in error_of(write_sweep(tmp_path, grid=grid))
    grid = {"arms": [{"codec": "jpeg", "policy": {"kind": "rate"}}], "codecs": ["jpeg"],
            "policies": [{"kind": "rate"}]}
    assert "either 'arms' or 'codecs'" in error_of(write_sweep(tmp_path, grid=grid))
    grid = {"arms": [{"codec": "gif", "policy": {"kind": "rate"}}]}
    assert "unknown codec 'gif'" in error_of(write_sweep(tmp_path, grid=grid))


def test_command_line_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_sweep(tmp_path, grid={"seedz": [1]})
    assert run([str(bad)]) == 2
    assert "seedz" in capsys.readouterr().err
    good = write_sweep(tmp_path, grid={"seeds": [1]}, filename="good.yaml")
    assert run([str(good), "--seed", "4"]) == 2
    assert "sweep.seeds" in capsys.readouterr().err
    assert run([str(good), "--address", "auto"]) == 2
    scenario = tiny_scenario(tmp_path)
    assert run([str(scenario), "--workers", "2"]) == 2
    assert "apply to sweep files only" in capsys.readouterr().err
    # a sweep the YAML parser cannot read (an unquoted {name} in a flow mapping) gets its
    # parse error and line, not "sweep options on a scenario"
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nsweep:\n  seeds: [1]\noutput: {dir: runs/{name}}\n")
    assert run([str(broken), "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "broken.yaml:4" in err and "not valid YAML" in err
