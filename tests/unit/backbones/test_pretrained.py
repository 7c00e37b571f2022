"""Pretrained diffusers folders: layout checks (errors name the path and the missing part),
the VAE's latent scaling, and the latent diffusion model's DDPM interface."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from diffstream.backbones.latent import (
    LatentDiffusion,
    check_model_folder,
    load_backbone,
    load_latent_diffusion,
    load_vae,
)
from diffstream.backbones.pretrained import (
    PretrainedFolderError,
    find_vae,
    inspect_model,
    load_alpha_bar,
    load_null_embedding,
)
from diffstream.errors import ConfigError
from tests.support.tiny_diffusers import (
    CROSS_DIM,
    NULL_TOKENS,
    one_torch_thread,
    save_model_set,
)


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pretrained")
    return save_model_set(root, v_prediction=True)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# --------------------------------------------------------------------------- layout checks
def test_layout_is_read_without_loading_weights(models):
    m = inspect_model(models / "ldm")
    assert m.latent and not m.conditional and m.vae.class_name == "AutoencoderKL"
    assert inspect_model(models / "vq").vae.class_name == "VQModel"
    assert inspect_model(models / "sd").conditional
    assert find_vae(models / "ldm").path == models / "ldm" / "vae"  # a pipeline's vae/
    assert find_vae(models / "ldm" / "vae").path == models / "ldm" / "vae"  # the folder


@pytest.mark.parametrize("breakage, part", [
    (lambda r: shutil.rmtree(r / "unet"), "unet/ is missing"),
    (lambda r: (r / "unet" / "config.json").unlink(), "config.json is missing"),
    (lambda r: (r / "unet" / "diffusion_pytorch_model.safetensors").unlink(), "no weights"),
    (lambda r: shutil.rmtree(r / "scheduler"), "scheduler/scheduler_config.json is missing"),
    (lambda r: _edit(r / "unet" / "config.json", _class_name="VQModel"),
     "_class_name is 'VQModel'"),
    (lambda r: _edit(r / "unet" / "config.json", in_channels=3, out_channels=3),
     "does not match the autoencoder's 4 latent channels"),
    (lambda r: _edit(r / "unet" / "config.json", out_channels=8), "in_channels 4 != out"),
    (lambda r: _edit(r / "scheduler" / "scheduler_config.json", prediction_type="flow"),
     "prediction_type 'flow'"),
    (lambda r: shutil.rmtree(r / "vae"), "no vae/ or vqvae/"),
    (lambda r: (r / "unet" / "config.json").write_text("{not json"), "not valid JSON"),
])
def test_broken_folders_name_the_path_and_the_part(models, tmp_path, breakage, part):
    root = _copy(models / "ldm", tmp_path / "broken")
    breakage(root)
    with pytest.raises(ConfigError, match=part) as exc:
        check_model_folder(root)
    assert str(root) in str(exc.value)


def _edit(path: Path, **changes: object) -> None:
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


def test_missing_folder_and_vae_errors(tmp_path):
    with pytest.raises(PretrainedFolderError, match="no such folder"):
        inspect_model(tmp_path / "nope")
    tmp_path.joinpath("empty").mkdir()
    with pytest.raises(PretrainedFolderError, match="neither config.json"):
        find_vae(tmp_path / "empty")


def test_null_embedding_files(models, tmp_path):
    sd = models / "sd"
    t = load_null_embedding(sd / "null_embedding.safetensors")
    assert t.shape == (1, NULL_TOKENS, CROSS_DIM)
    torch.save(t[0], tmp_path / "e.pt")  # [tokens, dim] is accepted as [1, tokens, dim]
    assert load_null_embedding(tmp_path / "e.pt").shape == (1, NULL_TOKENS, CROSS_DIM)
    with pytest.raises(ConfigError, match="needs codec_options.null_embedding"):
        check_model_folder(sd)
    save_file({"embedding": torch.zeros(1, 3, CROSS_DIM + 1)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ConfigError, match="cross_attention_dim is 16"):
        check_model_folder(sd, tmp_path / "bad.safetensors")
    with pytest.raises(ConfigError, match="unconditional; drop the option"):
        check_model_folder(models / "ldm", sd / "null_embedding.safetensors")
    save_file({"a": torch.zeros(1, 2, 3), "b": torch.zeros(1)}, str(tmp_path / "two.safetensors"))
    with pytest.raises(ConfigError, match="2 tensors"):
        load_null_embedding(tmp_path / "two.safetensors")


# --------------------------------------------------------------------------- the VAE
def test_vae_scaling_is_diffusers_convention(models):
    vae = load_vae(find_vae(models / "ldm"))
    assert vae.kind == "kl" and vae.factor == 4 and vae.channels == 4
    assert vae.scaling_factor == 0.5 and vae.shift_factor == 0.0
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        raw = vae.encode_raw(x)
        mean = vae.vae.encode(x).latent_dist.mean  # deterministic: the posterior mean
        torch.testing.assert_close(raw, mean)
        torch.testing.assert_close(vae.encode(x), raw * 0.5)
        torch.testing.assert_close(vae.decode(vae.encode(x)), vae.vae.decode(raw).sample)
    assert raw.shape == (1, 4, 4, 4)


def test_vq_vae_decode_quantises(models):
    vae = load_vae(find_vae(models / "vq"))
    assert vae.kind == "vq"
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        h = vae.encode_raw(x)
        quantised = vae.vae.decode(h).sample
        raw = vae.vae.decode(h, force_not_quantize=True).sample
        torch.testing.assert_close(vae.decode_raw(h), quantised)
    assert not torch.allclose(quantised, raw)  # the quantiser acts


# --------------------------------------------------------------------------- the diffusion
def test_latent_model_has_the_ddpm_interface(models):
    m = load_latent_diffusion(models / "ldm")
    assert isinstance(m, LatentDiffusion) and m.T == 1000 and m.multiple == 8
    assert m.latent_shape(32, 24) == (4, 8, 6)
    ab, pred = load_alpha_bar(inspect_model(models / "ldm"))
    torch.testing.assert_close(m.alpha_bar, ab)
    assert pred == "epsilon" and float(m.alpha_bar[0]) == 1.0
    x = torch.randn(2, 4, 8, 8) * 3
    assert torch.equal(m.clip_x0(x), x)  # a latent is not clipped to [-1, 1]
    with torch.no_grad():
        torch.testing.assert_close(m.eps(x, 10), m.unet(x, torch.tensor([9, 9])).sample)
    with pytest.raises(ValueError, match="t must be in 1..1000"):
        m.eps(x, 0)


def test_v_prediction_is_turned_into_eps(models):
    m = load_latent_diffusion(models / "v")
    assert m.prediction_type == "v_prediction"
    x, t = torch.randn(1, 4, 8, 8), 300
    ab = float(m.alpha_bar[t])
    with torch.no_grad():
        v = m.unet(x, torch.tensor([t - 1])).sample
        torch.testing.assert_close(m.eps(x, t), ab ** 0.5 * v + (1 - ab) ** 0.5 * x)


def test_conditional_unet_gets_the_null_embedding(models, tmp_path):
    sd = models / "sd"
    emb = sd / "null_embedding.safetensors"
    m = load_backbone(sd, emb)
    assert m.conditional and m.null_embedding.shape == (1, NULL_TOKENS, CROSS_DIM)
    x = torch.randn(2, 4, 8, 8)
    ctx = load_null_embedding(emb).expand(2, -1, -1)
    with torch.no_grad():
        torch.testing.assert_close(m.eps(x, 50),
                                   m.unet(x, torch.tensor([49, 49]), ctx).sample)
        other = m.unet(x, torch.tensor([49, 49]), torch.zeros_like(ctx)).sample
    assert not torch.allclose(m.eps(x, 50), other)  # the embedding reaches the U-Net


def test_backbone_cache_and_pixel_folders(models, tmp_path):
    assert load_backbone(models / "ldm") is load_backbone(models / "ldm")
    from diffusers import DDPMScheduler, UNet2DModel

    from diffstream.backbones.ddpm import DDPM

    px = tmp_path / "px"
    UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 8),
                norm_num_groups=8, layers_per_block=1,
                down_block_types=("DownBlock2D",) * 2,
                up_block_types=("UpBlock2D",) * 2).save_pretrained(px / "unet")
    DDPMScheduler().save_pretrained(px / "scheduler")
    model = load_backbone(px)
    assert isinstance(model, DDPM) and model.latent_shape(8, 8) == (3, 8, 8)
    assert model.clip_x0(torch.full((1,), 3.0)).item() == 1.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_latent_model_moves_to_cuda(models):
    m = load_latent_diffusion(models / "sd", models / "sd" / "null_embedding.safetensors",
                              device="cuda")
    assert {p.device.type for p in m.parameters()} == {"cuda"}
    assert m.alpha_bar.device.type == m.null_embedding.device.type == "cuda"
    x = torch.randn(1, 4, 8, 8, device="cuda")
    with torch.no_grad():
        assert m.eps(x, 10).device.type == "cuda"
        assert m.to_image(x).shape == (1, 3, 32, 32)
