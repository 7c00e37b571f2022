"""Rate-variable mean-scale hyperprior on the autoencoder latent (paper 003, §2.2, App. F).

One model covers every rate through the quantization scale q (Eq. 5, mean-shifted):

    y_hat_q = mu + q * round((y - mu) / q)    (training proxy: y + U(-1/2, 1/2) * q)

with the Gaussian entropy parameters scaled by the same q: the coder sees the integer
symbol r = round((y - mu) / q) under N(0, (sigma / q)^2) discretised to unit bins, i.e.
compressai's own convention (quantise around the mean, zero-mean tables) at scale sigma / q.
(mu, sigma) come from the hyper-synthesis h_s(z_hat) and do not depend on q, as in the
paper; z is the Balle-2018 hyperprior latent, coded with compressai's EntropyBottleneck
(learned factorised density) and not rescaled by q.

Deviation from the printed Eq. 5. The paper writes y_hat = round(y / q) * q; we shift the
grid by the predicted mean. The noise proxy y + U * q is the same for both (the rounding
error is uniform either way), so training is the paper's. Format 1 kept Eq. 5 literally
and rounded the mean onto the q grid (symbol round(y / q) - round(mu / q)); that dropped
mu from the reconstruction and, at coarse q, cost about half the bits (issue 14: at
q = 1.2, 0.382 bpp / 22.8 dB rounded-mean against 0.203 bpp / 24.8 dB mean-shifted). The
price is that y_hat now depends on the float mu: both codec ends compute it with the same
float64 function on the same integer z symbols (see bitstream.py).
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

    def y_likelihood(self, r: torch.Tensor, sigma: torch.Tensor, q: torch.Tensor
                     ) -> torch.Tensor:
        """P(r | sigma, q) for the mean-shifted symbol r = (y - mu) / q (rounded or noisy)
        on unit bins: N(0, (sigma / q)^2), compressai's zero-mean convention."""
        lik = self.gaussian._likelihood(r, sigma / q)
        return self.gaussian.likelihood_lower_bound(lik)

    def forward(self, y: torch.Tensor, q: torch.Tensor, noise: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        """Training/eval pass. q: one scale per sample (N,). Returns y_hat and likelihoods.

        r = (y - mu) / q gets additive U(-1/2, 1/2) noise in training mode (Eq. 5's proxy:
        y_hat = y + U * q; ``noise`` gives U, else it is drawn); in eval mode it is rounded,
        y_hat = mu + q * round((y - mu) / q) exactly as the bitstream reconstructs it.
        """
        qv = q.view(-1, 1, 1, 1).to(y)
        z = self.h_a(y)
        z_hat, z_lik = self.entropy_bottleneck(z)
        mu, sigma = self.entropy_params(z_hat)
        r = (y - mu) / qv
        if self.training:
            r = r + (torch.empty_like(r).uniform_(-0.5, 0.5) if noise is None else noise)
        else:
            r = torch.round(r)
        y_lik = self.y_likelihood(r, sigma, qv)
        return {"y_hat": mu + r * qv, "y_likelihoods": y_lik, "z_likelihoods": z_lik,
                "mu": mu}

    @torch.no_grad()
    def means(self, y: torch.Tensor) -> torch.Tensor:
        """mu of y from the rounded hyperprior latent (what the decoder sees), float32; for
        building the reverse network's training inputs (the codec uses bitstream.py's
        float64 path)."""
        z = self.h_a(y)
        med = self.entropy_bottleneck._get_medians().view(1, -1, 1, 1)
        return self.entropy_params(torch.round(z - med) + med)[0]
