"""Shared fixtures: small scenarios that run in seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def tiny_scenario(tmp_path: Path, **overrides: Any) -> Path:
    """A 64x64, 10 fps, 3 s interactive scenario on a 2 Mbit/s constant link (share 0.05:
    100 kbit/s, ~2.4 bpp), two arms. Returns the YAML path."""
    data: dict[str, Any] = {
        "name": "tiny",
        "seed": 3,
        "duration_s": 3.0,
        "frame": {"width": 64, "height": 64, "fps": 10},
        "content": {"source": "skimage", "shot_frames": 10},
        "mode": {"kind": "interactive", "target_latency_ms": 300},
        "trace": {"kind": "constant", "mbps": 2.0, "duration_s": 10},
        "link": {"share": 0.05, "delay_ms": 20, "queue": {"bytes": 20000}},
        "arms": [
            {"codec": "jpeg", "policy": {"kind": "fixed", "bpp": 1.0}},
            {"codec": "webp", "policy": {"kind": "rate"}},
        ],
        "output": {"dir": str(tmp_path / "out"), "plots": False},
    }
    for key, value in overrides.items():
        data[key] = value
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return tiny_scenario(tmp_path)
