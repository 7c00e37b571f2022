"""H_phi: BADiff's differentiable entropy predictor (paper 000 §3.3, App. F), which is also
the probability model of BADiff's real entropy coder (``logistic_coder.py`` beside it).

Formulas (lost in the paper's extraction, reconstructed from the primary sources):

- Eq. 9, discretised logistic (PixelCNN++, Salimans et al. 2017) over the levels 0..255 of
  each channel, generalised to a quantiser step ``delta`` by predictive (closed-loop DPCM)
  quantisation: the coded symbol is k = round((x - mu) / delta), the receiver's value is
  clip(round(mu + k delta), 0, 255), and

      P(k | mu, s) = sigmoid(((k + 1/2) delta) / s) - sigmoid(((k - 1/2) delta) / s).

  delta = 1 is PixelCNN++'s per-level logistic (lossless up to float ties); larger steps
  reconstruct to the *prediction* when k = 0 (a smooth image from the hyperprior and the
  decoded context) instead of posterising. PixelCNN++'s edge bins at 0 / 255 are dropped
  (the coder's tables are residual-centred; a deviation worth < 1 % here).
- Eq. 10: H_phi(x) = (1 / HW) * sum over pixels and channels of -log2 P, plus the bits of
  the hyperprior side information z (Ballé et al. 2018: a factorised EntropyBottleneck),
  in bits per pixel (bpp, all three channels).
- mu, s come from two sources (§3.3 "Context extraction"): a hyperprior h_a -> z -> h_s
  (4x down, 4 channels) and a causal context realised as one masked 5x5 convolution, plus
  a 1x1 channel context (R -> G -> B within a pixel, the role of PixelCNN++'s linear
  channel dependence).

Causal context = checkerboard (He et al. 2021) x channels instead of a raster-scan
PixelCNN context, so the receiver decodes in six parallel passes (anchors R, G, B from the
hyperprior and the pixel's decoded channels, then non-anchors R, G, B also seeing the
decoded anchors) rather than 3072 sequential network calls per 32x32 image. A deviation
from "auto-regressive" in its strict raster sense; the masked 5x5 convolution sees only
anchors (the checkerboard mask).

Training proxy: uniform noise U(-delta/2, delta/2) instead of rounding (Ballé 2017), so the
code length is differentiable with respect to the image itself, not only through (mu, s).

Scale-down (App. F has channels [32, 64, 64, 128], K = 64 soft bins, ~0.3 M parameters):
~60 k parameters here, and the output is the discretised logistic of §3.3 (not App. F's
64-bin soft histogram, which contradicts the main text); both noted in docs/badiff.md.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck
from torch import nn

# Quantiser steps of the coder (levels of a 0..255 channel); index 0 is (near-)lossless.
N_DELTAS = 48
DELTA_MAX = 256.0
DELTAS: tuple[float, ...] = tuple(
    float(DELTA_MAX ** (i / (N_DELTAS - 1))) for i in range(N_DELTAS))
Z_CHANNELS = 4
HYPER_DOWN = 4
LOG_S_MIN, LOG_S_MAX = -4.0, 6.0
# Coding order: checkerboard anchors then non-anchors; within each, R then G then B.
PASSES: tuple[tuple[int, int], ...] = tuple((g, c) for g in (0, 1) for c in range(3))


def checkerboard(h: int, w: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """1 x 1 x h x w mask, 1 on anchors ((i + j) even), decoded first."""
    ii = torch.arange(h, device=device).view(-1, 1)
    jj = torch.arange(w, device=device).view(1, -1)
    return ((ii + jj) % 2 == 0).to(dtype).view(1, 1, h, w)


def pass_masks(h: int, w: int, dtype: torch.dtype = torch.float32
               ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """For each of the 6 passes: (known before it, coded in it), 1 x 3 x h x w masks."""
    a = checkerboard(h, w, dtype=dtype)
    group = (a, 1 - a)
    out = []
    known = torch.zeros(1, 3, h, w, dtype=dtype)
    for g, c in PASSES:
        target = torch.zeros(1, 3, h, w, dtype=dtype)
        target[:, c:c + 1] = group[g]
        out.append((known.clone(), target))
        known = known + target
    return out


class MaskedConv2d(nn.Conv2d):
    """5x5 convolution whose taps see only anchor positions relative to a non-anchor
    centre (odd Manhattan offsets): the checkerboard causal context."""

    def __init__(self, cin: int, cout: int, k: int = 5) -> None:
        super().__init__(cin, cout, k, padding=k // 2)
        c = k // 2
        m = torch.tensor([[float((abs(i - c) + abs(j - c)) % 2 == 1) for j in range(k)]
                          for i in range(k)])
        self.register_buffer("mask", m.view(1, 1, k, k), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


def residual_bits(r: torch.Tensor, log_s: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """-log2 P of Eq. 9 for residuals r = x - mu (levels) in a bin of width delta centred
    on r: sigmoid((r + delta/2) / s) - sigmoid((r - delta/2) / s), computed stably (the
    log-density times delta where the bin mass underflows, as PixelCNN++ does)."""
    inv_s = torch.exp(-log_s)
    up = (r + delta / 2) * inv_s
    lo = (r - delta / 2) * inv_s
    mass = torch.sigmoid(up) - torch.sigmoid(lo)
    mid = r * inv_s
    log_pdf = mid - log_s - 2 * F.softplus(mid) + torch.log(delta)
    logp = torch.where(mass > 1e-5, torch.log(mass.clamp_min(1e-12)), log_pdf)
    return -logp / math.log(2.0)


class EntropyPredictor(nn.Module):
    """Hyperprior + checkerboard/channel context -> (mu, log s) per pixel and channel.

    Images enter in levels (float, 0..255); the networks see them scaled to [-1, 1].
    """

    def __init__(self, width: int = 32, z_channels: int = Z_CHANNELS) -> None:
        super().__init__()
        act = nn.SiLU
        self.h_a = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), act(),
            nn.Conv2d(width, width, 3, stride=2, padding=1), act(),
            nn.Conv2d(width, z_channels, 3, stride=2, padding=1))
        self.h_s = nn.Sequential(
            nn.Conv2d(z_channels, width, 3, padding=1), act(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(width, width, 3, padding=1), act(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(width, width, 3, padding=1))
        self.context = MaskedConv2d(3, width, 5)  # spatial: decoded checkerboard neighbours
        self.channel_context = nn.Conv2d(3, width, 1)  # this pixel's decoded channels
        self.head = nn.Sequential(
            nn.Conv2d(3 * width + 4, 2 * width, 1), act(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), act(),
            nn.Conv2d(2 * width, 6, 1))
        self.entropy_bottleneck = EntropyBottleneck(z_channels)

    # --- pieces shared with the coder -------------------------------------------------
    def params(self, hyper: torch.Tensor, x_rec: torch.Tensor, known: torch.Tensor,
               log_delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu in levels, log s) for all channels from the hyper features and the
        reconstruction (levels) at the elements ``known`` to the decoder."""
        n, _, h, w = hyper.shape
        xk = (x_rec / 127.5 - 1.0) * known
        planes = torch.cat([hyper, self.context(xk), self.channel_context(xk),
                            known.expand(n, 3, h, w),
                            log_delta.view(-1, 1, 1, 1).expand(n, 1, h, w).to(hyper.dtype)], 1)
        out = self.head(planes)
        mu = 127.5 * (1.0 + out[:, :3])
        log_s = out[:, 3:].clamp(LOG_S_MIN, LOG_S_MAX)
        return mu, log_s

    def all_params(self, hyper: torch.Tensor, x_rec: torch.Tensor, log_delta: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """mu, log s of every element given a full reconstruction (training proxy: each
        element sees exactly what the decoder will have decoded before it)."""
        n, _, h, w = x_rec.shape
        mu = torch.zeros_like(x_rec)
        ls = torch.zeros_like(x_rec)
        for known, target in pass_masks(h, w, x_rec.dtype):
            m, s = self.params(hyper, x_rec, known.to(x_rec.device), log_delta)
            t = target.to(x_rec.device)
            mu = mu + m * t
            ls = ls + s * t
        return mu, ls

    @torch.no_grad()
    def quantise(self, hyper: torch.Tensor, x: torch.Tensor, log_delta: torch.Tensor,
                 delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The coder's closed loop (predictive quantisation), pass by pass:
        k = round((x - mu) / delta), reconstruction clip(round(mu + k delta)).
        Returns (k, reconstruction, log s)."""
        n, _, h, w = x.shape
        rec = torch.zeros_like(x)
        k = torch.zeros_like(x)
        ls = torch.zeros_like(x)
        for known, target in pass_masks(h, w, x.dtype):
            m, s = self.params(hyper, rec, known, log_delta)
            kk = torch.round((x - m) / delta)
            r = torch.clamp(torch.round(m + kk * delta), 0, 255)
            k = k + kk * target
            rec = rec + r * target
            ls = ls + s * target
        return k, rec, ls

    # --- the differentiable estimate --------------------------------------------------
    def forward(self, x: torch.Tensor, delta: torch.Tensor | float, noise: bool = True
                ) -> dict[str, torch.Tensor]:
        """Bits of images ``x`` (N x 3 x H x W, levels 0..255) at quantiser ``delta``.

        Returns per-image ``bpp`` (pixel + side bits / HW), ``bpp_z`` and per-element
        ``bits``, and ``rec`` (the receiver's image; noisy under the proxy).
        noise=True: the differentiable training proxy (uniform noise); False: the coder's
        real closed-loop quantisation (no gradient through the rounding).
        """
        n, _, h, w = x.shape
        d = torch.as_tensor(delta, dtype=x.dtype, device=x.device).reshape(-1)
        d = d.expand(n) if d.numel() == 1 else d
        dv = d.view(-1, 1, 1, 1)
        ld = torch.log(d)
        z = self.h_a(x / 127.5 - 1.0)
        z_hat, z_lik = self.entropy_bottleneck(z, training=noise)
        hyper = self.h_s(z_hat)
        if noise:
            x_rec = x + (torch.rand_like(x) - 0.5) * dv
            mu, log_s = self.all_params(hyper, x_rec, ld)
            bits = residual_bits(x_rec - mu, log_s, dv)
        else:
            k, x_rec, log_s = self.quantise(hyper, x, ld, dv)
            bits = residual_bits(k * dv, log_s, dv)
        bits_z = -torch.log2(z_lik.clamp_min(1e-9)).sum(dim=(1, 2, 3))
        bpp = (bits.sum(dim=(1, 2, 3)) + bits_z) / (h * w)
        return {"bpp": bpp, "bpp_z": bits_z / (h * w), "bits": bits, "rec": x_rec}

    def aux_loss(self) -> torch.Tensor:
        return self.entropy_bottleneck.loss()


def to_levels(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] model images -> float levels 0..255 (differentiable)."""
    return (x.clamp(-1.0, 1.0) + 1.0) * 127.5


TABLE_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length")


def load_predictor_state(pred: EntropyPredictor, state: dict[str, torch.Tensor]) -> None:
    """Load weights without compressai's CDF-table buffers (their shapes vary), then rebuild
    the tables from the loaded quantiles."""
    pred.load_state_dict({k: v for k, v in state.items() if not k.endswith(TABLE_BUFFERS)},
                         strict=False)
    pred.entropy_bottleneck.update(force=True)
