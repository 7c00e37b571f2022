"""Latent diffusion on a pretrained diffusers autoencoder, with the pixel DDPM's interface.

DiffC and BADiff are written against ``backbones.ddpm.DDPM``: ``T``, ``alpha_bar``
(float64, abar_0 = 1), ``eps(x, t, cond)`` at paper time t = 1..T, ``x0_from_eps``,
``clip_x0``, and the image <-> diffusion-space maps ``latent_shape``, ``to_latent`` and
``to_image``. ``LatentDiffusion`` implements the same interface on a VAE latent, so the
codecs run unchanged on a latent diffusion model (LDM, Stable Diffusion):

- **latent scaling** (diffusers' convention, ``LDMPipeline`` / ``StableDiffusionPipeline``):
  z = (E(x) - shift_factor) * scaling_factor, with E(x) the posterior *mean* of an
  ``AutoencoderKL`` (deterministic: both codec ends and every run get the same latent) or
  the pre-quantisation latent of a ``VQModel``; the image is D(z / scaling_factor +
  shift_factor), a ``VQModel`` quantising first. ``shift_factor`` is 0 when the config has
  none.
- **no clipping** of x0_hat: [-1, 1] is the pixel range; a latent has no such bound.
- **prediction types**: epsilon as is; v_prediction and sample are turned into eps with
  eps = sqrt(abar) v + sqrt(1 - abar) x_t and eps = (x_t - sqrt(abar) x0) / sqrt(1 - abar).
- **a conditional U-Net** (``UNet2DConditionModel``, e.g. Stable Diffusion) is called with a
  fixed ``encoder_hidden_states``: the null-prompt embedding ([1, tokens, dim], from a file;
  no text encoder is needed). BADiff's entropy conditioning (``cond``) goes to an
  unconditional U-Net's identity class embedding, as for the pixel DDPM.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import torch
from torch import nn

from diffstream.backbones.pretrained import (
    Component,
    ModelFolder,
    PretrainedFolderError,
    inspect_model,
    load_alpha_bar,
    load_component,
    load_null_embedding,
    unet_downsampling,
    vae_factor,
    vae_latent_channels,
)


class LatentVAE(nn.Module):
    """A frozen diffusers ``AutoencoderKL`` / ``VQModel`` with diffusers' latent scaling."""

    def __init__(self, vae: nn.Module, component: Component) -> None:
        super().__init__()
        self.vae = vae
        self.kind = "vq" if component.class_name == "VQModel" else "kl"
        self.source = str(component.path)
        self.factor = vae_factor(component)
        self.channels = vae_latent_channels(component)
        cfg = component.config
        self.scaling_factor = float(cfg.get("scaling_factor") or 1.0)
        self.shift_factor = float(cfg.get("shift_factor") or 0.0)

    def encode_raw(self, x: torch.Tensor) -> torch.Tensor:
        """Image in [-1, 1] -> unscaled latent (KL: posterior mean; VQ: pre-quantisation)."""
        if self.kind == "vq":
            return self.vae.encode(x).latents
        return self.vae.encode(x).latent_dist.mode()

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Unscaled latent -> image in [-1, 1] (not clamped)."""
        return self.vae.decode(z).sample

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (self.encode_raw(x) - self.shift_factor) * self.scaling_factor

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode_raw(z / self.scaling_factor + self.shift_factor)


def load_vae(component: Component, device: str | torch.device = "cpu") -> LatentVAE:
    return LatentVAE(load_component(component), component).to(device).eval()


class LatentDiffusion(nn.Module):
    """eps_theta on a VAE latent with the ``DDPM`` interface (see the module docstring)."""

    def __init__(self, unet: nn.Module, vae: LatentVAE, alpha_bar: torch.Tensor,
                 prediction_type: str = "epsilon", null_embedding: torch.Tensor | None = None,
                 folder: ModelFolder | None = None) -> None:
        super().__init__()
        if alpha_bar.ndim != 1 or float(alpha_bar[0]) != 1.0:
            raise ValueError("alpha_bar must have T + 1 entries starting at 1")
        self.unet = unet
        self.vae = vae
        self.prediction_type = prediction_type
        self.folder = folder
        from diffusers import UNet2DConditionModel

        self.conditional = isinstance(unet, UNet2DConditionModel)
        if self.conditional and null_embedding is None:
            raise ValueError("a conditional U-Net needs the null-prompt embedding")
        self.register_buffer("alpha_bar", alpha_bar.to(torch.float64), persistent=False)
        self.register_buffer("null_embedding",
                             None if null_embedding is None else null_embedding.float(),
                             persistent=False)
        self.channels = int(unet.config.in_channels)
        self.factor = vae.factor
        # latent sides must divide by 2 ** (U-Net downsamplings)
        self.latent_multiple = 2 ** (len(unet.config.block_out_channels) - 1)

    @property
    def T(self) -> int:
        return self.alpha_bar.numel() - 1

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this (autoencoder x U-Net downsampling)."""
        return self.factor * self.latent_multiple

    def latent_shape(self, h: int, w: int) -> tuple[int, int, int]:
        return (self.channels, h // self.factor, w // self.factor)

    def to_latent(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(x)

    def to_image(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z)

    def clip_x0(self, x: torch.Tensor) -> torch.Tensor:
        return x  # a latent has no natural range (pixel models clip to [-1, 1])

    def eps(self, x: torch.Tensor, t: int | torch.Tensor,
            cond: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted noise at paper time t (1..T), batch-broadcast."""
        tt = torch.as_tensor(t, device=x.device).reshape(-1).expand(x.shape[0])
        if (tt < 1).any() or (tt > self.T).any():
            raise ValueError(f"t must be in 1..{self.T}")
        if self.conditional:
            assert self.null_embedding is not None
            ctx = self.null_embedding.to(x.device).expand(x.shape[0], -1, -1)
            out = self.unet(x, tt - 1, encoder_hidden_states=ctx).sample
        else:
            out = self.unet(x, tt - 1, class_labels=cond).sample
        if self.prediction_type == "epsilon":
            return out
        ab = self.alpha_bar.to(x.device)[tt].float().view(-1, 1, 1, 1)
        if self.prediction_type == "v_prediction":
            return ab.sqrt() * out + (1.0 - ab).sqrt() * x
        return (x - ab.sqrt() * out) / (1.0 - ab).sqrt()  # "sample": out is x0

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        ab = self.alpha_bar.to(x0.device)[t].float().view(-1, 1, 1, 1)
        return ab.sqrt() * x0 + (1.0 - ab).sqrt() * noise

    def x0_from_eps(self, x_t: torch.Tensor, t: int, eps: torch.Tensor) -> torch.Tensor:
        ab = float(self.alpha_bar[t])
        return (x_t - (1.0 - ab) ** 0.5 * eps) / ab ** 0.5


def load_latent_diffusion(folder: str | Path, null_embedding: str | Path | None = None,
                          device: str | torch.device = "cpu", class_embed_identity: bool = False
                          ) -> LatentDiffusion:
    """A latent diffusion pipeline folder (unet/ + scheduler/ + vae/ or vqvae/).

    ``class_embed_identity``: load an unconditional U-Net with diffusers' identity class
    embedding (no parameters), so BADiff's e(H) can be added to its time embedding.
    """
    m = inspect_model(folder)
    if m.vae is None:
        raise PretrainedFolderError(f"{m.root}: no vae/ or vqvae/ (not a latent diffusion "
                                    "model; a pixel DDPM folder goes to DDPM.from_diffusers)")
    check_null_embedding_option(m, null_embedding)
    ab, pred = load_alpha_bar(m)
    overrides: dict[str, Any] = {}
    if class_embed_identity:
        if m.conditional:
            raise PretrainedFolderError(f"{m.unet.path}: BADiff needs an unconditional "
                                        "UNet2DModel, not a UNet2DConditionModel")
        overrides["class_embed_type"] = "identity"
    unet = load_component(m.unet, **overrides)
    vae = LatentVAE(load_component(m.vae), m.vae)
    null = load_null_embedding(null_embedding) if m.conditional else None
    model = LatentDiffusion(unet, vae, ab, pred, null, m)
    return model.to(device).eval().requires_grad_(False)


def check_null_embedding_option(m: ModelFolder, null_embedding: str | Path | None) -> None:
    """A conditional U-Net needs the file; an unconditional one must not get one."""
    from diffstream.backbones.pretrained import inspect_null_embedding

    if m.conditional:
        if null_embedding is None:
            raise PretrainedFolderError(
                f"{m.unet.path}: a UNet2DConditionModel needs codec_options.null_embedding "
                "(a [1, tokens, dim] tensor file: the text encoder's output for the empty "
                "prompt)")
        inspect_null_embedding(null_embedding, m.unet.config.get("cross_attention_dim"))
    elif null_embedding is not None:
        raise PretrainedFolderError(f"{m.unet.path}: null_embedding given, but this "
                                    "UNet2DModel is unconditional; drop the option")


def check_model_folder(folder: str | Path, null_embedding: str | Path | None = None
                       ) -> ModelFolder:
    """Everything ``load_backbone`` would refuse, without loading weights (the precheck)."""
    m = inspect_model(folder)
    if m.vae is None and m.conditional:
        raise PretrainedFolderError(f"{m.unet.path}: a pixel-space model must be an "
                                    "unconditional UNet2DModel (a UNet2DConditionModel needs "
                                    "vae/ beside it)")
    check_null_embedding_option(m, null_embedding)
    return m


def image_multiple(m: ModelFolder) -> int:
    """Image-side multiple a model needs (autoencoder factor x U-Net halvings)."""
    f = vae_factor(m.vae) if m.vae is not None else 1
    return f * 2 ** unet_downsampling(m.unet)


_CACHE: dict[tuple[str, str, str, bool], Any] = {}
_LOCK = threading.Lock()


def load_backbone(folder: str | Path, null_embedding: str | Path | None = None,
                  device: str | torch.device = "cpu") -> Any:
    """The diffusion model of a pipeline folder, once per process and device: a
    ``LatentDiffusion`` when it has vae/ or vqvae/, else the pixel ``DDPM``."""
    from diffstream.backbones.ddpm import DDPM

    key = (str(Path(folder).resolve()),
           "" if null_embedding is None else str(Path(null_embedding).resolve()),
           str(device), False)
    with _LOCK:
        if key not in _CACHE:
            m = check_model_folder(folder, null_embedding)
            if m.vae is None:
                model: Any = DDPM.from_diffusers(folder, device=device)
            else:
                model = load_latent_diffusion(folder, null_embedding, device)
            _CACHE[key] = model.eval().requires_grad_(False)
        return _CACHE[key]
