"""Item 7: bad input exits 2 with file:line:field, before any worker starts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from diffstream.cli import run
from tests.conftest import tiny_scenario


def _run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str,
         **scenario: Any) -> tuple[int, str, float]:
    path = tiny_scenario(tmp_path, **scenario)
    t0 = time.monotonic()
    rc = run([str(path), "--no-dashboard", "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err.replace("\n", "")
    return rc, err, time.monotonic() - t0


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


@pytest.mark.parametrize("steps, why", [
    ([[0, 0.0]], "every rate is 0"),
    ([[0, 2.0], [1, -1.0]], ">= 0"),
    ([[1, 2.0]], "t = 0"),
    ([[0, 2.0], [0, 1.0]], "increase"),
])
def test_steps_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str], steps: list,
                     why: str) -> None:
    rc, err, _ = _run(tmp_path, capsys, trace={"kind": "steps", "steps": steps,
                                               "duration_s": 5})
    assert rc == 2 and why in err and "tiny.yaml:" in err and "trace.steps" in err, err


@pytest.mark.parametrize("where", ["file", "below_file", "proc"])
def test_out_that_cannot_be_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     where: str) -> None:
    (tmp_path / "afile").write_text("x")
    out = {"file": tmp_path / "afile", "below_file": tmp_path / "afile" / "sub",
           "proc": Path("/proc/diffstream-nope/x")}[where]
    path = tiny_scenario(tmp_path)
    assert run([str(path), "--no-dashboard", "--network-only", "0", "--out", str(out)]) == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert "--out" in err and "Traceback" not in err


def test_empty_content_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "frames").mkdir()
    rc, err, took = _run(tmp_path, capsys, content={"source": "folder", "path": "frames"})
    line = _line_of(tmp_path / "tiny.yaml", "path: frames")
    assert rc == 2 and f"tiny.yaml:{line}: content.path" in err and "no image" in err, err
    assert took < 5  # before: 7-13 s, after both workers had started


def test_content_file_that_is_not_an_image(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    (tmp_path / "frames").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "frames" / "0001.png")
    (tmp_path / "frames" / "0002.png").write_text("not a png")
    rc, err, took = _run(tmp_path, capsys, content={"source": "folder", "path": "frames"})
    assert rc == 2 and "content.path" in err and "0002.png" in err, err
    assert took < 5


def test_unknown_photo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err, took = _run(tmp_path, capsys,
                         content={"source": "skimage", "photos": ["astronaut", "mona_lisa"]})
    line = _line_of(tmp_path / "tiny.yaml", "mona_lisa")
    assert rc == 2 and f"tiny.yaml:{line}: content.photos[1]" in err and "mona_lisa" in err, err
    assert took < 5


def test_unknown_codec_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arms = [{"codec": "jpeg", "policy": {"kind": "fixed", "bpp": 1.0}},
            {"codec": "webp", "codec_options": {"qualty": 5}, "policy": {"kind": "rate"}}]
    rc, err, took = _run(tmp_path, capsys, arms=arms)
    line = _line_of(tmp_path / "tiny.yaml", "qualty")
    assert rc == 2 and f"tiny.yaml:{line}: arms[1].codec_options.qualty" in err, err
    assert took < 5


def test_codec_options_follow_the_codec_signature() -> None:
    """Keys and types come from the constructor, through **options and inner codecs."""
    from diffstream.codecs import codec_class
    from diffstream.scenario.precheck import codec_parameters

    assert codec_parameters(codec_class("jpeg")) == {}
    gic = codec_parameters(codec_class("gic"))
    assert gic is not None and {"steps", "beta", "weights", "seed"} <= set(gic)
    lic = codec_parameters(codec_class("lic"))
    assert lic is not None and "weights" in lic
    early = codec_parameters(codec_class("earlystop-lic"))
    assert early is not None and {"check_every", "weights"} <= set(early)
    assert codec_parameters(codec_class("cascade-jpeg")) == {}


def test_codec_option_of_the_wrong_type(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    arms = [{"codec": "gic", "codec_options": {"steps": {"a": [1, 2]}},
             "policy": {"kind": "rate"}}]
    rc, err, _ = _run(tmp_path, capsys, arms=arms)
    assert rc == 2 and "arms[0].codec_options.steps" in err and "int" in err, err


def test_shipped_scenarios_still_load(tmp_path: Path) -> None:
    """The checks refuse nothing the shipped scenarios use."""
    from diffstream.scenario.load import load_scenario
    from diffstream.scenario.yaml_lines import resolve_path
    from tests.conftest import ROOT

    for path in sorted((ROOT / "scenarios").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        if "sweep" in data or "live" in data:
            continue
        if "path" in data["trace"] and resolve_path(data["trace"]["path"], path) is None:
            continue  # a trace from ../shared that is not here
        if any(a["codec"] not in ("jpeg", "webp") for a in data["arms"]):
            continue  # model-backed codecs import torch: covered by their own tests
        load_scenario(path)
