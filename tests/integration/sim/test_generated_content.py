"""Generation requests as content (BADiff's frames) and progressive prefixes at the receiver.

Both paths are exercised in-process with small stand-in codecs registered here, so they test
the simulator's plumbing (content source, sender dispatch, receiver prefix accounting)
independently of the diffusion models.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from diffstream.codecs import CodecError, Encoded, register_codec
from diffstream.codecs.base import GenerationRequest
from diffstream.content.sources import GeneratedSequence, make_source
from diffstream.errors import ConfigError
from diffstream.scenario.load import load_scenario
from diffstream.sim.workers import ReceiverWorker, SenderWorker
from diffstream.transport.packets import packetize
from diffstream.transport.wire import FrameHeader, arm_tag, pack_frame
from tests.conftest import tiny_scenario

STEP_BYTES = 50


def fake_reference(request: GenerationRequest, shape: tuple[int, int]) -> np.ndarray:
    """A deterministic 'sample' per seed (stands in for the DDPM's)."""
    rng = np.random.default_rng(request.seed)
    return rng.integers(0, 256, (*shape, 3), dtype=np.uint8)


@pytest.fixture
def fake_generate(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = types.ModuleType("diffstream.codecs.badiff.samplers")
    mod.reference_image = fake_reference  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "diffstream.codecs.badiff.samplers", mod)


@register_codec("test-generative")
class FakeGenerative:
    """Sends the seed's reference, coarsened to fit: 1 byte per pixel-block of 8x8 x 3."""

    name: ClassVar[str]
    progressive: ClassVar[bool] = False
    calls: ClassVar[list[int]] = []

    def reference(self, request: GenerationRequest, shape: tuple[int, int]) -> np.ndarray:
        return fake_reference(request, shape)

    def generate(self, request: GenerationRequest, budget_bits: int,
                 shape: tuple[int, int]) -> Encoded:
        type(self).calls.append(request.seed)
        return Encoded(payload=request.seed.to_bytes(8, "big"), meta={})

    def encode(self, image: np.ndarray, budget_bits: int) -> Encoded:
        raise AssertionError("a generative codec on generated content must not be asked to encode")

    def decode(self, payload: bytes, meta: dict[str, Any], shape: tuple[int, int]) -> np.ndarray:
        return fake_reference(GenerationRequest(seed=int.from_bytes(payload, "big")), shape)

    def min_bits(self, shape: tuple[int, int]) -> int:
        return 64


@register_codec("test-steps")
class FakeProgressive:
    """Step i adds STEP_BYTES bytes; a prefix of n steps decodes to grey level 40 n."""

    name: ClassVar[str]
    progressive: ClassVar[bool] = True

    def encode(self, image: np.ndarray, budget_bits: int) -> Encoded:
        n = min(5, budget_bits // (8 * STEP_BYTES))
        return Encoded(payload=bytes(range(n)) * STEP_BYTES, meta={"steps": n}, steps=n)

    def prefix_steps(self, payload: bytes, meta: dict[str, Any]) -> int:
        if len(payload) > meta["steps"] * STEP_BYTES:
            raise CodecError("payload longer than its steps")
        return len(payload) // STEP_BYTES

    def decode(self, payload: bytes, meta: dict[str, Any], shape: tuple[int, int]) -> np.ndarray:
        return np.full((*shape, 3), 40 * self.prefix_steps(payload, meta), np.uint8)

    def min_bits(self, shape: tuple[int, int]) -> int:
        return 8 * STEP_BYTES


def test_generated_sequence_is_deterministic(fake_generate: None) -> None:
    a = make_source({"source": "generated", "seed": 7, "requests": 3}, 16, 16, ".",
                    reference=fake_reference)
    b = GeneratedSequence(16, 16, seed=7, requests=3)
    assert isinstance(a, GeneratedSequence) and len(a) == 3
    assert [a.request(k) for k in range(6)] == [b.request(k) for k in range(6)]
    assert a.request(0) == a.request(3) != a.request(1)  # loops after `requests`
    assert GeneratedSequence(16, 16, seed=8).request(0) != a.request(0)
    assert all(0 <= a.request(k).seed < 2**63 for k in range(3))
    np.testing.assert_array_equal(a.frame(1), fake_reference(a.request(1), (16, 16)))


def test_sender_generates_from_requests(tmp_path: Path, fake_generate: None) -> None:
    path = tiny_scenario(tmp_path, content={"source": "generated", "requests": 4},
                         arms=[{"codec": "test-generative", "policy": {"kind": "rate"}}])
    sc, spath = load_scenario(path)
    tx = SenderWorker(sc, str(spath.parent))
    assert isinstance(tx.content, GeneratedSequence) and tx.content.seed == sc.seed
    tx.handle({"op": "arm", "arm": "g", "codec": "test-generative", "calibrate": False})
    FakeGenerative.calls.clear()
    reply = tx.handle({"op": "encode", "arm": "g", "seq": 5, "budget_bits": 1000,
                       "capture_s": 0.5, "start_s": 0.5})
    assert FakeGenerative.calls == [tx.content.request(5).seed]
    assert reply["payload_bytes"] == 8 and not reply["skipped"]


def test_generative_codec_needs_generated_content(tmp_path: Path) -> None:
    path = tiny_scenario(tmp_path, arms=[{"codec": "jpeg", "policy": {"kind": "rate"}},
                                         {"codec": "test-generative", "policy": {"kind": "rate"}}])
    with pytest.raises(ConfigError, match=r"tiny\.yaml:\d+: arms\[1\]\.codec: 'test-generative'"
                                          r".*content: \{source: generated\}"):
        load_scenario(path)


def test_folder_content_reaches_the_workers(tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "frames").mkdir()
    for i in range(2):
        Image.new("RGB", (40, 30), (60 * i, 0, 0)).save(tmp_path / "frames" / f"{i}.png")
    sc, spath = load_scenario(tiny_scenario(tmp_path, content={"source": "folder",
                                                               "path": "frames"}))
    tx = SenderWorker(sc, str(spath.parent))
    assert len(tx.content) == 2 and tx.content.frame(1)[0, 0, 0] == 60


def _progressive_receiver(tmp_path: Path) -> ReceiverWorker:
    sc, spath = load_scenario(tiny_scenario(tmp_path))
    rx = ReceiverWorker(sc, str(spath.parent))
    rx.on_arm({"arm": "p", "codec": "test-steps", "options": {}})
    return rx


def _frame(rx: ReceiverWorker) -> bytes:
    enc = FakeProgressive().encode(np.zeros((*rx.shape, 3), np.uint8), 8 * 5 * STEP_BYTES)
    h = FrameHeader(seq=0, arm=arm_tag("p"), codec="test-steps", budget_bits=2000, capture_s=0.0,
                    send_s=0.0, shape=rx.shape, steps=enc.steps, meta=enc.meta)
    return pack_frame(h, enc.payload)


def _msg(frame: bytes, on_time: int) -> dict[str, Any]:
    """100-byte packets; the first ``on_time`` arrive at 0.1 s, the rest after the 0.3 s
    deadline."""
    chunks = [[o, d, 0.1 if i < on_time else 1.0]
              for i, (o, d) in enumerate(packetize(frame, 100))]
    return {"op": "frame", "arm": "p", "seq": 0, "frame_len": len(frame), "chunks": chunks,
            "capture_s": 0.0, "deadline_s": 0.3}


def test_prefix_that_beat_the_deadline_is_shown_with_its_step(tmp_path: Path) -> None:
    rx = _progressive_receiver(tmp_path)
    (res,) = rx.on_frame(_msg(_frame(rx), on_time=4))
    assert res["decoded"] and res["partial"] and not res["error"]
    # the on-time packets hold the header and part of the payload: whole steps only
    assert 0 < res["prefix_step"] < 5


def test_complete_progressive_frame_reports_all_steps(tmp_path: Path) -> None:
    rx = _progressive_receiver(tmp_path)
    (res,) = rx.on_frame(_msg(_frame(rx), on_time=10**6))
    assert res["decoded"] and not res["partial"] and res["prefix_step"] == 5


def test_prefix_without_a_whole_step_is_late_not_malformed(tmp_path: Path) -> None:
    rx = _progressive_receiver(tmp_path)
    before = rx.malformed
    header_packets = -(-(len(_frame(rx)) - 5 * STEP_BYTES) // 60)  # 60 B of frame a packet
    # the header and less than one step's bytes of payload; then part of the header only
    (res,) = rx.on_frame(_msg(_frame(rx), on_time=header_packets))
    assert not res["decoded"] and res["prefix_step"] == 0 and not res["error"]
    (res,) = rx.on_frame(_msg(_frame(rx), on_time=1))
    assert not res["decoded"] and res["prefix_step"] is None and not res["error"]
    assert rx.malformed == before
