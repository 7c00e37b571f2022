"""The sender's codec calibration on the scenario's own content: the floor every policy of a
calibrated arm sees, the rate-quality curve's point at it, and the per-budget compute."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from diffstream.pipeline.encoder import CALIBRATION_BPP, FLOOR_BISECTIONS, FrameEncoder
from diffstream.pipeline.sender_core import SenderCore
from diffstream.scenario.load import load_scenario
from tests.conftest import tiny_scenario


def _encoder(tmp_path: Path, **overrides) -> FrameEncoder:
    sc, path = load_scenario(tiny_scenario(tmp_path, **overrides))
    return FrameEncoder(sc, str(path.parent))


def test_calibrated_floor_is_the_contents_not_pink_noise(tmp_path: Path) -> None:
    enc = _encoder(tmp_path)
    info = enc.open_arm("w", "webp", {}, calibrate=True)
    codec = enc.codecs["w"]
    n = len(enc.content)
    # WebP skips exactly when its quality-1 payload exceeds the budget: the true floor of a
    # frame is that size, and the arm's floor is the largest over the calibration frames
    true = max(8 * len(codec._encode_at(Image.fromarray(enc.content.frame(k)), 1))
               for k in sorted({0, n // 3, 2 * n // 3}))
    # the grid budgets around it, halved FLOOR_BISECTIONS times, bound the error
    grid = [int(b * 4096) for b in CALIBRATION_BPP]
    lo = max(b for b in grid if b < true)
    hi = min(b for b in grid if b >= true)
    assert info.floor_source == "content"
    assert true <= info.min_bits <= true + max(8, (hi - lo) / 2**FLOOR_BISECTIONS)
    assert info.min_bits != codec.min_bits((64, 64))  # the pink-noise guess differs
    # the curve has a measured point at the floor (every calibration frame codes there)
    assert info.rq is not None and info.rq[0][0] <= info.min_bits / 4096 * 1.0001
    assert info.rq_steps is not None and len(info.rq_steps) == len(info.rq[0])
    # uncalibrated arms keep the codec's own floor
    plain = enc.open_arm("p", "webp", {}, calibrate=False)
    assert plain.floor_source == "codec" and plain.min_bits == codec.min_bits((64, 64))


def test_budget_dependent_compute_from_the_calibration(tmp_path: Path) -> None:
    cost = {"encode_ms": 1.0, "decode_ms": 2.0, "per_step_ms": 10.0}
    sc, path = load_scenario(tiny_scenario(
        tmp_path, compute={"kind": "profile", "profile": {"jpeg": cost}},
        arms=[{"codec": "jpeg", "policy": {"kind": "mpc"}}]))
    enc = FrameEncoder(sc, str(path.parent))
    info = enc.open_arm("j", "jpeg", {}, calibrate=True)
    core = SenderCore(sc, sc.arms[0], info)
    assert core.compute_at is not None  # a per-step cost and calibrated steps
    e, d = core.compute_at(4096)
    assert e == pytest.approx(0.011) and d == pytest.approx(0.012)  # JPEG: 1 step
    assert core.compute_at(0) == (pytest.approx(0.001), 0.0)  # a skip is not decoded
    assert core.observe(0, 0.0, 0.0, 0.3).compute_at is core.compute_at
    # a per-call cost needs no per-level compute: the scalar estimates hold
    sc2, _ = load_scenario(tiny_scenario(tmp_path, arms=[{"codec": "jpeg",
                                                          "policy": {"kind": "mpc"}}]))
    assert SenderCore(sc2, sc2.arms[0], info).compute_at is None
