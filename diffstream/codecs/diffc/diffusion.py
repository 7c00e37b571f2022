"""The Gaussian pieces of DiffC on the DDPM's schedule: the step posterior and denoisers.

Paper time convention (``diffstream.backbones.ddpm``): abar_0 = 1, t in 1..T. For s < t the
forward-process posterior (Ho et al. 2020, Eq. 6-7, generalised to a skip t -> s) is

    q(x_s | x_t, x_0) = N(c0 x_0 + ct x_t, v I),
    c0 = sqrt(abar_s) (1 - a) / (1 - abar_t),  ct = sqrt(a) (1 - abar_s) / (1 - abar_t),
    v  = (1 - abar_s) (1 - a) / (1 - abar_t),   a = abar_t / abar_s,

and the model's step p(x_s | x_t) is the same Gaussian with x_0 replaced by the model's
prediction x0_hat(x_t) (clipped to [-1, 1]). Both share v, which is what PFR in
whitened coordinates needs (App. A.4), and

    KL(q || p) = c0^2 |x_0 - x0_hat|^2 / (2 v) nats,

one scalar coefficient times the prediction error: Algorithm 3 gets every KL(i -> j) from a
single forward pass at i (paper §3.2, "simple closed-form equation").

The coefficients are computed in float64 from the float64 abar (small t subtracts nearly
equal numbers) and applied to float32 tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from diffstream.backbones.ddpm import DDPM
from diffstream.codecs.diffc import prng

DENOISERS = ("flow", "ancestral", "mse")
ANCESTRAL_PURPOSE = 0x414E43


@dataclass(frozen=True)
class StepCoefs:
    c0: float
    ct: float
    var: float

    @property
    def std(self) -> float:
        return math.sqrt(self.var)

    @property
    def kl_per_sq_err(self) -> float:
        """KL in nats per unit of squared x0-prediction error."""
        return self.c0 * self.c0 / (2.0 * self.var)


def step_coefs(alpha_bar: torch.Tensor, t: int, s: int) -> StepCoefs:
    if not 0 <= s < t <= alpha_bar.numel() - 1:
        raise ValueError(f"need 0 <= s < t <= T, got t={t}, s={s}")
    ab_t, ab_s = float(alpha_bar[t]), float(alpha_bar[s])
    a = ab_t / ab_s
    c0 = math.sqrt(ab_s) * (1.0 - a) / (1.0 - ab_t)
    ct = math.sqrt(a) * (1.0 - ab_s) / (1.0 - ab_t)
    var = (1.0 - ab_s) * (1.0 - a) / (1.0 - ab_t)
    return StepCoefs(c0, ct, var)


def kl_coef_matrix(alpha_bar: torch.Tensor, t_min: int = 1) -> torch.Tensor:
    """coef[i, j] = c0^2 / (2 v) (nats per squared error) for t_min <= j < i <= T, else 0.

    float64, (T + 1) x (T + 1); KL(i -> j) = coef[i, j] * |x_0 - x0_hat(x_i)|^2.
    """
    ab = alpha_bar.to(torch.float64)
    T = ab.numel() - 1
    i = torch.arange(T + 1, dtype=torch.int64).view(-1, 1)
    j = torch.arange(T + 1, dtype=torch.int64).view(1, -1)
    valid = (j < i) & (j >= max(t_min, 1))
    ab_i, ab_j = ab[i.clamp(max=T)], ab[j.clamp(max=T)]
    a = ab_i / ab_j
    one_minus_a = torch.where(valid, 1.0 - a, torch.ones_like(a))
    c0 = ab_j.sqrt() * one_minus_a / (1.0 - ab_i).clamp_min(1e-300)
    var = (1.0 - ab_j) * one_minus_a / (1.0 - ab_i).clamp_min(1e-300)
    coef = c0 * c0 / (2.0 * var.clamp_min(1e-300))
    return torch.where(valid, coef, torch.zeros_like(coef))


def predict_x0(model: DDPM, x_t: torch.Tensor, t: int) -> torch.Tensor:
    """x0_hat(x_t) = (x_t - sqrt(1 - abar) eps) / sqrt(abar), clipped to the image range
    (``model.clip_x0``; a latent model does not clip).

    Clipping (as diffusers' DDPM/DDIM schedulers do with clip_sample) only moves the
    prediction towards [-1, 1], where x_0 lives, so it never increases the KL per pixel.
    """
    eps = model.eps(x_t, t)
    return model.clip_x0(model.x0_from_eps(x_t, t, eps))


def denoise_grid(t: int, steps_full: int, T: int) -> list[int]:
    """Timesteps t = g_0 > g_1 > ... > g_n = 0 for denoising from t: a ``steps_full``-step
    grid over the whole range [0, T] restricted to [0, t] (so x_t at t = T/2 gets half the
    steps: the paper's "standard 50-step DDIM" started mid-way)."""
    n = max(1, math.ceil(steps_full * t / T))
    grid = sorted({round(t * (n - k) / n) for k in range(n + 1)}, reverse=True)
    return grid


@torch.no_grad()
def denoise(model: DDPM, x_t: torch.Tensor, t: int, method: str = "flow",
            steps_full: int = 50, noise_key: int = 0) -> torch.Tensor:
    """x_t at paper time t -> x_0 estimate in [-1, 1].

    flow (DiffC-F): DDIM with eta = 0 (Song et al. 2020, Eq. 12), the deterministic
      probability-flow sampler the paper uses. Closed form rather than diffusers'
      DDIMScheduler: that scheduler's grid always starts at T - 1 in its own 0-based
      indexing, while DiffC starts at an arbitrary t of the paper's 1-based time and must
      end on abar_0 = 1 exactly; the update is two lines either way.
    ancestral (DiffC-A): the DDPM posterior step p(x_s | x_t) on the same grid, with
      noise from the counter generator (key ``noise_key``), so every process agrees.
    mse (DiffC-MSE, App. A.2): one forward pass, x0_hat(x_t).
    """
    if method not in DENOISERS:
        raise ValueError(f"denoiser must be one of {DENOISERS}, got {method!r}")
    if t <= 0:
        return model.clip_x0(x_t)
    if method == "mse":
        return predict_x0(model, x_t, t)
    ab = model.alpha_bar
    grid = denoise_grid(t, steps_full, model.T)
    x = x_t
    for a, b in zip(grid[:-1], grid[1:], strict=True):
        x0 = predict_x0(model, x, a)
        if b == 0:
            x = x0
            break
        if method == "flow":
            ab_a, ab_b = float(ab[a]), float(ab[b])
            eps = (x - math.sqrt(ab_a) * x0) / math.sqrt(1.0 - ab_a)  # consistent with clip
            x = math.sqrt(ab_b) * x0 + math.sqrt(1.0 - ab_b) * eps
        else:
            c = step_coefs(ab, a, b)
            z = prng.vector(prng.derive_key(noise_key, ANCESTRAL_PURPOSE, a), tuple(x.shape),
                            x.device)
            x = c.c0 * x0 + c.ct * x + c.std * z
    return model.clip_x0(x)
