"""Tiny random diffusers models saved in diffusers layout, for the pretrained-folder tests.

Built with the real diffusers classes (``AutoencoderKL``, ``VQModel``, ``UNet2DModel``,
``UNet2DConditionModel``, ``DDPMScheduler``) and written with ``save_pretrained``, so the
codecs load them exactly as they would load Stable Diffusion or an LDM from disk. A few
channels each: every forward pass is milliseconds on one CPU thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch

LATENT_CHANNELS = 4
NULL_TOKENS, CROSS_DIM = 5, 16


def tiny_vae(kind: str = "kl", latent_channels: int = LATENT_CHANNELS, seed: int = 0
             ) -> torch.nn.Module:
    """A 4x-down autoencoder (3 blocks of 8 channels), randomly initialised."""
    from diffusers import AutoencoderKL, VQModel

    torch.manual_seed(seed)
    common = dict(in_channels=3, out_channels=3, block_out_channels=(8, 8, 8),
                  down_block_types=("DownEncoderBlock2D",) * 3,
                  up_block_types=("UpDecoderBlock2D",) * 3, layers_per_block=1,
                  norm_num_groups=4, sample_size=32, latent_channels=latent_channels)
    if kind == "vq":
        return VQModel(num_vq_embeddings=32, vq_embed_dim=latent_channels,
                       scaling_factor=1.0, **common)
    return AutoencoderKL(scaling_factor=0.5, **common)


def save_vae(folder: Path, kind: str = "kl", latent_channels: int = LATENT_CHANNELS) -> Path:
    tiny_vae(kind, latent_channels).save_pretrained(folder)
    return folder


def save_ldm(root: Path, vae: str = "kl", conditional: bool = False,
             prediction_type: str = "epsilon", seed: int = 1) -> Path:
    """A latent diffusion pipeline folder: unet/, scheduler/, vae/ (or vqvae/).

    conditional: a ``UNet2DConditionModel`` (cross-attention dim 16) and, beside the
    folder, ``null_embedding.safetensors`` ([1, 5, 16]) standing in for the empty prompt.
    """
    from diffusers import DDPMScheduler, UNet2DConditionModel, UNet2DModel

    root.mkdir(parents=True, exist_ok=True)
    save_vae(root / ("vqvae" if vae == "vq" else "vae"), vae)
    torch.manual_seed(seed)
    c = LATENT_CHANNELS
    if conditional:
        unet = UNet2DConditionModel(
            sample_size=8, in_channels=c, out_channels=c, block_out_channels=(8, 16),
            layers_per_block=1, norm_num_groups=8, cross_attention_dim=CROSS_DIM,
            attention_head_dim=4,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
        from safetensors.torch import save_file

        save_file({"embedding": torch.randn(1, NULL_TOKENS, CROSS_DIM)},
                  str(root / "null_embedding.safetensors"))
    else:
        unet = UNet2DModel(sample_size=8, in_channels=c, out_channels=c,
                           block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=8,
                           down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                           up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                           attention_head_dim=8)
    unet.save_pretrained(root / "unet")
    # Stable Diffusion's schedule (scaled_linear 0.00085..0.012, T = 1000)
    DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                  beta_end=0.012, prediction_type=prediction_type,
                  clip_sample=False).save_pretrained(root / "scheduler")
    return root


def save_gic_weights(vae_dir: Path, out: Path, seed: int = 0) -> Path:
    """GIC weights for the VAE at ``vae_dir`` without training: random entropy model and
    reverse network, the VAE latent's statistics measured on two crops. The same files the
    training CLI writes (``gic.safetensors`` + ``gic.json``), in a second, not minutes."""
    import numpy as np

    from diffstream.backbones.latent import load_vae
    from diffstream.backbones.pretrained import find_vae
    from diffstream.codecs.gic.model import STAGES, GicConfig, GicModel
    from diffstream.codecs.gic.vae import vae_record
    from diffstream.training.crops import CropSampler

    torch.manual_seed(seed)
    comp = find_vae(vae_dir)
    rec = vae_record(comp)
    cfg = GicConfig(autoencoder="diffusers", latent_channels=rec["latent_channels"], vae=rec,
                    unet_channels=(16, 16, 32), stages=list(STAGES))
    model = GicModel(cfg, load_vae(comp))
    with torch.no_grad():
        y = model.ae.encode_raw(CropSampler(("astronaut",)).batch(
            2, 64, np.random.default_rng(seed)))
        model.ae.latent_mean.copy_(y.mean(dim=(0, 2, 3)))
        model.ae.latent_std.copy_(y.std(dim=(0, 2, 3)))
    model.save(out)
    return out


def save_badiff_weights(ldm_dir: Path, out: Path, seed: int = 0) -> Path:
    """BADiff weights on the LDM at ``ldm_dir`` without training: the plain U-Net with the
    identity class embedding, e(H) at zero (BADiff's fine-tuning start), random stop
    policy, the shipped H_phi. The files the training CLI writes (badiff.json/.safetensors)."""
    from diffstream.backbones.latent import load_backbone
    from diffstream.codecs.badiff.codec import load_badiff
    from diffstream.codecs.badiff.entropy_predictor import load_predictor_state
    from diffstream.codecs.badiff.model import BADiff, BADiffConfig

    torch.manual_seed(seed)
    model = BADiff.from_plain(load_backbone(ldm_dir), BADiffConfig())
    shipped, _ = load_badiff()
    load_predictor_state(model.predictor, shipped.predictor.state_dict())
    model.cfg.delta_op = shipped.cfg.delta_op
    model.save(out)
    return out


def save_model_set(root: Path, *, v_prediction: bool = False) -> Path:
    """The tiny pipelines the pretrained-folder tests share: an LDM with a KL VAE (``ldm``),
    one with a VQ-VAE (``vq``), a conditional one (``sd``) and, on request, a
    v-prediction one (``v``)."""
    save_ldm(root / "ldm")
    save_ldm(root / "vq", vae="vq")
    save_ldm(root / "sd", conditional=True)
    if v_prediction:
        save_ldm(root / "v", prediction_type="v_prediction")
    return root


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """One torch thread inside (two were 10-25x slower on the 2-core machines)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)
