"""A composed codec's options (``codec: cascade``): the outer ones against the cascade, the
inner ones against the inner codec, each error naming its line and full field path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from diffstream.errors import ConfigError
from diffstream.scenario.load import load_scenario
from tests.conftest import tiny_scenario

GENERATED = {"source": "generated", "requests": 2}


def _load(tmp_path: Path, codec: str, options: dict[str, Any],
          content: dict[str, Any] = GENERATED) -> Any:
    arm = {"codec": codec, "codec_options": options, "policy": {"kind": "rate"}}
    path = tiny_scenario(tmp_path, arms=[arm], content=content,
                         frame={"width": 32, "height": 32, "fps": 1})
    return load_scenario(path)[0]


def _line(tmp_path: Path, text: str) -> int:
    lines = (tmp_path / "tiny.yaml").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def test_composed_cascade_loads(tmp_path: Path) -> None:
    sc = _load(tmp_path, "cascade", {"generator": "earlystop", "codec": "jpeg",
                                     "check_every": 10, "codec_options": {}})
    assert sc.arms[0].codec_options["codec"] == "jpeg"


def test_inner_option_checked_against_the_inner_codec(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, "cascade", {"codec": "lic", "codec_options": {"wieghts": "x"}})
    msg = str(err.value)
    assert f"tiny.yaml:{_line(tmp_path, 'wieghts')}: arms[0].codec_options.codec_options." \
           "wieghts: 'lic' has no option 'wieghts'" in msg
    assert "weights" in msg  # the inner codec's own options are listed


def test_inner_option_type_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"arms\[0\]\.codec_options\.codec_options\.steps: "
                                          r".*int"):
        _load(tmp_path, "cascade", {"codec": "gic", "codec_options": {"steps": "many"}})


def test_unknown_inner_codec(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, "cascade", {"codec": "nosuch"})
    assert f"tiny.yaml:{_line(tmp_path, 'nosuch')}: arms[0].codec_options.codec: unknown " \
           "codec 'nosuch'" in str(err.value)


def test_unknown_generator(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"arms\[0\]\.codec_options\.generator: .*'full'"):
        _load(tmp_path, "cascade", {"generator": "ddim"})


def test_alias_options_are_the_inner_codecs(tmp_path: Path) -> None:
    _load(tmp_path, "earlystop-lic", {"check_every": 10})
    with pytest.raises(ConfigError, match=r"arms\[0\]\.codec_options\.check_every: "
                                          r"'cascade-lic' has no option"):
        _load(tmp_path, "cascade-lic", {"check_every": 10})


def test_cascade_needs_generated_content(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"arms\[0\]\.codec: 'cascade' generates its frames"):
        _load(tmp_path, "cascade", {"codec": "jpeg"},
              content={"source": "skimage", "shot_frames": 10})
