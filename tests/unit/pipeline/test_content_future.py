"""What the encoder measures of the content's future for ``optimal``: each frame's motion
against the frames before it, and each frame's own floor."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffstream.pipeline.encoder import FrameEncoder
from diffstream.scenario.load import load_scenario
from tests.conftest import tiny_scenario


def _encoder(tmp_path: Path) -> FrameEncoder:
    sc, folder = load_scenario(tiny_scenario(tmp_path))
    return FrameEncoder(sc, str(folder))


def test_motion_table_is_the_mse_against_earlier_frames(tmp_path: Path) -> None:
    enc = _encoder(tmp_path)
    table = enc.motion_table(3)
    assert table is not None and len(table) == enc.scenario.frames_per_arm
    f = [enc.content.frame(k).astype(np.float32) / 255.0 for k in range(6)]
    assert table[5][0] == np.float32(np.mean((f[5] - f[4]) ** 2))
    assert table[5][2] == np.float32(np.mean((f[5] - f[2]) ** 2))
    assert table[1][2] == np.float32(np.mean((f[1] - f[0]) ** 2))  # before frame 0: frame 0
    assert table[0] == (0.0, 0.0, 0.0)
    # a pan: older frames are further away; the shot cut (10 frames a shot) is the largest
    assert table[5][0] < table[5][2]
    assert table[10][0] > table[9][0]


def test_frame_floors_are_each_frames_smallest_budget(tmp_path: Path) -> None:
    enc = _encoder(tmp_path)
    info = enc.open_arm("a", "jpeg", {}, calibrate=True, motion_ages=2)
    floors = info.frame_floors
    assert floors is not None and len(floors) == enc.scenario.frames_per_arm
    assert info.motion_mse is not None and len(info.motion_mse[0]) == 2
    codec = enc.codecs["a"]
    for k in (0, 7, 12):
        assert not enc._code(codec, k, floors[k]).skipped
        assert enc._code(codec, k, floors[k] - 1).skipped  # jpeg's floor is exact
    # content differs from shot to shot, so do the floors; none is the codec's typical one
    assert len(set(floors)) > 1
    plain = enc.open_arm("b", "jpeg", {}, calibrate=True)
    assert plain.frame_floors is None and plain.motion_mse is None


class _NoFloorHook:
    """The jpeg codec without its ``floor_bits``: the encoder must bisect."""

    def __init__(self, codec: object) -> None:
        self._codec = codec

    def encode(self, image: np.ndarray, budget_bits: int) -> object:
        return self._codec.encode(image, budget_bits)  # type: ignore[attr-defined]


def test_bisection_agrees_with_the_codecs_own_floor(tmp_path: Path) -> None:
    enc = _encoder(tmp_path)
    enc.open_arm("a", "jpeg", {}, calibrate=False)
    codec = enc.codecs["a"]
    exact = enc.frame_floors(codec)
    found = enc.frame_floors(_NoFloorHook(codec))
    assert exact is not None and found is not None
    for k in (0, 7, 12, 25):
        assert exact[k] <= found[k] <= exact[k] + 8  # bisection stops within a byte
        assert enc._code(codec, k, exact[k] - 1).skipped
