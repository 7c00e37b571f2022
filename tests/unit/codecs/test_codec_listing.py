"""``python -m diffstream codecs``: origin, capabilities, floor, and the files each codec
reads when it is built (each built in its own forked process, so shared caches do not hide
a file), with a failing codec reported in its row."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diffstream.codecs import create_codec
from diffstream.codecs.listing import (
    codec_rows,
    default_names,
    main,
    parse_size,
    shadowed_rows,
)
from diffstream.plugins import CODECS_GROUP
from tests.support.plugins import JPEG_ALIAS, plugin_dir, write_distribution, write_module

__all__ = ["plugin_dir"]  # the fixture

# Two codecs sharing one module-level cache of a weights file (as DiffC and the BADiff
# baselines share the DDPM): each row must still list the file.
WEIGHTED = '''
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from diffstream.codecs.base import Capabilities
from diffstream.codecs.classic.pillow import JpegCodec

WEIGHTS = Path(__file__).with_name("w.safetensors")
CONFIG = Path(__file__).with_name("w.json")
_CACHE = {}


class A(JpegCodec):
    def __init__(self):
        super().__init__()
        if "w" not in _CACHE:
            CONFIG.read_text()
            _CACHE["w"] = load_file(str(WEIGHTS))
        self.w = _CACHE["w"]

    def describe(self):
        return {"tensors": len(self.w), "weights": {"extra": str(CONFIG)}}


class B(A):  # generative, for the capability column
    capabilities = Capabilities(generative=True)

    def generate(self, request, budget_bits, shape): ...

    def reference(self, request, shape): ...


class Broken(JpegCodec):
    def __init__(self):
        raise RuntimeError("no weights configured")


class Crashes(JpegCodec):
    def __init__(self):
        import os
        os._exit(3)
'''


@pytest.fixture
def weighted(plugin_dir: Path) -> Path:
    from safetensors.numpy import save_file

    save_file({"k": np.zeros(4, np.float32)}, str(plugin_dir / "w.safetensors"))
    (plugin_dir / "w.json").write_text("{}")
    write_module(plugin_dir, "pl_w", WEIGHTED)
    return plugin_dir


def test_rows_give_origin_capabilities_floor_and_files(weighted: Path) -> None:
    jpeg, a, b = codec_rows((48, 64), ["jpeg", "pl_w:A", "pl_w:B"])
    assert (jpeg.origin, jpeg.progressive, jpeg.generative, jpeg.weights) == (
        "built-in", False, False, [])
    assert jpeg.floor_bits == create_codec("jpeg").min_bits((48, 64))
    assert jpeg.floor_bpp == pytest.approx(jpeg.floor_bits / (48 * 64))
    for row in (a, b):  # B reuses A's cache in this process, but not in its own child
        assert row.origin == "import path" and not row.error
        assert [w.split(" (")[0] for w in row.weights] == [
            str(weighted / "w.json"), str(weighted / "w.safetensors")]
        assert row.info == {"tensors": "1"}
    assert (a.generative, b.generative) == (False, True)


def test_a_codec_that_fails_or_crashes_gets_its_row(weighted: Path) -> None:
    broken, crashes, missing, jpeg = codec_rows((64, 64), [
        "pl_w:Broken", "pl_w:Crashes", "pl_w:Nope", "jpeg"])
    assert "cannot build it with its default options: RuntimeError: no weights" in broken.error
    assert "killed the process (exit code 3)" in crashes.error
    assert "has no 'Nope'" in missing.error and missing.floor_bits is None
    assert jpeg.floor_bits and not jpeg.error  # the list went on


def test_entry_point_plugins_are_listed_with_their_distribution(plugin_dir: Path) -> None:
    write_module(plugin_dir, "pl_ep", JPEG_ALIAS)
    write_distribution(plugin_dir, "pl-dist", {CODECS_GROUP: {"jpeg3": "pl_ep:J",
                                                              "jpeg": "pl_ep:J"}}, "2.1")
    names = default_names()
    assert names[-1] == "jpeg3" and {"gic", "webp", "badiff"} <= set(names)
    assert names.count("jpeg") == 1
    (row,) = codec_rows((64, 64), ["jpeg3"])
    assert row.origin == "distribution pl-dist 2.1" and row.floor_bits
    (shadowed,) = shadowed_rows()
    assert shadowed.name == "jpeg" and shadowed.origin == "distribution pl-dist 2.1"
    assert shadowed.error.startswith("shadowed: the built-in codec 'jpeg' wins")


def test_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jpeg", "--size", "32x16", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["name"] == "jpeg" and row["floor_bits"] == create_codec("jpeg").min_bits((16, 32))
    assert parse_size("128x96") == (96, 128)
    proc = subprocess.run([sys.executable, "-m", "diffstream", "codecs", "--size", "big"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "expected WxH" in proc.stderr


@pytest.mark.slow
def test_builtin_learned_codecs_list_their_shipped_weights() -> None:
    # A fresh process, as a user runs it: in this one, earlier tests may have loaded the
    # weights into the caches the listing's forked children inherit (then nothing is read).
    proc = subprocess.run([sys.executable, "-m", "diffstream", "codecs", "gic", "diffc",
                           "--size", "64x64", "--json"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    gic, diffc = (json.loads(line) for line in proc.stdout.splitlines() if line.strip())
    assert any(w.endswith("gic.safetensors (7.0 MB)") or "gic/weights/gic.safetensors" in w
               for w in gic["weights"]), gic
    assert any("backbones/weights/ddpm.safetensors" in w for w in diffc["weights"]), diffc
    assert diffc["progressive"] and gic["floor_bits"] and diffc["floor_bits"]
