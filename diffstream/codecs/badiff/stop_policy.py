"""BADiff's adaptive stopping policy f_phi (paper 000 §3.4, App. F) and its teacher labels.

Policy (Eq. 13): p_stop = softmax(MLP([pool(h_mid), e_t, e_H]))[1], where h_mid is the U-Net
mid-block output (spatially mean-pooled), e_t the U-Net's own timestep embedding and e_H
the entropy embedding; App. F's widths [256, 128, 2] are scaled to [128, 64, 2] for this
64-channel U-Net. Each of the three inputs is normalised to zero mean and unit RMS
(a parameter-free LayerNorm) before the MLP: e_H is 10-100x smaller than e_t (its norm is
0.02-0.1 against about 8 on the shipped weights) while its direction separates the budgets
(cosine -0.93 between 0.2 and 2 bpp), so unnormalised the MLP could barely read the budget
and the learned stop steps were nearly H-independent (issue 16; a deviation: App. F
concatenates the raw vectors). Inputs are detached: the BCE trains the policy only (the paper stops
gradients at the Bernoulli draw; we also keep them out of the U-Net, so the policy head
costs one no-grad U-Net call per training step). Inference stops when p_stop >= 0.5
(the paper's default threshold) -- deterministic, instead of a Bernoulli draw.

Teacher labels (Eq. 12, 14, reconstructed): for a long-step run of the sampler we know,
at every step i, the predicted x_0^(i). Stopping at i costs

    J_i(H) = R_i(H) / H + beta * D_i(H) + gamma * (i + 1) / N

- R_i(H): LIC's ideal rate (bpp) of x_0^(i) at the operating scale q_op(H) (``lic_rate.
  py``: the scale at which the median real crop costs H), unclipped: the entropy of the
  step's image at the quality the budget buys, against the budget. A detailed late step
  costs more than H at a low budget, little at a high one: the term depends on H.
- D_i(H) = 1 - MS-SSIM(LIC's reconstruction of x_0^(i) at budget H, x_0^(N)): the
  distortion of what the receiver would see against the same run's full-step output (the
  reference of Eq. 12). MS-SSIM, not PSNR: PSNR rewards the blurry x_0 of early steps
  (the MSE-optimal estimate), and made the labels nearly H-independent (issue 16).
- (i + 1) / N: the fraction of the N steps run (compute).

tau* = the first i with J_i <= min_j J_j + tol; labels y_i = 1 for i >= tau* ("step i is
sufficient"), 0 before. beta and gamma are ours (the paper's values are not in the
extracted text): gamma = 1 prices a full run like a doubled rate; beta was chosen on a
probe of 16 plain-DDPM runs before the policy was trained (docs/badiff.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

STOP_THRESHOLD = 0.5
BETA = 2.0  # per unit of 1 - MS-SSIM (a probe of 16 runs: docs/badiff.md)
GAMMA = 1.0  # a full run costs as much as a rate of twice the budget
TOL = 0.05


class StopPolicy(nn.Module):
    def __init__(self, feat_dim: int, temb_dim: int, hemb_dim: int,
                 widths: tuple[int, int] = (128, 64)) -> None:
        super().__init__()
        self.dims = (feat_dim, temb_dim, hemb_dim)
        self.net = nn.Sequential(
            nn.Linear(feat_dim + temb_dim + hemb_dim, widths[0]), nn.SiLU(),
            nn.Linear(widths[0], widths[1]), nn.SiLU(),
            nn.Linear(widths[1], 2))

    def forward(self, feat: torch.Tensor, temb: torch.Tensor, hemb: torch.Tensor
                ) -> torch.Tensor:
        """stop/continue logits (N x 2; column 1 = stop)."""
        parts = [F.layer_norm(v.detach(), (d,)) for v, d in zip((feat, temb, hemb), self.dims,
                                                               strict=True)]
        return self.net(torch.cat(parts, dim=1))

    @torch.no_grad()
    def p_stop(self, feat: torch.Tensor, temb: torch.Tensor, hemb: torch.Tensor
               ) -> torch.Tensor:
        return torch.softmax(self(feat, temb, hemb), dim=1)[:, 1]


def should_stop(p_stop: float, threshold: float = STOP_THRESHOLD) -> bool:
    """Inference rule of §3.4: stop as soon as the stop probability reaches the threshold."""
    return float(p_stop) >= threshold


class MidFeatures:
    """Captures the mean-pooled output of a diffusers U-Net's mid block on every call."""

    def __init__(self) -> None:
        self.value: torch.Tensor | None = None

    def hook(self, _module: nn.Module, _inp: object, out: torch.Tensor) -> None:
        self.value = out.mean(dim=(2, 3))


@contextmanager
def mid_features(unet: nn.Module) -> Iterator[MidFeatures]:
    feats = MidFeatures()
    handle = unet.mid_block.register_forward_hook(feats.hook)
    try:
        yield feats
    finally:
        handle.remove()


def time_embedding(unet: nn.Module, t_index: torch.Tensor) -> torch.Tensor:
    """The U-Net's own timestep embedding e_t (diffusers index = paper t - 1)."""
    emb = unet.time_proj(t_index).to(next(unet.parameters()).dtype)
    return unet.time_embedding(emb)


def stop_costs(rate_bpp: np.ndarray, ms_ssim: np.ndarray, budget_bpp: float,
               beta: float = BETA, gamma: float = GAMMA) -> np.ndarray:
    """J_i of Eq. 12 for the steps i = 0..N-1 of one run at one budget: rate R_i (bpp at
    the budget's operating scale), MS-SSIM of the coded step image to the full-step one."""
    n = len(rate_bpp)
    return (np.asarray(rate_bpp) / budget_bpp + beta * (1.0 - np.asarray(ms_ssim))
            + gamma * (np.arange(n) + 1) / n)


def teacher_labels(costs: np.ndarray, tol: float = TOL) -> np.ndarray:
    """Eq. 14: y_i = 1 from the first step whose cost is within tol of the minimum."""
    costs = np.asarray(costs, dtype=np.float64)
    tau = int(np.argmax(costs <= costs.min() + tol))
    y = np.zeros(len(costs), dtype=np.float32)
    y[tau:] = 1.0
    return y
