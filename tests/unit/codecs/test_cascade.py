"""The composed generator x codec baseline (``codec: cascade``) and its first-version names.

Generation needs the shipped DDPM weights (diffstream/backbones/weights/ddpm.*); those
tests skip with the command that makes them otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from diffstream.codecs import create_codec
from diffstream.codecs.badiff.baselines import GENERATOR_COSTS, composed_costs
from diffstream.codecs.base import Encoded, GenerationRequest, capabilities_of, declared_costs
from diffstream.codecs.registry import codec_class, register_codec
from diffstream.pipeline.compute import ProfileCost

ROOT = Path(__file__).resolve().parents[3]
needs_weights = pytest.mark.skipif(
    not (ROOT / "diffstream" / "backbones" / "weights" / "ddpm.safetensors").is_file(),
    reason="needs weights: python -m diffstream.training ddpm")


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@register_codec("test-inner")
class TinyInner:
    """A plugin codec: the mean colour in 3 bytes."""

    name: ClassVar[str]
    compute_costs: ClassVar[dict[str, ProfileCost]] = {
        "cpu-2core": ProfileCost(encode_ms=1.0, decode_ms=0.5)}

    def encode(self, image: np.ndarray, budget_bits: int) -> Encoded:
        if budget_bits < 24:
            return Encoded(b"", skipped=True, reason="below 24 bits")
        return Encoded(bytes(image.reshape(-1, 3).mean(0).astype(np.uint8)), meta={"k": 1})

    def decode(self, payload: bytes, meta: dict[str, Any], shape: tuple[int, int]) -> np.ndarray:
        return np.broadcast_to(np.frombuffer(payload, np.uint8), (*shape, 3)).copy()

    def min_bits(self, shape: tuple[int, int]) -> int:
        return 24


def test_options_are_checked_when_built() -> None:
    with pytest.raises(ValueError, match="generator must be one of"):
        create_codec("cascade", generator="ddim", codec="test-inner")
    with pytest.raises(ValueError, match="check_every is an option of the earlystop"):
        create_codec("cascade", generator="full", codec="test-inner", check_every=3)
    with pytest.raises(KeyError, match="unknown codec"):
        create_codec("cascade", codec="no-such-codec")
    c = create_codec("cascade", generator="earlystop", codec="test-inner", check_every=3)
    assert isinstance(c.inner, TinyInner) and c.check_every == 3
    assert capabilities_of(c).generative and not capabilities_of(c).progressive


def test_inner_options_reach_the_inner_codec() -> None:
    c = create_codec("cascade", codec="gic", codec_options={"steps": 1, "seed": 5})
    assert c.inner.name == "gic" and c.inner.steps == 1 and c.inner.seed == 5
    assert c.min_bits((32, 32)) == c.inner.min_bits((32, 32))


def test_aliases_are_compositions() -> None:
    for name, gen, inner in (("cascade-jpeg", "full", "jpeg"), ("cascade-webp", "full", "webp"),
                             ("cascade-lic", "full", "lic"), ("earlystop-lic", "earlystop", "lic"),
                             ("dpmsolver-lic", "dpmsolver", "lic"), ("pndm-lic", "pndm", "lic")):
        c = create_codec(name)
        assert (c.generator, c.inner.name) == (gen, inner), name
        assert c.name == name  # records keep the first-version name
    assert create_codec("earlystop-lic", check_every=10).check_every == 10


def test_composed_costs() -> None:
    full_jpeg = declared_costs(codec_class("cascade"), {"generator": "full", "codec": "jpeg"})
    assert full_jpeg["cpu-2core"] == ProfileCost(encode_ms=0.4, decode_ms=0.15, per_step_ms=8.1,
                                                 decode_per_step_ms=0.0)
    early = declared_costs(codec_class("cascade"),
                           {"generator": "earlystop", "codec": "jpeg", "check_every": 10})
    assert early["cpu-2core"].encode_ms == pytest.approx(0.4 * (1 + 100 // 10))
    # an inner codec with per-step costs has no composed cost: measured
    assert declared_costs(codec_class("cascade"), {"codec": "diffc"}) == {}
    # aliases keep what was measured for them
    assert declared_costs(codec_class("cascade-lic"))["cpu-2core"].encode_ms == 10.0


def test_more_profiles_compose(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU profile added as data (update() on the plain dicts) reaches compositions and
    the aliases that do not declare it themselves."""
    gpu = ProfileCost(encode_ms=0.0, decode_ms=0.0, per_step_ms=0.2, decode_per_step_ms=0.0)
    monkeypatch.setitem(GENERATOR_COSTS["full"], "gpu-x", gpu)
    monkeypatch.setitem(codec_class("lic").compute_costs, "gpu-x",
                        ProfileCost(encode_ms=2.0, decode_ms=1.0))
    lic = declared_costs(codec_class("cascade-lic"))
    assert lic["gpu-x"] == ProfileCost(encode_ms=2.0, decode_ms=1.0, per_step_ms=0.2,
                                       decode_per_step_ms=0.0)
    assert lic["cpu-2core"].encode_ms == 10.0  # the alias's own measurement still wins
    assert "gpu-x" in composed_costs("full", "lic")
    assert "gpu-x" not in composed_costs("pndm", "lic")  # that generator does not know it
    assert "gpu-x" not in declared_costs(codec_class("cascade-jpeg"))  # nor does jpeg


@needs_weights
def test_a_composition_generates_like_its_alias() -> None:
    request, budget = GenerationRequest(seed=3), 1200
    alias = create_codec("dpmsolver-lic").generate(request, budget, (32, 32))
    composed = create_codec("cascade", generator="dpmsolver", codec="lic").generate(
        request, budget, (32, 32))
    assert composed.payload == alias.payload and composed.meta == alias.meta
    assert composed.steps == alias.steps == alias.meta["sampler_steps"] == 20
    assert 0 < len(composed.payload) * 8 <= budget


@needs_weights
def test_any_registered_codec_can_be_the_inner_codec() -> None:
    c = create_codec("cascade", generator="dpmsolver", codec="test-inner")
    enc = c.generate(GenerationRequest(seed=4), 100, (32, 32))
    assert len(enc.payload) == 3 and enc.meta == {"k": 1, "sampler_steps": 20}
    assert c.decode(enc.payload, enc.meta, (32, 32)).shape == (32, 32, 3)


@needs_weights
@pytest.mark.slow
def test_early_stop_with_a_generic_codec() -> None:
    """Early-Stop's checks with a codec that has no finest-step hook: its encode at a
    raw-size budget. 3 bytes always fit, so the first candidate check fits and the run
    goes on until the end (nothing overflows): 'full run fits'."""
    c = create_codec("cascade", generator="earlystop", codec="test-inner", check_every=25)
    enc = c.generate(GenerationRequest(seed=5), 100, (32, 32))
    assert enc.meta["early_stop"] == "full run fits" and enc.steps == 100


def test_steps_is_an_option_of_the_full_generator() -> None:
    with pytest.raises(ValueError, match="steps is an option of the full generator"):
        create_codec("cascade", generator="dpmsolver", codec="test-inner", steps=10)
    with pytest.raises(ValueError, match=r"steps must be in 1\.\.100"):
        create_codec("cascade", generator="full", codec="test-inner", steps=0)


@needs_weights
def test_full_generator_at_fewer_steps_is_the_respaced_sampler() -> None:
    """The compute-matched baseline: the plain DDPM's ancestral sampler on K steps."""
    from diffstream.codecs.badiff.samplers import ddpm_sample, load_plain_ddpm
    from diffstream.training.crops import to_uint8

    c = create_codec("cascade", generator="full", codec="test-inner", steps=7)
    enc = c.generate(GenerationRequest(seed=4), 100, (32, 32))
    assert enc.steps == enc.meta["sampler_steps"] == 7
    with torch.no_grad():
        x0, calls = ddpm_sample(load_plain_ddpm(), 4, (32, 32), 7)
    assert calls == 7 and enc.payload == bytes(to_uint8(x0)[0].reshape(-1, 3).mean(0)
                                               .astype(np.uint8))
