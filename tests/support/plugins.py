"""Helpers for the plugin tests: plugin modules and installed-looking distributions written
to a temporary folder, and a fixture that puts that folder on ``sys.path`` and forgets every
plugin resolved in it afterwards (the registries cache what they resolve)."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from diffstream import plugins
from diffstream.codecs import registry
from diffstream.control.policies import plugins as policy_plugins

# JPEG under another name: a codec that is not part of diffstream. Its reference "pj:J" has
# the length of "jpeg", so the frame headers (which carry the codec's reference) have the
# same size, and a run gives the same records as the built-in codec.
JPEG_ALIAS = '''
from diffstream.codecs.classic.pillow import JpegCodec


class J(JpegCodec):
    """diffstream's JPEG, reached by import path."""
'''

# A policy that is a plain class (no pydantic base), options through its Options model.
PLAIN_POLICY = '''
from pydantic import BaseModel, Field


class Half:
    """Half of the largest budget, times ``factor``."""

    class Options(BaseModel):
        factor: float = Field(1.0, gt=0, le=2)

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self.label = f"half(x{factor:g})"

    def budget_bits(self, obs) -> int:
        return int(obs.max_bits * 0.5 * self.factor)
'''

# A PolicyModel subclass: a fixed fraction of the last throughput sample's frame share.
MODEL_POLICY = '''
from pydantic import Field

from diffstream.control.policies import Observation, PolicyModel, clamp_bits


class Share(PolicyModel):
    share: float = Field(0.5, gt=0, le=1)

    def budget_bits(self, obs: Observation) -> int:
        if not obs.throughput_bps:
            return clamp_bits(obs.bits_for_bpp(0.5), obs)
        return clamp_bits(obs.throughput_bps[-1] * obs.frame_interval_s * self.share, obs)
'''


def write_module(folder: Path, name: str, source: str) -> Path:
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


def write_distribution(folder: Path, name: str, entry_points: dict[str, dict[str, str]],
                       version: str = "1.0") -> Path:
    """A ``NAME-VERSION.dist-info`` that ``importlib.metadata`` finds on ``sys.path`` (what
    ``pip install --target`` leaves), with the given entry points."""
    info = folder / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for group, eps in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in eps.items()]
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines))
    return info


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on ``sys.path`` for plugin modules and distributions; everything resolved
    from it is forgotten afterwards."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    before = set(sys.modules)
    monkeypatch.setattr(sys, "path", [*sys.path, str(folder)])
    monkeypatch.setattr(registry, "_PLUGINS", {})
    monkeypatch.setattr(policy_plugins, "_RESOLVED", {})
    monkeypatch.setattr(plugins, "_LOADED_TOP", {})
    plugins.forget_entry_points()
    yield folder
    for name in set(sys.modules) - before:
        if getattr(sys.modules[name], "__file__", "") and str(folder) in str(
                sys.modules[name].__file__):
            del sys.modules[name]
    plugins.forget_entry_points()
