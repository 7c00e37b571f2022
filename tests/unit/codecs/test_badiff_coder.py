"""BADiff's ``coder`` option (issue 16 item 2): the generated image coded by ``lic``.

Needs the shipped DDPM, BADiff and GIC/LIC weights; skipped with the commands otherwise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from diffstream.codecs import create_codec
from diffstream.codecs.badiff.codec import LIC_COSTS, BADiffCodec
from diffstream.codecs.badiff.model import target_bpp
from diffstream.codecs.base import CodecError, GenerationRequest, declared_costs
from diffstream.training.crops import CropSampler, to_uint8

ROOT = Path(__file__).resolve().parents[3]
WEIGHTS = (ROOT / "diffstream" / "backbones" / "weights" / "ddpm.safetensors",
           ROOT / "diffstream" / "codecs" / "badiff" / "weights" / "badiff.safetensors",
           ROOT / "diffstream" / "codecs" / "gic" / "weights" / "gic.safetensors")
SHAPE = (32, 32)

pytestmark = pytest.mark.skipif(
    not all(p.is_file() for p in WEIGHTS),
    reason="needs weights: python -m diffstream.training ddpm && python -m "
           "diffstream.training badiff && python -m diffstream.training gic")


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    return to_uint8(CropSampler().batch(1, 32, np.random.default_rng(7)))[0]


def test_lic_coder_round_trip_is_lics_bytes_and_pixels(crop: np.ndarray) -> None:
    codec = create_codec("badiff", coder="lic")
    lic = create_codec("lic", device="cpu")
    budget = int(0.8 * 32 * 32)
    enc = codec.encode(crop, budget)
    assert not enc.skipped and 0 < enc.bits <= budget
    assert enc.payload == lic.encode(crop, budget).payload  # LIC's own bitstream, no header
    out = codec.decode(enc.payload, enc.meta, SHAPE)
    assert np.array_equal(out, lic.decode(enc.payload, {}, SHAPE))
    assert np.array_equal(create_codec("badiff", coder="lic").decode(enc.payload, {}, SHAPE),
                          out)  # a fresh receiver decodes the same pixels
    assert codec.min_bits(SHAPE) == lic.min_bits(SHAPE)


@pytest.mark.slow  # two 100-step samplings of the shipped model (~1 s each, one core)
def test_lic_coder_generate_codes_the_same_sample_as_the_own_coder() -> None:
    own, lic = create_codec("badiff", coder="own"), create_codec("badiff", coder="lic")
    request, budget = GenerationRequest(seed=5), int(1.2 * 32 * 32)
    image, calls, p = own.sample(request, SHAPE, target_bpp(budget, SHAPE))
    enc = lic.generate(request, budget, SHAPE)
    assert enc.meta["coder"] == "lic" and enc.steps == calls and "fallback" not in enc.meta
    assert not enc.skipped and enc.bits <= budget
    assert enc.payload == create_codec("lic", device="cpu").encode(image, budget).payload
    assert lic.decode(enc.payload, enc.meta, SHAPE).shape == (*SHAPE, 3)


@pytest.mark.slow  # three samplings of the shipped model
def test_sample_with_full_stops_where_sample_stops() -> None:
    codec = create_codec("badiff")
    request = GenerationRequest(seed=9)
    image, calls, p = codec.sample(request, SHAPE, 0.4)
    stopped, calls2, p2, full = codec.sample_with_full(request, SHAPE, 0.4)
    assert np.array_equal(image, stopped) and (calls, p) == (calls2, p2)
    assert calls < 100  # the shipped policy stops early, so the two images differ
    assert not np.array_equal(full, stopped)
    nostop = create_codec("badiff", adaptive_stop=False).sample(request, SHAPE, 0.4)[0]
    assert np.array_equal(full, nostop)  # the full-step output of the same seed and H


def test_lic_coder_malformed_payloads_raise_codec_error(crop: np.ndarray) -> None:
    codec = create_codec("badiff", coder="lic")
    p = codec.encode(crop, int(0.6 * 32 * 32)).payload
    bad = [b"", p[:1], p[:5], p[:-4], p[:-1], p + b"\x00\x00\x00\x00", p[:2] + p[6:],
           bytes([p[0] ^ 0x10]) + p[1:], p[:10] + bytes([p[10] ^ 0xFF]) + p[11:],
           p[:-3] + bytes([p[-3] ^ 0x40]) + p[-2:]]
    rng = np.random.default_rng(0)
    bad += [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in (3, 40, 200)]
    for payload in bad:
        with pytest.raises(CodecError):
            codec.decode(payload, {}, SHAPE)
    own_payload = create_codec("badiff", coder="own").encode(crop, int(0.6 * 32 * 32)).payload
    with pytest.raises(CodecError):  # the other coder's bytes are not LIC's
        codec.decode(own_payload, {}, SHAPE)


def test_coder_option_is_checked_and_priced() -> None:
    with pytest.raises(ValueError, match="coder must be one of own, lic"):
        create_codec("badiff", coder="jpeg")
    with pytest.raises(ValueError, match="coder"):
        BADiffCodec.check_options({"coder": "jpeg"})
    assert declared_costs(BADiffCodec, {"coder": "lic"})["cpu-2core"] == LIC_COSTS
    assert declared_costs(BADiffCodec, {"coder": "own"}) == BADiffCodec.compute_costs
