"""The cores charge what a codec declares (``compute_costs``), unless the scenario's inline
profile or the central table says otherwise; an unknown profile name is a load error."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from diffstream.codecs.base import Encoded
from diffstream.codecs.registry import register_codec
from diffstream.errors import ConfigError
from diffstream.pipeline.compute import PROFILES, ProfileCost
from diffstream.pipeline.encoder import FrameEncoder
from diffstream.pipeline.receiver_core import ReceiverCore
from diffstream.pipeline.sender_core import SenderCore
from diffstream.scenario.load import load_scenario
from tests.conftest import tiny_scenario


@register_codec("test-costed")
class CostedCodec:
    """A plugin that declares its cost on a device no table knows."""

    name: ClassVar[str]
    compute_costs: ClassVar[dict[str, ProfileCost]] = {
        "test-device": ProfileCost(encode_ms=7.0, decode_ms=3.0, per_step_ms=2.0),
    }

    def encode(self, image: np.ndarray, budget_bits: int) -> Encoded:
        return Encoded(payload=bytes(10), steps=4)

    def decode(self, payload: bytes, meta: dict[str, Any], shape: tuple[int, int]) -> np.ndarray:
        return np.zeros((*shape, 3), np.uint8)

    def min_bits(self, shape: tuple[int, int]) -> int:
        return 80


def _scenario(tmp_path: Path, profile: Any) -> Any:
    path = tiny_scenario(tmp_path, arms=[{"codec": "test-costed", "policy": {"kind": "rate"}}],
                         compute={"kind": "profile", "profile": profile})
    return load_scenario(path)


def _charged(tmp_path: Path, profile: Any) -> tuple[float, float, float]:
    """(encode charged, decode estimate at the sender, receiver's per-frame decode est.)"""
    sc, spath = _scenario(tmp_path, profile)
    encoder = FrameEncoder(sc, str(spath.parent))
    info = encoder.open_arm("a", "test-costed", {}, calibrate=False)
    enc = encoder.encode("a", 0, 10_000, 0.0, 0.0)
    sender = SenderCore(sc, sc.arms[0], info)
    rx = ReceiverCore(sc, str(spath.parent))
    rx.open_arm("a", "test-costed", {})
    return enc.encode_charged_s, sender.decode_estimate(), rx.charge.decode_s(0.0, steps=4)


def test_the_codecs_declared_cost_is_charged(tmp_path: Path) -> None:
    enc, dec_est, rx = _charged(tmp_path, "test-device")
    assert enc == pytest.approx((7.0 + 2.0 * 4) / 1000)
    assert dec_est == pytest.approx((3.0 + 2.0) / 1000)  # one step: the sender's guess
    assert rx == pytest.approx((3.0 + 2.0 * 4) / 1000)


def test_central_table_overrides_the_declaration(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PROFILES, "test-device",
                        {"test-costed": ProfileCost(encode_ms=100.0, decode_ms=50.0)})
    enc, dec_est, _ = _charged(tmp_path, "test-device")
    assert enc == pytest.approx(0.1) and dec_est == pytest.approx(0.05)


def test_inline_profile_overrides_both(tmp_path: Path) -> None:
    inline = {"test-costed": {"encode_ms": 1.0, "decode_ms": 1.0}}
    enc, dec_est, _ = _charged(tmp_path, inline)
    assert enc == pytest.approx(0.001) and dec_est == pytest.approx(0.001)


def test_a_profile_the_codec_does_not_know_is_measured(tmp_path: Path) -> None:
    sc, spath = _scenario(tmp_path, "cpu-2core")  # known (the central table), not to it
    encoder = FrameEncoder(sc, str(spath.parent))
    encoder.open_arm("a", "test-costed", {}, calibrate=False)
    assert encoder.charges["a"].source == "measured"
    enc = encoder.encode("a", 0, 10_000, 0.0, 0.0)
    assert enc.encode_charged_s == pytest.approx(enc.encode_ms / 1000)  # what it measured


def test_unknown_profile_is_a_load_error_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tiny\.yaml:\d+: compute\.profile: unknown profile "
                                          r"'no-such-device'.*test-device"):
        _scenario(tmp_path, "no-such-device")


def test_builtin_scenario_codecs_charge_as_before(tmp_path: Path) -> None:
    """jpeg and webp under cpu-2core: the numbers of the former central table."""
    sc, spath = load_scenario(tiny_scenario(tmp_path))
    encoder = FrameEncoder(sc, str(spath.parent))
    for arm, name, cost in (("j", "jpeg", 0.4), ("w", "webp", 2.0)):
        encoder.open_arm(arm, name, {}, calibrate=False)
        assert encoder.charges[arm].source == "declared"
        assert encoder.encode(arm, 0, 8000, 0.0, 0.0).encode_charged_s == pytest.approx(
            cost / 1000)
