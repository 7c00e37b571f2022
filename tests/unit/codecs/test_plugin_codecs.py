"""Codec references beyond the built-in names: import paths, entry points, the contract
check and the messages that say what to fix, and an ``Options`` model for the options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from diffstream.codecs import registry
from diffstream.codecs.registry import (
    UnknownCodecError,
    available_codecs,
    codec_class,
    codec_origin,
    create_codec,
)
from diffstream.plugins import CODECS_GROUP, shipped_modules
from tests.support.plugins import JPEG_ALIAS, plugin_dir, write_distribution, write_module

__all__ = ["plugin_dir"]  # the fixture

OPTIONS_CODEC = '''
from pydantic import BaseModel, ConfigDict, Field

from diffstream.codecs import Encoded


class Flat:
    """Sends nothing; decodes a flat grey frame of ``level``."""

    progressive = False

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        level: int = Field(128, ge=0, le=255)
        floor: int = 8

    def __init__(self, level: int, floor: int) -> None:
        self.level, self.floor = level, floor

    def encode(self, image, budget_bits):
        return Encoded(b"\\x00", {})

    def decode(self, payload, meta, shape):
        import numpy as np
        return np.full((*shape, 3), self.level, np.uint8)

    def min_bits(self, shape):
        return self.floor
'''


def test_an_import_path_resolves_to_a_codec_that_works(plugin_dir: Path) -> None:
    write_module(plugin_dir, "pj", JPEG_ALIAS)
    cls = codec_class("pj:J")
    assert cls.__module__ == "pj" and codec_origin("pj:J") == "import path"
    codec = create_codec("pj:J")
    image = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    enc, ref = codec.encode(image, 8000), create_codec("jpeg").encode(image, 8000)
    assert enc.payload == ref.payload and len(enc.payload) * 8 <= 8000
    assert codec.decode(enc.payload, enc.meta, (64, 64)).shape == (64, 64, 3)
    assert shipped_modules() == [str(plugin_dir / "pj.py")]  # what Ray would ship


def test_an_entry_point_name_resolves_and_is_listed(plugin_dir: Path) -> None:
    write_module(plugin_dir, "pj_ep", JPEG_ALIAS)
    write_distribution(plugin_dir, "my-codecs", {CODECS_GROUP: {"jpeg2": "pj_ep:J"}})
    assert "jpeg2" in available_codecs()
    assert codec_class("jpeg2").__module__ == "pj_ep"
    assert codec_origin("jpeg2") == "distribution my-codecs 1.0"
    assert shipped_modules() == [str(plugin_dir / "pj_ep.py")]


def test_a_builtin_name_wins_over_an_entry_point(plugin_dir: Path) -> None:
    write_module(plugin_dir, "pj_shadow", JPEG_ALIAS)
    write_distribution(plugin_dir, "shadow", {CODECS_GROUP: {"webp": "pj_shadow:J"}})
    assert codec_class("webp").__module__ == "diffstream.codecs.classic.pillow"


def error_of(ref: str) -> str:
    with pytest.raises(UnknownCodecError) as info:
        codec_class(ref)
    assert isinstance(info.value, KeyError)  # what codec_class always raised
    return str(info.value)


def test_a_module_that_is_not_there(plugin_dir: Path) -> None:
    msg = error_of("no_such_plugin_mod.sub:Codec")
    assert "no module named 'no_such_plugin_mod'" in msg
    assert "is the module on PYTHONPATH?" in msg and str(plugin_dir) in msg


def test_a_class_that_is_not_there_lists_what_is(plugin_dir: Path) -> None:
    write_module(plugin_dir, "pj_missing", JPEG_ALIAS)
    msg = error_of("pj_missing:K")
    assert "has no 'K'" in msg and "it defines J" in msg and "pj_missing.py" in msg


def test_an_import_that_raises_names_the_plugins_line(plugin_dir: Path) -> None:
    write_module(plugin_dir, "pj_boom", "import os\n\nraise RuntimeError('no GPU here')\n")
    msg = error_of("pj_boom:Codec")
    assert "RuntimeError: no GPU here" in msg and f"{plugin_dir / 'pj_boom.py'}:3" in msg
    write_module(plugin_dir, "pj_syntax", "class C(:\n")
    assert f"{plugin_dir / 'pj_syntax.py'}:1" in error_of("pj_syntax:C")
    # raised inside a library the plugin calls: the plugin's own line is the one to fix
    write_module(plugin_dir, "pj_lib", "from pydantic import BaseModel\n\n\n"
                 "class C(BaseModel):\n    x = 1\n")
    msg = error_of("pj_lib:C")
    assert "PydanticUserError" in msg and f"{plugin_dir / 'pj_lib.py'}:4" in msg
    write_module(plugin_dir, "pj_dep", "import not_installed_dependency\n")
    msg = error_of("pj_dep:C")
    assert "not_installed_dependency" in msg and "install what the plugin imports" in msg


@pytest.mark.parametrize(("source", "ref", "needle"), [
    ("def make():\n    pass\n", "pj_c1:make", "is a function, not a class"),
    ("import json as sub\n", "pj_c2:sub", "is a module, not a class"),
    ("class C:\n    progressive = False\n    def encode(self, i, b): ...\n",
     "pj_c3:C", "it lacks decode(), min_bits()"),
    ("from diffstream.codecs.base import Capabilities\n"
     "class C:\n    capabilities = Capabilities(progressive=True)\n"
     "    def encode(self, i, b): ...\n    def decode(self, p, m, s): ...\n"
     "    def min_bits(self, s): ...\n", "pj_c4:C", "has no prefix_steps method"),
    ("class C:\n    progressive = False\n    encode = decode = 3\n    def min_bits(self, s): "
     "...\n", "pj_c5:C", "it lacks encode(), decode()"),
])
def test_the_contract_is_checked_on_resolution(plugin_dir: Path, source: str, ref: str,
                                               needle: str) -> None:
    write_module(plugin_dir, ref.split(":")[0], source)
    msg = error_of(ref)
    assert needle in msg
    assert ("docs/plugins.md" in msg) == ("lacks" in needle or "has no" in needle)


def test_malformed_and_unknown_references() -> None:
    assert "write 'package.module:ClassName'" in error_of("a b:C")
    msg = error_of("h266")
    assert "unknown codec 'h266'" in msg and "jpeg" in msg and "import path" in msg


def test_an_options_model_validates_and_fills_the_constructor(plugin_dir: Path) -> None:
    write_module(plugin_dir, "pj_flat", OPTIONS_CODEC)
    codec = create_codec("pj_flat:Flat", level=7)
    assert (codec.level, codec.floor) == (7, 8)  # the model's defaults reach the constructor
    assert int(codec.decode(b"", {}, (16, 16))[0, 0, 0]) == 7
    with pytest.raises(ValidationError):
        create_codec("pj_flat:Flat", level=300)
    assert codec_class("pj_flat:Flat").name == "pj_flat:Flat"  # given one, like register_codec


def test_resolution_is_cached(plugin_dir: Path) -> None:
    write_module(plugin_dir, "pj_cache", JPEG_ALIAS)
    assert codec_class("pj_cache:J") is codec_class("pj_cache:J")
    assert "pj_cache:J" in registry._PLUGINS


# --------------------------------------------------------------------------- the example
@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> type:
    from tests.conftest import ROOT

    monkeypatch.syspath_prepend(str(ROOT / "examples" / "plugin_codec" / "src"))
    return codec_class("diffstream_plugin_example.codec:DownsampleWebP")


def test_the_example_codec_keeps_budgets_and_picks_smaller_scales_when_short(
        example: type) -> None:
    from diffstream.codecs import CodecError
    from diffstream.content.sources import make_source

    codec = create_codec("diffstream_plugin_example.codec:DownsampleWebP")
    image = make_source({"source": "skimage"}, 64, 64, ".").frame(0)
    floor = codec.min_bits((64, 64))
    scales = []
    for bpp in (0.1, 0.3, 0.6, 1.2, 2.4):
        budget = int(bpp * 64 * 64)
        enc = codec.encode(image, budget)
        assert len(enc.payload) * 8 <= budget
        if enc.skipped:
            assert budget < 2 * floor and enc.reason
            continue
        scales.append(enc.meta["s"])
        out = codec.decode(enc.payload, enc.meta, (64, 64))
        assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert scales == sorted(scales) and scales[0] < 1.0 == scales[-1]  # downscales when short
    enc = codec.encode(image, 20_000)
    for bad in (b"", enc.payload[:10], b"RIFF" + bytes(40)):
        with pytest.raises(CodecError):
            codec.decode(bad, enc.meta, (64, 64))
    with pytest.raises(CodecError):
        codec.decode(enc.payload, {"s": 0.3}, (64, 64))  # a scale it never uses
    with pytest.raises(CodecError):
        codec.decode(enc.payload, enc.meta, (32, 32))  # another frame size
    with pytest.raises(ValidationError):
        create_codec("diffstream_plugin_example.codec:DownsampleWebP", scales=[])
