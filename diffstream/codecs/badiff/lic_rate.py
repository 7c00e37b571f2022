"""The real coder's rate as BADiff's differentiable entropy target (issue 16, item 1).

BADiff's images are coded by the project's learned codec ``lic`` (``coder: lic``, the
default, as paper 000 measures bitrate with a real codec, App. C and E). The hinge of Eq. 8
asks "would this image cost more than H bits per pixel?"; the exact answer for that coder
is LIC's own entropy model, which is differentiable: the image goes through LIC's frozen
analysis transform and hyperprior, and the code length at a quantisation scale q is -log2
of the rounded symbols' likelihoods, with a straight-through gradient. That ideal code
length is within a few percent of LIC's real rANS bytes (``gic/bitstream.py``), so a
predictor *trained* to imitate LIC's rate could only be worse than this.

Operating point. A code length needs a q. ``q_op(H)`` is the scale at which the *median*
real training crop costs H bpp under LIC (a table measured once on real crops, ``measure_
q_op``): "H_lic(x0_hat; q_op(H)) <= H" then reads "this image is no more expensive to code
at budget H than a typical real image", a target real images meet half the time. (The
pixel-domain H_phi of ``entropy_predictor.py`` at the LIC-matched step asked 0.66 / 1.74 /
3.72 bpp of real crops for targets 0.25 / 0.45 / >= 0.9, so its hinge always fired.)
LIC's finest scale bounds the table: above its saturation rate every budget maps to
``q_lo``.

H_phi stays: it is the probability model of ``coder: own`` (the discretised-logistic coder
of §3.3) and keeps training on its own rate and Eq. 11's calibration.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from diffstream.codecs.badiff.model import log_log_interp
from diffstream.codecs.gic.bitstream import HEADER_BYTES
from diffstream.codecs.gic.codec import load_bundle
from diffstream.training.crops import to_tensor, to_uint8

MODES = ("ste", "noise", "round")
Q_GRID_LEVELS = 48  # log-spaced scales between LIC's q_lo and q_hi for the q_op table


class LicRate(nn.Module):
    """H_lic(x; q): LIC's code length of an image (bpp), differentiable in the image.

    A frozen copy of LIC's autoencoder and hyperprior (the codec's cached bundle is not
    touched). ``mode``:

    - ``"ste"`` (the hinge's): rounded symbols with a straight-through gradient: the value
      is LIC's ideal code length of what it would send, the gradient that of the
      continuous symbols. The uniform-noise proxy is not used for the hinge: at the low
      rates of small frames it reads about twice the rounded rate (0.33 against 0.15 bpp
      for the median 32x32 crop at q_op(0.2)), so a hinge on it would fire on images that
      fit their budget;
    - ``"noise"``: Ballé's training proxy (y and z plus uniform noise);
    - ``"round"``: rounded symbols, no gradient through the rounding.
    """

    def __init__(self, weights: str | Path | None = None) -> None:
        super().__init__()
        model, _ = load_bundle(weights, "cpu")
        self.ae = copy.deepcopy(model.ae).eval()
        self.hyper = copy.deepcopy(model.hyper).eval()
        self.requires_grad_(False)
        self.q_lo, self.q_hi = float(model.cfg.q_lo), float(model.cfg.q_hi)
        self.multiple = 4 * int(model.factor)

    def train(self, mode: bool = True) -> LicRate:
        return super().train(False)  # frozen: never in training mode (no BN/dropout drift)

    @torch.no_grad()
    def analyse(self, img: torch.Tensor) -> LicAnalysis:
        """The q-independent part of LIC's code of images in [-1, 1] (rounded z): what
        ``rate_table`` and ``code_at_budget`` need, to compute once for several calls."""
        return LicAnalysis(*self._parts(img), pixels=int(img.shape[-2] * img.shape[-1]))

    def _parts(self, img: torch.Tensor, mode: str = "round"
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(y, mu, sigma, z bits per image) of images in [-1, 1]."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        h, w = img.shape[-2:]
        if h % self.multiple or w % self.multiple:
            raise ValueError(f"LIC's rate needs sides that are multiples of {self.multiple}, "
                             f"got {h}x{w}")
        y = self.ae.encode(img)
        z = self.hyper.h_a(y)
        z_hat, z_lik = self.hyper.entropy_bottleneck(z, training=mode == "noise")
        if mode == "ste":  # rounded around the medians, the gradient passed straight through
            z_hat = z + (z_hat - z).detach()
        mu, sigma = self.hyper.entropy_params(z_hat)
        z_bits = -torch.log2(z_lik).sum(dim=(1, 2, 3))
        return y, mu, sigma, z_bits

    def forward(self, img: torch.Tensor, q: torch.Tensor | float, mode: str = "ste"
                ) -> torch.Tensor:
        """bpp (N,) of N x 3 x H x W images in [-1, 1] at scales q (one per image)."""
        n, _, h, w = img.shape
        y, mu, sigma, z_bits = self._parts(img, mode)
        qv = torch.as_tensor(q, dtype=y.dtype).reshape(-1).expand(n).view(-1, 1, 1, 1)
        r = (y - mu) / qv
        if mode == "noise":
            r = r + torch.empty_like(r).uniform_(-0.5, 0.5)
        elif mode == "ste":
            r = r + (torch.round(r) - r).detach()
        else:
            r = torch.round(r)
        lik = self.hyper.y_likelihood(r, sigma, qv)
        bits = z_bits - torch.log2(lik).sum(dim=(1, 2, 3)) + 8 * HEADER_BYTES
        return bits / (h * w)

    @torch.no_grad()
    def rate_table(self, img: torch.Tensor | LicAnalysis, qs: Sequence[float]) -> torch.Tensor:
        """Ideal bpp (N x len(qs)) of each image at each scale (rounded symbols); the
        analysis transform runs once (or not at all, given ``analyse``'s result)."""
        a = img if isinstance(img, LicAnalysis) else self.analyse(img)
        out = torch.empty(a.y.shape[0], len(qs))
        for k, q in enumerate(qs):
            qv = torch.tensor(float(q))
            lik = self.hyper.y_likelihood(torch.round((a.y - a.mu) / qv), a.sigma, qv)
            out[:, k] = (a.z_bits - torch.log2(lik).sum(dim=(1, 2, 3))
                         + 8 * HEADER_BYTES) / a.pixels
        return out

    @torch.no_grad()
    def code_at_budget(self, img: torch.Tensor | LicAnalysis, budget_bpp: float,
                       table: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
        """What LIC would show for each image at a budget: the reconstruction (N x H x W x 3
        uint8) at the finest ``q_grid`` scale whose ideal rate fits (the coarsest when none
        fits, as LIC's rate control ends) and that rate (bpp). Ideal code lengths stand in
        for the real bytes (within a few percent): for teacher labels, not for sending.
        ``table``: this ``rate_table`` on ``q_grid``, when the caller has it already."""
        a = img if isinstance(img, LicAnalysis) else self.analyse(img)
        qs = q_grid(self.q_lo, self.q_hi)
        table = self.rate_table(a, qs) if table is None else table  # N x Q, falling in q
        n = a.y.shape[0]
        fits = table <= budget_bpp
        pick = torch.where(fits.any(1), fits.float().argmax(1), torch.full((n,), len(qs) - 1))
        q = torch.tensor([qs[int(k)] for k in pick]).view(-1, 1, 1, 1)
        rec = self.ae.decode(a.mu + q * torch.round((a.y - a.mu) / q))
        return to_uint8(rec), table[torch.arange(n), pick].numpy()


@dataclass(frozen=True)
class LicAnalysis:
    """``LicRate.analyse``: LIC's latent, its entropy parameters and the z bits."""

    y: torch.Tensor
    mu: torch.Tensor
    sigma: torch.Tensor
    z_bits: torch.Tensor  # per image
    pixels: int


def q_grid(q_lo: float, q_hi: float, levels: int = Q_GRID_LEVELS) -> list[float]:
    """Log-spaced scales from LIC's finest to its coarsest, ascending."""
    return [math.exp(v) for v in np.linspace(math.log(q_lo), math.log(q_hi), levels)]


def measure_q_op(rate: LicRate, crops: np.ndarray, hs: Sequence[float]
                 ) -> tuple[tuple[float, float], ...]:
    """The (H, q_op) table: for each budget H, the scale at which the median real crop
    (N x H x W x 3 uint8) costs H bpp under LIC, log-interpolated on the q grid; budgets
    above the median's rate at LIC's finest scale get that scale."""
    qs = q_grid(rate.q_lo, rate.q_hi)
    med = np.median(rate.rate_table(to_tensor(crops), qs).numpy(), axis=0)
    med = np.minimum.accumulate(med)  # bpp falls with q (ties and jitter flattened)
    log_q = np.log(qs)
    out = []
    for h in hs:
        if h >= med[0]:
            out.append((float(h), float(qs[0])))
        elif h <= med[-1]:
            out.append((float(h), float(qs[-1])))
        else:
            # np.interp needs ascending x: med falls with q, so interpolate on the reversal
            out.append((float(h), float(math.exp(np.interp(h, med[::-1], log_q[::-1])))))
    return tuple(out)


def q_op(h: torch.Tensor | float, table: Sequence[tuple[float, float]]) -> torch.Tensor:
    """The hinge's scale for budget(s) H: log-log interpolation in the (H, q) table."""
    return torch.as_tensor(log_log_interp(h, table), dtype=torch.float32)
