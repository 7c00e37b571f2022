"""The DDPM backbone: schedule, time convention, persistence, local diffusers folders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel

from diffstream.backbones.ddpm import DDPM, DDPMConfig, DDPMWeightsError, linear_alpha_bar

TINY = DDPMConfig(sample_size=16, channels=(16, 16), attention=(False, True), norm_groups=8)


def test_schedule_matches_diffusers_with_shifted_index() -> None:
    ab = linear_alpha_bar(1000, 1e-4, 0.02)
    ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").alphas_cumprod
    assert ab[0] == 1.0 and ab.dtype == torch.float64
    torch.testing.assert_close(ab[1:].float(), ref, rtol=1e-6, atol=0)
    assert float(ab[1]) == pytest.approx(1 - 1e-4) and float(ab[-1]) < 1e-4


def test_eps_calls_the_unet_at_t_minus_one() -> None:
    model = DDPM(TINY).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ours = model.eps(x, 10)
        direct = model.unet(x, torch.tensor([9, 9])).sample
    torch.testing.assert_close(ours, direct)
    with pytest.raises(ValueError, match="t must be in 1..1000"):
        model.eps(x, 0)


def test_q_sample_and_x0_inverse() -> None:
    model = DDPM(TINY)
    x0, noise = torch.rand(1, 3, 16, 16) * 2 - 1, torch.randn(1, 3, 16, 16)
    xt = model.q_sample(x0, torch.tensor([300]), noise)
    torch.testing.assert_close(model.x0_from_eps(xt, 300, noise), x0, atol=1e-5, rtol=0)


def test_conditioning_vector_changes_the_output() -> None:
    cfg = DDPMConfig(**{**TINY.__dict__, "cond_dim": TINY.time_embed_dim})
    model = DDPM(cfg).eval()
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        a = model.eps(x, 500, cond=torch.zeros(1, cfg.time_embed_dim))
        b = model.eps(x, 500, cond=torch.ones(1, cfg.time_embed_dim))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="cond_dim must equal"):
        DDPM(DDPMConfig(**{**TINY.__dict__, "cond_dim": 7}))


def test_save_load_roundtrip(tmp_path: Path) -> None:
    model = DDPM(TINY).eval()
    model.save(tmp_path, name="tiny")
    back = DDPM.load(tmp_path, name="tiny")
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():  # large tensors ship as float16: close, not equal
        torch.testing.assert_close(back.eps(x, 5), model.eps(x, 5), atol=2e-2, rtol=0)
    with pytest.raises(DDPMWeightsError, match=r"missing\.json is missing"):
        DDPM.load(tmp_path, name="missing")


def test_from_diffusers_folder(tmp_path: Path) -> None:
    unet = UNet2DModel(sample_size=16, in_channels=3, out_channels=3,
                       block_out_channels=(16, 16), layers_per_block=1, norm_num_groups=8,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    unet.save_pretrained(tmp_path / "unet")
    DDPMScheduler(num_train_timesteps=500, beta_start=2e-4, beta_end=0.03,
                  beta_schedule="linear").save_pretrained(tmp_path / "scheduler")
    model = DDPM.from_diffusers(tmp_path)
    assert model.T == 500 and model.cfg.attention == (False, True)
    torch.testing.assert_close(model.alpha_bar, linear_alpha_bar(500, 2e-4, 0.03),
                               rtol=1e-6, atol=0)
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model.eps(x, 1), unet(x, 0).sample)
    with pytest.raises(DDPMWeightsError, match="no diffusers UNet2DModel"):
        DDPM.from_diffusers(tmp_path / "scheduler")
