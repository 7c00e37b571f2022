"""GIC, DiffC and BADiff on pretrained diffusers models from local folders.

Tiny random models built with the diffusers classes and saved in diffusers layout
(``tests/support/tiny_diffusers.py``): a latent diffusion model with an ``AutoencoderKL``
(its ``vae/`` also serves GIC), one with a ``VQModel``, and a conditional
``UNet2DConditionModel`` with a null-prompt embedding file (Stable Diffusion's layout).
"""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from diffstream.backbones.pretrained import PretrainedFolderError
from diffstream.codecs.badiff.codec import BADiffCodec
from diffstream.codecs.base import CodecError, GenerationRequest
from diffstream.codecs.diffc.codec import PURPOSE_NOISE, DiffcCodec
from diffstream.codecs.diffc.schedule import CALIBRATION_FILE
from diffstream.codecs.gic.codec import GicCodec
from diffstream.codecs.gic.model import GicModel, WeightsMissingError
from diffstream.codecs.registry import create_codec
from diffstream.content.sources import load_photo
from tests.support.tiny_diffusers import (
    one_torch_thread,
    save_badiff_weights,
    save_gic_weights,
    save_model_set,
)

pytestmark = pytest.mark.skipif(not CALIBRATION_FILE.is_file(),
                                reason="no shipped DiffC calibration")
SHAPE = (32, 32)


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    return save_model_set(root)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.array(load_photo("astronaut").resize((64, 64)))


def _crop(img: np.ndarray, shape: tuple[int, int] = SHAPE) -> np.ndarray:
    return np.ascontiguousarray(img[:shape[0], :shape[1]])


# --------------------------------------------------------------------------- DiffC
DIFFC = {"chunk_bits": 8, "max_steps": 4, "ddim_steps": 5, "device": "cpu"}


def _diffc(models: Path, name: str) -> DiffcCodec:
    extra = ({"null_embedding": str(models / "sd" / "null_embedding.safetensors")}
             if name == "sd" else {})
    return create_codec("diffc", model=str(models / name), **DIFFC, **extra)


@pytest.mark.parametrize("name", ["ldm", "vq", "sd"])
def test_diffc_codes_the_latent_and_decoder_rebuilds_it_exactly(models, image, name):
    codec = _diffc(models, name)
    assert codec.model.latent_shape(*SHAPE) == (4, 8, 8)
    assert codec.x_T(*SHAPE).shape == (1, 4, 8, 8) and codec.dims(*SHAPE) == 256
    enc = codec.encode(_crop(image), 1 << 16)
    assert not enc.skipped and enc.steps == 4 and enc.bits <= 1 << 16
    # the decoder replays the steps from the indices: the very latent the encoder kept
    t, x_t = codec.trajectory(enc.payload, enc.meta, SHAPE)[-1]
    assert t == codec.cal.schedule[4] and torch.equal(x_t, codec.last_stats.x_t)
    out = codec.decode(enc.payload, enc.meta, SHAPE)
    assert out.shape == (*SHAPE, 3) and out.dtype == np.uint8
    # decode = diffusion denoising of that latent, then the VAE decoder
    direct = codec.denoise(x_t, t, codec._key(PURPOSE_NOISE, zlib.crc32(enc.payload)))
    np.testing.assert_array_equal(out, direct)


def test_diffc_latent_budget_and_prefixes(models, image):
    codec = create_codec("diffc", model=str(models / "ldm"), **{**DIFFC, "max_steps": 16})
    full = codec.encode(_crop(image), 1 << 16)
    sizes = [r.payload_bytes for r in codec.last_stats.steps]
    assert full.steps == 16 and sizes == sorted(sizes) and sizes[0] < sizes[-1]
    budget = 8 * sizes[len(sizes) // 2]
    kept = sum(1 for b in sizes if 8 * b <= budget)  # steps stop at the first that overflows
    enc = codec.encode(_crop(image), budget)
    assert enc.steps == kept < 16 and enc.bits <= budget
    cut = full.payload[:sizes[kept - 1]]
    assert 1 <= codec.prefix_steps(cut, full.meta) <= kept
    assert codec.prefix_steps(full.payload, full.meta) == 16
    with pytest.raises(CodecError):
        codec.decode(full.payload[:3], full.meta, SHAPE)


def test_diffc_latent_frame_sides(models):
    codec = _diffc(models, "ldm")
    assert codec.multiple == 8  # lcm(8, 4x VAE x 2x U-Net)
    with pytest.raises(ValueError, match="multiples of 8"):
        codec.encode(np.zeros((36, 36, 3), np.uint8), 10_000)


def test_diffc_finds_the_model_folders_own_calibration(models, tmp_path):
    own = shutil.copytree(models / "ldm", tmp_path / "ldm")
    cal = json.loads(CALIBRATION_FILE.read_text())
    cal["id"] = 77
    (own / "diffc_calibration.json").write_text(json.dumps(cal))
    codec = create_codec("diffc", model=str(own), **DIFFC)
    assert codec.cal.id == 77
    assert create_codec("diffc", model=str(models / "ldm"), **DIFFC).cal.id != 77


def test_diffc_check_options(models, tmp_path):
    DiffcCodec.check_options({"model": str(models / "ldm")})
    with pytest.raises(PretrainedFolderError, match="null_embedding"):
        DiffcCodec.check_options({"model": str(models / "sd")})
    with pytest.raises(PretrainedFolderError, match="goes with model"):
        DiffcCodec.check_options({"null_embedding": "x.pt"})
    broken = shutil.copytree(models / "ldm", tmp_path / "t500")
    sched = broken / "scheduler" / "scheduler_config.json"
    sched.write_text(json.dumps({**json.loads(sched.read_text()), "num_train_timesteps": 500}))
    with pytest.raises(PretrainedFolderError, match="calibrated for T=1000"):
        DiffcCodec.check_options({"model": str(broken)})
    with pytest.raises(PretrainedFolderError, match="unet/ is missing"):
        DiffcCodec.check_options({"model": str(tmp_path)})


# --------------------------------------------------------------------------- GIC
@pytest.fixture(scope="module")
def gic_weights(models, tmp_path_factory) -> Path:
    return save_gic_weights(models / "ldm", tmp_path_factory.mktemp("gic"))


def _gic(models: Path, weights: Path, name: str = "gic") -> GicCodec:
    return create_codec(name, vae=str(models / "ldm" / "vae"), weights=str(weights),
                        device="cpu")


def test_gic_codes_the_vae_latent(models, gic_weights, image):
    codec = _gic(models, gic_weights)
    assert codec.model.cfg.autoencoder == "diffusers" and codec.multiple == 16
    ae = codec.model.ae
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():  # y = (posterior mean - m_c) / s_c, the stored statistics
        raw = ae.vae.vae.encode(x).latent_dist.mean
        want = (raw - ae.latent_mean.view(1, -1, 1, 1)) / ae.latent_std.view(1, -1, 1, 1)
        torch.testing.assert_close(ae.encode(x), want)
    fits = 0
    for budget in (3000, 6000, 20_000):
        enc = codec.encode(image, budget)
        if enc.skipped:
            assert "floor" in enc.reason
            continue
        fits += 1
        assert enc.bits <= budget
        out = codec.decode(enc.payload, enc.meta, (64, 64))
        assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert fits >= 2


def test_gic_vae_decode_is_bit_exact_in_a_fresh_model(models, gic_weights, image):
    from diffstream.codecs.gic.bitstream import LatentCoder

    codec = _gic(models, gic_weights)
    enc = codec.encode(image, 20_000)
    out = codec.decode(enc.payload, enc.meta, (64, 64))
    fresh = GicModel.load(gic_weights, vae=models / "ldm")  # uncached, the pipeline's vae/
    torch.testing.assert_close(fresh.ae.latent_mean, codec.model.ae.latent_mean)
    coder = LatentCoder(fresh.hyper, fresh.cfg.q_lo, fresh.cfg.q_hi)
    y_hat, q, _ = coder.decode(enc.payload, 4, (16, 16))
    other = GicCodec.__new__(GicCodec)
    other.model, other.coder, other.device = fresh, coder, torch.device("cpu")
    other.sampler, other.seed = codec.sampler, codec.seed
    np.testing.assert_array_equal(other.reconstruct(y_hat, q, enc.payload), out)
    lic = _gic(models, gic_weights, "lic")  # same bitstream, no reverse network
    assert lic.decode(enc.payload, enc.meta, (64, 64)).shape == (64, 64, 3)


def test_gic_vae_and_weights_must_belong_together(models, gic_weights, tmp_path):
    with pytest.raises(WeightsMissingError, match="needs GIC weights trained on it"):
        create_codec("gic", vae=str(models / "ldm"), device="cpu")
    with pytest.raises(WeightsMissingError, match="pass its folder"):
        create_codec("gic", weights=str(gic_weights), device="cpu")
    with pytest.raises(WeightsMissingError, match="own autoencoder"):
        GicModel.load(None, vae=models / "ldm")  # the shipped weights are for our own AE
    with pytest.raises(WeightsMissingError, match="another VAE architecture"):
        GicModel.load(gic_weights, vae=models / "vq")
    GicCodec.check_options({"vae": str(models / "ldm"), "weights": str(gic_weights)})
    for opts, msg in (({"vae": str(models / "ldm")}, "needs codec_options.weights"),
                      ({"weights": str(gic_weights)}, "add codec_options.vae"),
                      ({"vae": str(models / "vq"), "weights": str(gic_weights)},
                       "another VAE architecture"),
                      ({"vae": str(tmp_path), "weights": str(gic_weights)}, "neither"),
                      ({"vae": str(models / "ldm"), "weights": str(tmp_path)},
                       "gic.json is missing")):
        with pytest.raises(PretrainedFolderError, match=msg):
            GicCodec.check_options(opts)


# --------------------------------------------------------------------------- BADiff
@pytest.fixture(scope="module")
def badiff_weights(models, tmp_path_factory) -> Path:
    return save_badiff_weights(models / "ldm", tmp_path_factory.mktemp("badiff"))


def test_badiff_generates_in_the_latent_and_codes_pixels(models, badiff_weights):
    from diffstream.codecs.badiff.stop_policy import mid_features

    codec = create_codec("badiff", ldm=str(models / "ldm"), weights=str(badiff_weights),
                         steps=6, device="cpu")
    assert codec.model.cfg.backbone["kind"] == "latent"
    assert codec.model.unet.config.class_embed_type == "identity"
    with torch.no_grad(), mid_features(codec.model.unet) as f:  # the policy's input
        codec.model.eps(torch.randn(1, 4, 8, 8), 500, 1.0)
    assert f.value.shape == (1, 16)  # the latent U-Net's mid-block width
    req = GenerationRequest(seed=3)
    for budget in (4000, 12_000):
        enc = codec.generate(req, budget, SHAPE)
        if enc.skipped:
            continue
        assert enc.bits <= budget and 1 <= enc.steps <= 6
        # seeded noise: same request, same bytes, from a codec in the same state (a fresh
        # one: LIC's rate control carries its size calibration from call to call, so a
        # second call on the same codec may settle on a neighbouring q)
        fresh = create_codec("badiff", ldm=str(models / "ldm"), weights=str(badiff_weights),
                             steps=6, device="cpu")
        assert fresh.generate(req, budget, SHAPE).payload == enc.payload
        out = codec.decode(enc.payload, enc.meta, SHAPE)
        assert out.shape == (*SHAPE, 3)
        return
    pytest.fail("no budget fitted")


def test_badiff_latent_reference_is_the_plain_models_sample(models, badiff_weights):
    codec = create_codec("badiff", ldm=str(models / "ldm"), weights=str(badiff_weights),
                         steps=4, device="cpu")
    req = GenerationRequest(seed=9)
    ref = codec.reference(req, SHAPE)
    assert ref.shape == (*SHAPE, 3) and ref.dtype == np.uint8
    np.testing.assert_array_equal(ref, codec.reference(req, SHAPE))
    with pytest.raises(ValueError, match="multiples of"):
        codec.generate(req, 4000, (36, 36))


def test_badiff_ldm_and_weights_must_belong_together(models, badiff_weights):
    BADiffCodec.check_options({"ldm": str(models / "ldm"), "weights": str(badiff_weights)})
    for opts, msg in (({"ldm": str(models / "ldm")}, "needs codec_options.weights"),
                      ({"weights": str(badiff_weights)}, "pass codec_options.ldm"),
                      ({"ldm": str(models / "sd"), "weights": str(badiff_weights)},
                       "unconditional latent model"),
                      ({"ldm": str(models / "vq"), "weights": str(badiff_weights)},
                       "another vae architecture"),
                      ({"ldm": str(models / "ldm"), "weights": str(models)}, "missing")):
        with pytest.raises(PretrainedFolderError, match=msg):
            BADiffCodec.check_options(opts)
    from diffstream.codecs.badiff.model import WEIGHTS_DIR

    if (WEIGHTS_DIR / "badiff.json").is_file():  # the shipped pixel weights refuse an LDM
        with pytest.raises(PretrainedFolderError, match="pixel DDPM"):
            BADiffCodec.check_options({"ldm": str(models / "ldm"),
                                       "weights": str(WEIGHTS_DIR)})


# --------------------------------------------------------------------------- across processes
DECODE_ELSEWHERE = """
import json, sys
import numpy as np
import torch
torch.set_num_threads(4)  # the codecs pin one thread themselves
from diffstream.codecs.registry import create_codec
jobs = json.loads(open(sys.argv[1]).read())
for job in jobs:
    codec = create_codec(job["codec"], **job["options"])
    payload = open(job["payload"], "rb").read()
    out = codec.decode(payload, job["meta"], tuple(job["shape"]))
    np.save(job["payload"] + ".npy", out)
    if job["codec"] == "diffc":
        torch.save(codec.trajectory(payload, job["meta"], tuple(job["shape"]))[-1][1],
                   job["payload"] + ".xt")
"""


@pytest.mark.slow  # a fresh interpreter with torch + diffusers: 10-20 s here
def test_decoders_in_another_process_agree_bit_for_bit(models, gic_weights, image, tmp_path):
    import subprocess
    import sys

    sd = {"model": str(models / "sd"), **DIFFC,
          "null_embedding": str(models / "sd" / "null_embedding.safetensors")}
    gic = {"vae": str(models / "ldm"), "weights": str(gic_weights), "device": "cpu"}
    jobs, local = [], []
    for name, opts, img in (("diffc", sd, _crop(image)), ("gic", gic, image)):
        codec = create_codec(name, **opts)
        enc = codec.encode(img, 20_000)
        f = tmp_path / f"{name}.bin"
        f.write_bytes(enc.payload)
        jobs.append({"codec": name, "options": opts, "payload": str(f), "meta": enc.meta,
                     "shape": list(img.shape[:2])})
        local.append((codec.decode(enc.payload, enc.meta, img.shape[:2]),
                      codec.last_stats.x_t if name == "diffc" else None))
    spec = tmp_path / "jobs.json"
    spec.write_text(json.dumps(jobs))
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-c", DECODE_ELSEWHERE, str(spec)], cwd=root,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    for job, (img, x_t) in zip(jobs, local, strict=True):
        np.testing.assert_array_equal(np.load(job["payload"] + ".npy"), img)
        if x_t is not None:  # DiffC: the decoder's latent is the encoder's, bit for bit
            assert torch.equal(torch.load(job["payload"] + ".xt", weights_only=True), x_t)
