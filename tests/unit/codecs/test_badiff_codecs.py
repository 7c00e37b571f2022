"""BADiff and its baselines as generative codecs: budgets, fallbacks, reference determinism.

Needs the shipped weights (diffstream/backbones/weights/ddpm.* and
diffstream/codecs/badiff/weights/badiff.*); skipped with the
command that makes them otherwise.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from diffstream.codecs import create_codec
from diffstream.codecs.base import GenerationRequest, GenerativeCodec

ROOT = Path(__file__).resolve().parents[3]
DDPM_WEIGHTS = ROOT / "diffstream" / "backbones" / "weights"
BADIFF_WEIGHTS = ROOT / "diffstream" / "codecs" / "badiff" / "weights"
GENERATIVE = ("badiff", "cascade-lic", "cascade-jpeg", "cascade-webp", "earlystop-lic",
              "dpmsolver-lic", "pndm-lic")

needs_weights = pytest.mark.skipif(
    not (DDPM_WEIGHTS / "ddpm.safetensors").is_file()
    or not (BADIFF_WEIGHTS / "badiff.safetensors").is_file(),
    reason="needs weights: python -m diffstream.training ddpm && "
           "python -m diffstream.training badiff")


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _check(enc, budget: int) -> None:  # noqa: ANN001
    if enc.skipped:
        assert enc.payload == b"" and enc.reason, "a skip must say why"
    else:
        assert 0 < enc.bits <= budget
    if enc.meta.get("fallback"):
        assert "fallback" in enc.reason and "delta" in enc.reason


@needs_weights
@pytest.mark.parametrize("bpp", [0.3, 1.5])
def test_badiff_payload_within_budget_or_explained(bpp: float) -> None:
    codec = create_codec("badiff")
    assert isinstance(codec, GenerativeCodec)
    budget = int(bpp * 32 * 32)
    enc = codec.generate(GenerationRequest(seed=11), budget, (32, 32))
    _check(enc, budget)
    assert 1 <= enc.steps <= 100 and enc.meta["H"] == pytest.approx(bpp, abs=1e-3)
    if not enc.skipped:
        img = codec.decode(enc.payload, enc.meta, (32, 32))
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8


@needs_weights
def test_reference_is_deterministic() -> None:
    from diffstream.codecs.badiff.samplers import reference_image

    a = reference_image(GenerationRequest(seed=5), (32, 32))
    b = reference_image(GenerationRequest(seed=5), (32, 32))
    c = reference_image(GenerationRequest(seed=6), (32, 32))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(ValueError):
        reference_image(GenerationRequest(seed=5, label=1), (32, 32))


@needs_weights
@pytest.mark.slow
def test_reference_and_badiff_payload_identical_across_processes(tmp_path: Path) -> None:
    from diffstream.codecs.badiff.samplers import reference_image

    codec = create_codec("badiff")
    enc = codec.generate(GenerationRequest(seed=21), 700, (32, 32))
    script = (
        "import numpy as np, torch\n"
        "torch.set_num_threads(1)\n"
        "from diffstream.codecs import create_codec\n"
        "from diffstream.codecs.base import GenerationRequest\n"
        "from diffstream.codecs.badiff.samplers import reference_image\n"
        "c = create_codec('badiff')\n"
        f"p = open(r'{tmp_path / 'p.bin'}', 'rb').read()\n"
        f"np.save(r'{tmp_path / 'dec.npy'}', c.decode(p, {{}}, (32, 32)))\n"
        f"np.save(r'{tmp_path / 'ref.npy'}', reference_image(GenerationRequest(seed=21), "
        "(32, 32)))\n"
        f"e = c.generate(GenerationRequest(seed=21), 700, (32, 32))\n"
        f"open(r'{tmp_path / 'p2.bin'}', 'wb').write(e.payload)\n")
    (tmp_path / "p.bin").write_bytes(enc.payload)
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, timeout=300)
    assert np.array_equal(np.load(tmp_path / "dec.npy"), codec.decode(enc.payload, {}, (32, 32)))
    assert np.array_equal(np.load(tmp_path / "ref.npy"),
                          reference_image(GenerationRequest(seed=21), (32, 32)))
    assert (tmp_path / "p2.bin").read_bytes() == enc.payload  # generation is reproducible


@needs_weights
@pytest.mark.slow
@pytest.mark.parametrize("name", GENERATIVE)
def test_every_generative_codec_fits_or_explains(name: str) -> None:
    codec = create_codec(name)
    for bpp in (0.2, 0.6, 1.8):
        budget = int(bpp * 32 * 32)
        enc = codec.generate(GenerationRequest(seed=31), budget, (32, 32))
        _check(enc, budget)
        if not enc.skipped:
            assert codec.decode(enc.payload, enc.meta, (32, 32)).shape == (32, 32, 3)
