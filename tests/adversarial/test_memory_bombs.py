"""Item 8: inputs that would exhaust memory are refused up front, with the reason."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT

BOMB = """name: bomb
duration_s: 1
frame: {width: 64, height: 64, fps: 10}
trace: {kind: constant, mbps: 2.0, duration_s: 10}
arms:
  - codec: jpeg
    policy: {kind: fixed, bpp: 1.0}
    codec_options:
      a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
      b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
      c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
      d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
      e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
      f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
      g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
      h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
      i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""
BOMB_LINES = range(9, 18)  # the codec_options block


def _limit_memory() -> None:  # the child: 2 GiB of address space, so a bomb cannot hurt
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def _cli(tmp_path: Path, scenario: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "run_sim.py"), str(scenario), "--no-dashboard",
         "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=timeout,
        cwd=tmp_path, preexec_fn=_limit_memory)


def test_yaml_alias_bomb_is_refused(tmp_path: Path) -> None:
    """Nine lines of aliases in codec_options (which takes any structure): 3.5 billion
    strings when expanded, gigabytes once written out as the resolved scenario. Refused,
    with the line of a key whose value explodes, before anything is expanded."""
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    p = _cli(tmp_path, path)
    err = p.stderr.replace("\n", "")
    assert p.returncode == 2, err[-2000:]
    assert any(f"bomb.yaml:{n}:" in err for n in BOMB_LINES) and "alias" in err, err
    assert not (tmp_path / "o").exists()


def test_the_guard_counts_expansion_not_lines() -> None:
    import yaml

    from diffstream.errors import ConfigError
    from diffstream.scenario.yamlguard import check_expansion

    small = yaml.compose("a: &x [1, 2, 3]\nb: [*x, *x]\n")
    check_expansion(small, Path("s.yaml"))  # a few aliases are fine
    with pytest.raises(ConfigError, match=r"b.yaml:1[0-7]: .*alias"):
        check_expansion(yaml.compose(BOMB), Path("b.yaml"))
    with pytest.raises(ConfigError):  # recursive aliases never end: refused too
        check_expansion(yaml.compose("a: &x [*x]\n"), Path("r.yaml"))


def test_a_run_that_cannot_fit_in_memory_is_refused(tmp_path: Path) -> None:
    """A day at 240 fps: 20.7 million frames, about 90 GB for one arm. Refused at once
    with the estimate, not after hours (here: 60 s) of simulation."""
    if psutil.virtual_memory().available > 100 * 2**30:
        pytest.skip("this machine could hold such a run")
    path = tmp_path / "day.yaml"
    path.write_text("name: day\nduration_s: 86400\nframe: {width: 64, height: 64, fps: 240}\n"
                    "trace: {kind: constant, mbps: 2.0, duration_s: 10}\n"
                    "arms:\n  - {codec: jpeg, policy: {kind: fixed, bpp: 1.0}}\n")
    p = _cli(tmp_path, path, timeout=60)
    err = p.stderr.replace("\n", "")
    assert p.returncode == 2, err[-2000:]
    assert "day.yaml:2: duration_s" in err and "GiB" in err and "20736000 frames" in err
    assert not (tmp_path / "o").exists()


def test_a_long_file_without_aliases_is_not_a_bomb() -> None:
    import yaml

    from diffstream.errors import ConfigError
    from diffstream.scenario.yamlguard import check_expansion

    steps = ", ".join(f"[{t}, 1.0]" for t in range(500))  # 1500 nodes, no alias
    check_expansion(yaml.compose(f"steps: [{steps}]\n"), Path("long.yaml"), limit=100)
    with pytest.raises(ConfigError):
        check_expansion(yaml.compose(f"s: &s [{steps}]\nt: [*s]\n"), Path("l.yaml"),
                        limit=100)
