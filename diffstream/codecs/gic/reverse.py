"""The reverse network D_theta(y_bar, q) of paper 003 (§3.3), EDM-preconditioned.

D_theta maps a compressed latent y_bar at quantization scale q to an estimate of the clean
latent y0. The paper borrows EDM's U-Net (Karras et al. 2022); we use a small diffusers
``UNet2DModel`` F and EDM's preconditioning (Karras et al. 2022, Table 1, "EDM" column):

    D(x; sigma) = c_skip x + c_out F(c_in x; c_noise)
    c_skip = s_d^2 / (sigma^2 + s_d^2)      c_out = sigma s_d / sqrt(sigma^2 + s_d^2)
    c_in   = 1 / sqrt(sigma^2 + s_d^2)      c_noise = ln(sigma) / 4

Noise level from q. The corruption of GIC is uniform quantization noise U(-1/2, 1/2) * q
(Eq. 5/9), whose standard deviation is q / sqrt(12); that is the sigma we feed to the
preconditioning. s_d (sigma_data) is the latent's standard deviation, 1 by construction
(the autoencoder's latent is normalised per channel).
"""

from __future__ import annotations

import math

import torch
from diffusers import UNet2DModel
from torch import nn

SQRT12 = math.sqrt(12.0)
SIGMA_FLOOR = 1e-5  # ln(sigma) stays finite; the sampler never evaluates D at q = 0


def q_to_sigma(q: torch.Tensor) -> torch.Tensor:
    """Std of U(-1/2, 1/2) * q."""
    return q / SQRT12


class ReverseNet(nn.Module):
    """EDM-preconditioned U-Net on the latent; ``forward(y_bar, q) -> y0 estimate``."""

    def __init__(self, latent_channels: int = 8, channels: tuple[int, ...] = (64, 128, 128),
                 layers_per_block: int = 1, attention: tuple[bool, ...] = (False, False, True),
                 sigma_data: float = 1.0, norm_groups: int = 16) -> None:
        super().__init__()
        if len(channels) != len(attention):
            raise ValueError("channels and attention must have the same length")
        down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention)
        up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention))
        self.sigma_data = float(sigma_data)
        self.unet = UNet2DModel(
            sample_size=16, in_channels=latent_channels, out_channels=latent_channels,
            block_out_channels=tuple(channels), layers_per_block=layers_per_block,
            down_block_types=down, up_block_types=up, norm_num_groups=norm_groups,
            attention_head_dim=32, time_embedding_type="positional",
        )

    def preconditioning(self, q: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(c_skip, c_out, c_in, c_noise) for scales q (N,), as N x 1 x 1 x 1 (c_noise: N)."""
        sigma = q_to_sigma(q).clamp_min(SIGMA_FLOOR)
        sd2 = self.sigma_data ** 2
        denom = torch.sqrt(sigma ** 2 + sd2)
        c_skip = sd2 / (sigma ** 2 + sd2)
        c_out = sigma * self.sigma_data / denom
        c_in = 1.0 / denom
        c_noise = torch.log(sigma) / 4.0
        v = (-1, 1, 1, 1)
        return c_skip.view(v), c_out.view(v), c_in.view(v), c_noise

    def forward(self, y_bar: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        q = q.to(y_bar).reshape(-1).expand(y_bar.shape[0])
        c_skip, c_out, c_in, c_noise = self.preconditioning(q)
        f = self.unet(c_in * y_bar, c_noise).sample
        return c_skip * y_bar + c_out * f
