"""Rate-variable mean-scale hyperprior on the autoencoder latent (paper 003, §2.2, App. F).

One model covers every rate through the quantization scale q (Eq. 5):

    y_hat_q = round(y / q) * q            (training proxy: y + U(-1/2, 1/2) * q)

with the Gaussian entropy parameters scaled by the same q: the coder sees the integer
k = round(y / q) under N(mu / q, (sigma / q)^2) discretised to unit bins. (mu, sigma) come
from the hyper-synthesis h_s(z_hat) and do not depend on q, as in the paper; z is the
Ballé-2018 hyperprior latent, coded with compressai's EntropyBottleneck (learned
factorised density) and not rescaled by q.

Means on the q grid. compressai quantizes around the mean (round(y - mu) + mu), which would
put y_hat off the q grid and break Eq. 5. We keep Eq. 5 exactly and round the mean to the
grid instead: m = round(mu / q), symbol k - m, coded with compressai's zero-mean tables at
scale sigma / q. Training uses the same m (straight-through gradient), so the trained
likelihood is the one the rANS coder realises. y_hat is then an integer multiple of q and
depends on the entropy parameters only through integers, which makes cross-process
decoding robust.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from torch import nn

SCALE_BOUND = 0.11  # compressai's lower bound on sigma / q


def scale_table(smin: float = SCALE_BOUND, smax: float = 64.0, levels: int = 64) -> list[float]:
    """Log-spaced scales for the GaussianConditional CDF tables (compressai convention)."""
    return [math.exp(v) for v in torch.linspace(math.log(smin), math.log(smax), levels).tolist()]


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """round(x) forward, identity gradient."""
    return x + (torch.round(x) - x).detach()


def params_from_hyper(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """h_s output (N x 2C x h x w) -> (mu, sigma > 0)."""
    mu, s = h.chunk(2, dim=1)
    return mu, F.softplus(s)


class RateVariableHyperprior(nn.Module):
    """h_a, h_s, the z bottleneck and the q-scaled Gaussian conditional for y."""

    def __init__(self, latent_channels: int = 8, z_channels: int = 16, hidden: int = 64,
                 scale_max: float = 64.0, scale_levels: int = 64) -> None:
        super().__init__()
        c, h = latent_channels, hidden
        self.h_a = nn.Sequential(
            nn.Conv2d(c, h, 3, padding=1), nn.LeakyReLU(inplace=True),
            nn.Conv2d(h, h, 5, stride=2, padding=2), nn.LeakyReLU(inplace=True),
            nn.Conv2d(h, z_channels, 5, stride=2, padding=2),
        )
        self.h_s = nn.Sequential(
            nn.ConvTranspose2d(z_channels, h, 5, stride=2, padding=2, output_padding=1),
            nn.LeakyReLU(inplace=True),
            nn.ConvTranspose2d(h, h, 5, stride=2, padding=2, output_padding=1),
            nn.LeakyReLU(inplace=True),
            nn.Conv2d(h, 2 * c, 3, padding=1),
        )
        self.entropy_bottleneck = EntropyBottleneck(z_channels)
        self.gaussian = GaussianConditional(scale_table(SCALE_BOUND, scale_max, scale_levels),
                                            scale_bound=SCALE_BOUND)

    def entropy_params(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, sigma) of y given the decoded hyperprior latent; independent of q."""
        return params_from_hyper(self.h_s(z_hat))

    def y_likelihood(self, k: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor,
                     q: torch.Tensor) -> torch.Tensor:
        """P(k | mu, sigma, q) on unit bins of y / q, means rounded to the grid (STE)."""
        m = ste_round(mu / q)
        lik = self.gaussian._likelihood(k, sigma / q, means=m)
        return self.gaussian.likelihood_lower_bound(lik)

    def forward(self, y: torch.Tensor, q: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training/eval pass. q: one scale per sample (N,). Returns y_hat and likelihoods.

        In training mode y/q gets additive U(-1/2, 1/2) noise (Eq. 5's proxy); in eval mode
        it is rounded, i.e. y_hat = round(y / q) * q exactly.
        """
        qv = q.view(-1, 1, 1, 1).to(y)
        z = self.h_a(y)
        z_hat, z_lik = self.entropy_bottleneck(z)
        mu, sigma = self.entropy_params(z_hat)
        v = y / qv
        if self.training:
            v = v + torch.empty_like(v).uniform_(-0.5, 0.5)
        else:
            v = torch.round(v)
        y_lik = self.y_likelihood(v, mu, sigma, qv)
        return {"y_hat": v * qv, "y_likelihoods": y_lik, "z_likelihoods": z_lik}
