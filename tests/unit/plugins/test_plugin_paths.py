"""``diffstream.plugins``: the import path handed to worker processes, the scenario scan that
decides whether to add the scenario's folder, and what a Ray cluster gets shipped."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from diffstream import plugins
from diffstream.plugins import (
    add_search_dirs,
    child_pythonpath,
    load_import_path,
    mentions_import_path,
    shipped_modules,
    user_path,
)
from tests.support.plugins import plugin_dir, write_module

__all__ = ["plugin_dir"]  # the fixture


def test_a_child_imports_what_this_process_can(plugin_dir: Path, tmp_path: Path) -> None:
    write_module(plugin_dir, "pp_child", "VALUE = 41 + 1\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = ["-c", "import pp_child, diffstream; print(pp_child.VALUE, diffstream.__file__)"]
    bare = subprocess.run([sys.executable, *code], env=env, cwd=tmp_path,
                          capture_output=True, text=True)
    assert bare.returncode != 0 and "pp_child" in bare.stderr  # not found by default
    env["PYTHONPATH"] = child_pythonpath()
    ok = subprocess.run([sys.executable, *code], env=env, cwd=tmp_path, capture_output=True,
                        text=True)
    assert ok.returncode == 0, ok.stderr
    value, where = ok.stdout.split()
    import diffstream

    assert value == "42" and where == diffstream.__file__  # the same diffstream, too


def test_the_path_leaves_out_what_every_interpreter_has(plugin_dir: Path) -> None:
    entries = user_path()
    assert str(plugin_dir) in entries
    for key in ("stdlib", "purelib"):
        assert not any(e == sysconfig.get_paths()[key] or e.startswith(
            sysconfig.get_paths()[key] + os.sep) for e in entries)
    assert child_pythonpath().split(os.pathsep) == entries


def test_search_dirs_are_appended_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    first = sys.path[0]
    add_search_dirs([tmp_path, tmp_path, tmp_path / "missing"])
    assert sys.path[0] == first and sys.path.count(str(tmp_path)) == 1
    assert sys.path[-1] == str(tmp_path) and str(tmp_path / "missing") not in sys.path


@pytest.mark.parametrize(("data", "expected"), [
    ({"arms": [{"codec": "jpeg", "policy": {"kind": "rate"}}]}, False),
    ({"arms": [{"codec": "m:C", "policy": {"kind": "rate"}}]}, True),
    ({"arms": [{"codec": "jpeg", "policy": {"kind": "m:P"}}]}, True),
    ({"sweep": {"codecs": ["jpeg", "m:C"], "policies": [{"kind": "rate"}]}}, True),
    ({"sweep": {"policies": [{"kind": "m.n:P"}]}}, True),
    ({"trace": {"kind": "mahimahi", "path": "c:/traces/x"}}, False),  # a path, not a kind
    ({"description": "codec: m:C"}, False),
])
def test_which_scenarios_name_a_plugin_by_path(data: dict, expected: bool) -> None:
    assert mentions_import_path(data) is expected


def test_ray_gets_loaded_plugin_files_and_packages(plugin_dir: Path) -> None:
    write_module(plugin_dir, "pp_file", "class C: pass\n")
    pkg = plugin_dir / "pp_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "sub.py").write_text("class C: pass\n")
    load_import_path("pp_file:C")
    load_import_path("pp_pkg.sub:C")
    load_import_path("json:JSONDecoder")  # the standard library: every node has it
    assert shipped_modules() == [str(plugin_dir / "pp_file.py"), str(pkg)]
    assert "json" in plugins._LOADED_TOP


def test_ray_runtime_env_ships_loaded_plugins_to_a_cluster(plugin_dir: Path) -> None:
    from diffstream.sweep.executors import ray_runtime_env

    write_module(plugin_dir, "pp_ray", "class C: pass\n")
    load_import_path("pp_ray:C")
    import diffstream

    cluster = ray_runtime_env(local=False)
    assert cluster == {"py_modules": [str(Path(diffstream.__file__).parent),
                                      str(plugin_dir / "pp_ray.py")]}
    local = ray_runtime_env(local=True)
    assert str(plugin_dir) in local["env_vars"]["PYTHONPATH"].split(os.pathsep)
