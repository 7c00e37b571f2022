"""Samplers for the generation codecs and the quality reference of paper 000 §4.

THE full-step sampler (used identically by the reference, the Cascade baselines and BADiff):
ancestral DDPM sampling (Ho et al. 2020, Algorithm 2) on ``N_FULL`` = 100 respaced steps
of the 1000-step linear schedule (Nichol & Dhariwal 2021 respacing: the betas between kept
steps are recomputed from alpha_bar), with x_0 clipped to [-1, 1] at every step. Deviation:
the paper's DDPM-1k runs 1000 steps; at ~9 ms per U-Net call on one CPU core that is ~10 s
per 32x32 image, so the simulator's "full sampling" is 100 steps (~1 s).

Determinism: x_T and every step's noise come from a CPU ``torch.Generator`` seeded with the
request's seed and are drawn in a fixed order (step i's noise only after step i), so a
sampler that stops at step i has seen exactly the noise of the first i steps of the full
run. Run on one torch thread, the reference is bit-identical in every process on the same
machine. Across devices (CPU vs CUDA) or torch builds the float arithmetic differs and the
images differ by rounding: sender and receiver must use the same kind of device.

The fast solvers of the baselines are diffusers' ``DPMSolverMultistepScheduler``
(DPM-Solver++, 2nd order, 20 steps) and ``PNDMScheduler`` (PLMS, ``skip_prk_steps=True``,
50 steps: diffusers' pipeline defaults), run on the same plain DDPM from the same x_T.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffstream.backbones.ddpm import DDPM, load_cached
from diffstream.codecs.base import GenerationRequest
from diffstream.codecs.gic.bitstream import one_thread
from diffstream.training.crops import to_uint8

N_FULL = 100
DPM_STEPS = 20
PNDM_STEPS = 50

# callback(step index i, paper time t, x_t, predicted x_0) -> True to stop after this step
StepCallback = Callable[[int, int, torch.Tensor, torch.Tensor], bool]



def load_plain_ddpm(weights: str | Path | None = None) -> DDPM:
    """The unconditional DDPM on the CPU, shared per process."""
    return load_cached(weights, device="cpu")


def respaced_times(T: int, n: int) -> list[int]:
    """n paper times from T down to 1, evenly spaced (both ends kept)."""
    if not 1 <= n <= T:
        raise ValueError(f"steps must be in 1..{T}, got {n}")
    if n == 1:
        return [T]
    return sorted({round(1 + k * (T - 1) / (n - 1)) for k in range(n)}, reverse=True)


def noise_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) % (1 << 63))


@torch.no_grad()
def ddpm_sample(model: DDPM, seed: int, shape: tuple[int, int], steps: int = N_FULL,
                cond: torch.Tensor | None = None, callback: StepCallback | None = None
                ) -> tuple[torch.Tensor, int]:
    """Ancestral sampling on respaced steps -> (x_0, U-Net calls).

    x_0 is in the model's diffusion space: the image in [-1, 1] (1 x 3 x H x W) for the
    pixel DDPM, the latent (1 x C x H/f x W/f, not clipped) for a ``LatentDiffusion``, whose
    ``to_image`` decodes it. The noise is drawn on the CPU generator in the same order on
    every device and moved to the model's device. ``callback`` may stop the run early; the
    predicted x_0 of that step is returned.
    """
    h, w = shape
    gen = noise_generator(seed)
    ab = model.alpha_bar
    dev = ab.device
    times = respaced_times(model.T, steps)
    x = torch.randn((1, *model.latent_shape(h, w)), generator=gen).to(dev)
    x0 = x
    for i, t in enumerate(times):
        eps = model.eps(x, t, cond)
        x0 = model.clip_x0(model.x0_from_eps(x, t, eps))
        if i == len(times) - 1:
            return x0, i + 1
        if callback is not None and callback(i, t, x, x0):
            return x0, i + 1
        t_prev = times[i + 1]
        a_t, a_p = float(ab[t]), float(ab[t_prev])
        beta = 1.0 - a_t / a_p
        c0 = a_p ** 0.5 * beta / (1.0 - a_t)
        ct = (1.0 - beta) ** 0.5 * (1.0 - a_p) / (1.0 - a_t)
        var = beta * (1.0 - a_p) / (1.0 - a_t)
        x = c0 * x0 + ct * x + var ** 0.5 * torch.randn(x.shape, generator=gen).to(dev)
    return x0, len(times)


def _scheduler(kind: str, model: DDPM):  # noqa: ANN202 - a diffusers scheduler
    from diffusers import DPMSolverMultistepScheduler, PNDMScheduler

    common = dict(num_train_timesteps=model.T, beta_start=model.cfg.beta_start,
                  beta_end=model.cfg.beta_end, beta_schedule="linear",
                  prediction_type="epsilon")
    if kind == "dpmsolver":
        return DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2,
                                           lower_order_final=True, **common)
    if kind == "pndm":
        return PNDMScheduler(skip_prk_steps=True, **common)
    raise ValueError(f"unknown solver {kind!r}")


@torch.no_grad()
def solver_sample(model: DDPM, kind: str, seed: int, shape: tuple[int, int],
                  steps: int | None = None) -> tuple[torch.Tensor, int]:
    """DPM-Solver++ / PNDM on the plain DDPM from the same x_T -> (x_0, U-Net calls)."""
    sched = _scheduler(kind, model)
    n = steps or (DPM_STEPS if kind == "dpmsolver" else PNDM_STEPS)
    sched.set_timesteps(n)
    gen = noise_generator(seed)
    x = torch.randn(1, 3, *shape, generator=gen) * float(sched.init_noise_sigma)
    calls = 0
    for t in sched.timesteps:
        eps = model.eps(x, int(t) + 1)  # diffusers' index i is paper time i + 1
        calls += 1
        x = sched.step(eps, t, x).prev_sample
    return x.clamp(-1.0, 1.0), calls


def _check_request(request: GenerationRequest, shape: tuple[int, int]) -> tuple[int, int]:
    if request.label is not None or request.prompt is not None:
        raise ValueError("the shipped DDPM is unconditional: GenerationRequest.label and "
                         ".prompt must be None")
    h, w = (int(v) for v in shape)
    if h < 8 or w < 8 or h % 4 or w % 4:
        raise ValueError(f"generated frames need sides that are multiples of 4 (U-Net "
                         f"downsamples 4x), got {w}x{h}; the model was trained at 32x32")
    return h, w


def reference_image(request: GenerationRequest, shape: tuple[int, int],
                    model: str | Path | None = None, steps: int = N_FULL,
                    device: str | None = None) -> np.ndarray:
    """The quality reference: the request's unconstrained full-step sample (H x W x 3 uint8),
    identical in every process on the same device type.

    ``model`` None: the shipped pixel DDPM, ``N_FULL`` respaced steps. ``model`` a diffusers
    pipeline folder (``content.model``, paper 000's LDM-200 setup): that model's ``steps``-step
    sample decoded by its VAE, on CUDA when present (as the BADiff codec runs it)."""
    h, w = _check_request(request, shape)
    if model is None:
        plain: Any = load_plain_ddpm()
        steps = N_FULL
    else:
        from diffstream.backbones.latent import load_backbone

        plain = load_backbone(model, device=device or default_device(model))
    with torch.no_grad(), one_thread():
        x0, _ = ddpm_sample(plain, request.seed, (h, w), int(steps))
        image = x0 if model is None else plain.to_image(x0)
    return to_uint8(image)[0]


def default_device(ldm: str | Path | None) -> str:
    """CUDA when present for a latent model. The shipped pixel model keeps the CPU, so its
    samples stay those of the documented CPU runs (CPU and CUDA round differently and give
    different images); ``device: cuda`` moves it."""
    return "cuda" if ldm is not None and torch.cuda.is_available() else "cpu"
