"""GIC's analysis/synthesis transforms from a pretrained diffusers VAE (paper 003, §3.3).

The paper moves the rate-variable entropy model and the reverse network "into the latent
space of the pretrained VAE (Rombach et al., 2022)", a KL-f4 autoencoder that stays frozen.
``VaeAutoencoder`` puts any local diffusers ``AutoencoderKL`` (or ``VQModel``) in the place
of our own small autoencoder, with the same interface (``encode``/``decode`` of a
normalised latent, ``latent_channels``, ``factor``).

Latent normalisation. y = (E(x) - m_c) / s_c, where E(x) is the VAE posterior's *mean*
(``latent_dist.mode()``: deterministic, so both ends and every run see the same latent;
the pre-quantisation latent of a ``VQModel``) and m_c, s_c are the per-channel mean and
standard deviation of E(x) over the training crops, measured by the ``ae`` stage of
``python -m diffstream.training gic --vae DIR`` and stored in the GIC weights
(``ae.latent_mean``, ``ae.latent_std``). The VAE config's ``scaling_factor`` (one global
scalar meant to give the latent roughly unit variance) is not used: the per-channel
statistics subsume it, and they keep GIC's q in units of the latent's standard deviation,
the units the q range [0.03, 3] and q1 = 0.13 are set in (diffstream/codecs/gic/model.py).
Decoding inverts the normalisation and runs the VAE decoder (a ``VQModel`` quantises
first, as in diffusers).

The VAE's own weights are never written to the GIC weights file: the file holds the two
statistics vectors, the entropy model and the reverse network; ``gic.json`` records which
VAE they were trained on (class, factor, channels and a fingerprint of its config).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from diffstream.backbones.latent import LatentVAE
from diffstream.backbones.pretrained import Component, config_fingerprint

NORM_KEYS = ("latent_mean", "latent_std")


class VaeAutoencoder(nn.Module):
    """A frozen diffusers VAE as GIC's E / D, latent normalised per channel."""

    def __init__(self, vae: LatentVAE) -> None:
        super().__init__()
        self.vae = vae.eval().requires_grad_(False)
        self.latent_channels = vae.channels
        self.factor = vae.factor
        self.register_buffer("latent_mean", torch.zeros(vae.channels))
        self.register_buffer("latent_std", torch.ones(vae.channels))

    def encode_raw(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae.encode_raw(x)

    def decode_raw(self, y: torch.Tensor) -> torch.Tensor:
        return self.vae.decode_raw(y)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Image in [-1, 1] (sides divisible by ``factor``) -> normalised latent."""
        y = self.vae.encode_raw(x)
        return (y - self.latent_mean.view(1, -1, 1, 1)) / self.latent_std.view(1, -1, 1, 1)

    def decode(self, y: torch.Tensor) -> torch.Tensor:
        """Normalised latent -> image in [-1, 1] (not clamped)."""
        y = y * self.latent_std.view(1, -1, 1, 1) + self.latent_mean.view(1, -1, 1, 1)
        return self.vae.decode_raw(y)

    def gic_state(self) -> dict[str, torch.Tensor]:
        """What the GIC weights keep of this module: the normalisation, not the VAE."""
        return {k: getattr(self, k) for k in NORM_KEYS}


def vae_record(component: Component) -> dict[str, Any]:
    """The ``vae`` entry of gic.json: which VAE the weights belong to."""
    from diffstream.backbones.pretrained import vae_factor, vae_latent_channels

    return {"source": str(component.path), "class": component.class_name,
            "factor": vae_factor(component), "latent_channels": vae_latent_channels(component),
            "config_sha256_16": config_fingerprint(component),
            "normalisation": "per-channel mean/std of the posterior mean over training crops"}
