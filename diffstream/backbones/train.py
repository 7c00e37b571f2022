"""Training the pixel-space DDPM backbone shared by DiffC and BADiff
(``python -m diffstream.training ddpm``).

The simple loss ||eps - eps_theta(x_t, t)||^2 of Ho et al. 2020 with t uniform on 1..T,
Adam, and an exponential moving average of the weights (what is exported, as in DDPM), on
random crops of the scikit-image photographs at the model's size.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from diffstream.backbones.ddpm import DDPM, DDPMConfig
from diffstream.training.crops import CropSampler
from diffstream.training.loop import Trainer, cosine_schedule

DEFAULT_DDPM_STEPS = 8000


def train_ddpm(args: argparse.Namespace, sampler: CropSampler) -> Path:
    """Ho et al. 2020 Algorithm 1 with an EMA of the weights; exports the EMA model."""
    cfg = DDPMConfig(sample_size=args.size)
    model = DDPM(cfg).train()
    ema = DDPM(cfg).eval()
    ema.load_state_dict(model.state_dict())
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = cosine_schedule(opt, args.steps, warmup=200)
    T = cfg.T

    def step_fn(step: int, rng: np.random.Generator) -> dict[str, float]:
        n = args.batch or 16
        x0 = sampler.batch(n, cfg.sample_size, rng)
        t = torch.from_numpy(rng.integers(1, T + 1, n))
        noise = torch.from_numpy(rng.standard_normal(x0.shape, dtype=np.float32))
        loss = F.mse_loss(model.eps(model.q_sample(x0, t, noise), t), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))  # EMA warm-up (as in DDPM/ADM)
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                pe.lerp_(pm, 1.0 - decay)
        return {"loss": loss.item()}

    logs = Trainer(args.out, "ddpm", args.steps, args.resume, args.seed).run(
        {"model": model, "ema": ema}, opt, sched, step_fn, args.ckpt_every)
    ema.cfg.training = {"steps": args.steps, "batch": args.batch or 16, "lr": args.lr,
                        "ema": args.ema, "data": "scikit-image photograph crops",
                        **{k: round(v, 5) for k, v in logs.items()}}
    return ema.save(args.export)
