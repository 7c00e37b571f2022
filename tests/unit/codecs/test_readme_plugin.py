"""The README's "Bring your own codec" plugin, as printed, is a working codec (and, with its
scenario arm, under 40 lines)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from diffstream.codecs import CodecError, create_codec
from diffstream.content.sources import make_source
from tests.conftest import ROOT
from tests.support.plugins import plugin_dir

__all__ = ["plugin_dir"]  # the fixture


def section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Bring your own codec")
    return text[start:text.index("\n## ", start + 1)]


def test_the_readme_plugin_runs_as_printed(plugin_dir: Path) -> None:
    code, arm = (re.search(rf"```{lang}\n(.*?)```", section(), re.S).group(1)  # type: ignore
                 for lang in ("python", "yaml"))
    assert len(code.splitlines()) + len(arm.splitlines()) < 40
    ref = yaml.safe_load(arm)["arms"][0]["codec"]
    (plugin_dir / f"{ref.split(':')[0]}.py").write_text(code)
    codec = create_codec(ref)
    image = make_source({"source": "skimage"}, 64, 64, ".").frame(0)
    decoded = 0
    for bpp in (0.1, 1.0, 4.0):
        enc = codec.encode(image, int(bpp * 4096))
        assert len(enc.payload) * 8 <= bpp * 4096
        if not enc.skipped:
            out = codec.decode(enc.payload, enc.meta, (64, 64))
            assert out.shape == (64, 64, 3) and out.dtype == np.uint8
            decoded += 1
    assert decoded >= 2 and 0 < codec.min_bits((64, 64)) < 4096
    with pytest.raises(CodecError):
        codec.decode(b"\x89PNG garbage", {}, (64, 64))
