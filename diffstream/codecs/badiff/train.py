"""BADiff training (``python -m diffstream.training badiff [--stage ...]``).

Stages (each resumable, outputs cached under ``--out``, default runs/badiff_train):

1. ``phi``: H_phi pre-training on scikit-image crops: its rate (NLL in bpp) at a random
   quantiser step from the coder's grid, plus compressai's auxiliary quantile loss. Without
   this warm start the hinge of stage 4 would chase an untrained estimator.
2. ``lic``: the calibration bank (Eq. 11): random crops, each coded for real by the ``lic``
   codec at a random budget in [0.2, 2] bpp -> (real bpp, MSE); delta_op(H), the table of
   LIC-matched pixel steps sqrt(12 MSE) by bpp (binned medians; ``coder: own``); and
   q_op(H), the LIC scale at which the median of 512 real crops costs H (the hinge's).
3. ``labels``: teacher stop labels (Eq. 12, 14): long-step runs (the 100-step full sampler)
   of the plain DDPM on random seeds; every step's latent x_t is cached with the labels for
   a grid of budgets, from J = LIC rate at q_op(H) / H + beta (1 - MS-SSIM of the step's
   image coded at H against the run's last) + gamma (step fraction) (see stop_policy.py).
4. ``finetune``: Eq. 16 from the plain DDPM's weights. Per step (batch 16, t ~ U{1..T},
   H ~ U[0.2, 2]): L_simple + lambda_ent L_ent (lambda_ent 0.1, App. G), the hinge
   abar_t max(0, (H_lic - H) / H) on LIC's rate of the clamped x0_hat at q_op(H)
   (``lic_rate.py``; gradient to the U-Net and embedding only); H_phi's own NLL on 8
   crops and 8 x0_hat (detached) + 1e-3 L_cal on 4 bank crops + aux ; 1e-2 BCE of the
   stop policy on a batch of cached teacher states (features from a no-grad U-Net call).
   Adam 1e-4 constant, clip 1.0 (App. E); an EMA (0.999) of the U-Net + embedding is
   what is exported, as for the plain DDPM. Every 25 steps the log's ``grad_ratio`` is
   ||grad lambda_ent L_ent|| / ||grad L_simple|| over the U-Net and embedding.
5. ``policy``: the stop policy refitted from scratch (``--policy-steps``, batch 256) on the
   teacher states through the exported (EMA) U-Net and e(H), both frozen: the features
   the sampler sees at inference, not the moving fine-tune's (``refit_policy``).

On a latent diffusion model (``--ldm DIR``, paper 000's LDM-200 setup): stages 1 and 2 are
the same (H_phi and LIC live in pixel space); stage 3 runs the plain LDM in its latent and
labels every step by the VAE decoding of its x0_hat; stage 4 fine-tunes the latent U-Net
(loaded with the identity class embedding) on the VAE latents of ``--size`` crops, with
the hinge on LIC's rate of the VAE decoding of the clamped latent x0_hat (gradients flow
through the frozen decoder). The weights (fine-tuned U-Net + heads, no VAE) go to
``--export`` (default ``--out``). ``--images DIR`` trains on a folder's crops.

Deviations (docs/badiff.md): fine-tuning for a few thousand steps instead of 800 k from
scratch; batch 16 instead of 64/128; the hinge does not update H_phi (it would teach the
estimator to under-report); ablation variants (``--variant nocond|nohinge|nocal``) are
short fine-tunes with the same recipe.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from diffstream.backbones.ddpm import DDPM
from diffstream.codecs.badiff.entropy_predictor import (
    DELTAS,
    EntropyPredictor,
    load_predictor_state,
    to_levels,
)
from diffstream.codecs.badiff.lic_rate import LicRate, measure_q_op, q_grid, q_op
from diffstream.codecs.badiff.model import (
    H_MAX,
    H_MIN,
    LAMBDA_CAL,
    LAMBDA_STOP,
    BADiff,
    BADiffConfig,
    calibration_loss,
    hinge_loss,
)
from diffstream.codecs.badiff.samplers import N_FULL, load_plain_ddpm, respaced_times
from diffstream.codecs.badiff.stop_policy import (
    BETA,
    GAMMA,
    StopPolicy,
    mid_features,
    stop_costs,
    teacher_labels,
    time_embedding,
)
from diffstream.metrics.quality import ms_ssim
from diffstream.training.crops import CropSampler, to_tensor, to_uint8

STAGES = ("phi", "lic", "labels", "finetune", "policy")
POLICY_STEPS = 3000  # stage ``policy`` (batch 256)
POLICY_RUNS = 144  # stage ``policy``: the model's own teacher runs, 16 per budget
LABEL_H = (0.2, 0.3, 0.45, 0.6, 0.8, 1.0, 1.3, 1.6, 2.0)
LABEL_STEP_STRIDE = 2  # ... and cost every 2nd sampler step (tau* on that subset)
VARIANTS = ("full", "nocond", "nohinge", "nocal")
DIAG_EVERY = 25  # steps between gradient-ratio measurements (two extra backward passes)
Q_OP_CROPS = 512  # real crops behind the q_op table (median rate per LIC scale)


class MultiOpt:
    """Several optimizers behind the one-optimizer interface Trainer checkpoints."""

    def __init__(self, **opts: torch.optim.Optimizer) -> None:
        self.opts = opts

    def state_dict(self) -> dict[str, Any]:
        return {k: o.state_dict() for k, o in self.opts.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, o in self.opts.items():
            o.load_state_dict(state[k])


class NoSched:
    """Constant learning rate (App. E: no decay, no warm-up)."""

    def step(self) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


def plain_backbone(args: argparse.Namespace) -> Any:
    """The plain model BADiff starts from: a latent model (``--ldm``) or the pixel DDPM."""
    ldm = getattr(args, "ldm", None)
    if ldm is not None:
        from diffstream.backbones.latent import load_backbone

        return load_backbone(ldm, device="cpu")
    return load_plain_ddpm(args.ddpm_weights)


def crop_size(args: argparse.Namespace) -> int:
    """Training and teacher image size: 32 for the pixel DDPM, ``--size`` on an LDM."""
    return int(args.size) if getattr(args, "ldm", None) is not None else 32


def random_deltas(rng: np.random.Generator, n: int) -> torch.Tensor:
    """Quantiser steps for H_phi's rate loss: the coder's grid, uniform over its indexes."""
    return torch.tensor([DELTAS[i] for i in rng.integers(0, len(DELTAS), n)], dtype=torch.float32)


# --------------------------------------------------------------------------- stage 1
def train_phi(args: argparse.Namespace, sampler: CropSampler, trainer_cls: type
              ) -> tuple[EntropyPredictor, dict[str, float]]:
    phi = EntropyPredictor().train()
    opt = torch.optim.Adam(phi.parameters(), lr=1e-3)

    def step_fn(step: int, rng: np.random.Generator) -> dict[str, float]:
        torch.manual_seed(args.seed * 100003 + step)
        x = to_levels(sampler.batch(args.batch or 16, 32, rng))
        out = phi(x, random_deltas(rng, x.shape[0]), noise=True)
        loss = out["bpp"].mean()
        aux = phi.aux_loss()
        opt.zero_grad(set_to_none=True)
        (loss + aux).backward()
        torch.nn.utils.clip_grad_norm_(phi.parameters(), 1.0)
        opt.step()
        return {"bpp": loss.item(), "aux": aux.item()}

    logs = trainer_cls(args.out, "badiff_phi", args.phi_steps, args.resume, args.seed).run(
        {"phi": phi}, opt, NoSched(), step_fn, args.ckpt_every)
    phi.eval()
    phi.entropy_bottleneck.update(force=True)
    torch.save(phi.state_dict(), args.out / "phi.pt")
    return phi, logs


def load_phi(args: argparse.Namespace) -> EntropyPredictor:
    phi = EntropyPredictor()
    state = torch.load(args.out / "phi.pt", map_location="cpu", weights_only=True)
    load_predictor_state(phi, state)
    return phi.eval()


# --------------------------------------------------------------------------- stage 2
def build_lic_bank(args: argparse.Namespace, sampler: CropSampler) -> dict[str, Any]:
    """Real LIC codes of random crops -> calibration targets and the delta_op table."""
    path = args.out / "lic_bank.pt"
    if path.is_file():
        bank = torch.load(path, map_location="cpu", weights_only=True)
        if "q_op" not in bank:  # a bank cached before the LIC-rate hinge
            bank["q_op"] = q_op_table(args, sampler)
            torch.save(bank, path)
        return bank
    from diffstream.codecs.registry import create_codec

    lic = create_codec("lic")
    rng = np.random.default_rng([args.seed, 77])
    crops = to_uint8(sampler.batch(args.lic_bank, 32, rng))
    budgets = np.exp(rng.uniform(math.log(H_MIN), math.log(H_MAX), len(crops)))
    keep, bpp, mse = [], [], []
    for i, (im, b) in enumerate(zip(crops, budgets, strict=True)):
        enc = lic.encode(im, int(b * 32 * 32))
        if enc.skipped:
            continue
        dec = lic.decode(enc.payload, enc.meta, (32, 32))
        keep.append(i)
        bpp.append(enc.bits / 1024)
        mse.append(float(np.mean((dec.astype(np.float64) - im.astype(np.float64)) ** 2)))
    bpp_a, mse_a = np.array(bpp), np.array(mse)
    d_match = np.sqrt(12 * np.maximum(mse_a, 1e-3))
    # delta_op table: median matched step in log-spaced bpp bins (monotone by construction)
    edges = np.exp(np.linspace(math.log(H_MIN), math.log(H_MAX), 8))
    table: list[tuple[float, float]] = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (bpp_a >= lo) & (bpp_a < hi)
        if sel.sum() >= 5:
            table.append((float(np.sqrt(lo * hi)), float(np.median(d_match[sel]))))
    ds = np.minimum.accumulate([d for _, d in table])
    table = [(h, float(d)) for (h, _), d in zip(table, ds, strict=True)]
    bank = {"images": torch.from_numpy(crops[keep]), "bpp": torch.tensor(bpp_a).float(),
            "delta": torch.tensor(d_match).float(), "table": torch.tensor(table).float(),
            "q_op": q_op_table(args, sampler)}
    torch.save(bank, path)
    return bank


def q_op_table(args: argparse.Namespace, sampler: CropSampler) -> torch.Tensor:
    """(H, q_op) rows on LABEL_H: the LIC scale at which the median real crop costs H."""
    rng = np.random.default_rng([args.seed, 78])
    crops = to_uint8(sampler.batch(Q_OP_CROPS, crop_size(args), rng))
    return torch.tensor(measure_q_op(LicRate(), crops, LABEL_H)).float()


def q_op_of(bank: dict[str, Any]) -> tuple[tuple[float, float], ...]:
    return tuple((float(h), float(q)) for h, q in bank["q_op"].tolist())


# --------------------------------------------------------------------------- stage 3
@torch.no_grad()
def stop_steps(rate: LicRate, images: np.ndarray, q_table: tuple[tuple[float, float], ...],
               hs: tuple[float, ...] = LABEL_H, beta: float = BETA, gamma: float = GAMMA
               ) -> np.ndarray:
    """Eq. 12 / 14 for one run: tau* (an index into ``images``) for every budget in ``hs``.

    ``images``: S x H x W x 3 uint8, the x0_hat of evenly spaced steps of one run, the last
    the full-step output (the reference). The compute term's (i + 1) / S is the fraction of
    the run on that subset, as on the full grid."""
    a = rate.analyse(to_tensor(images))  # once: the encoder does not depend on H or q
    rates = rate.rate_table(a, [float(q_op(h, q_table)) for h in hs]).numpy()  # S x len(hs)
    grid = rate.rate_table(a, q_grid(rate.q_lo, rate.q_hi))  # for code_at_budget, every H
    ref = images[-1]
    tau = np.zeros(len(hs), dtype=np.int64)
    for k, h in enumerate(hs):
        coded, _ = rate.code_at_budget(a, h, grid)  # what the receiver would see at budget H
        quality = np.array([ms_ssim(ref, c) for c in coded])
        tau[k] = int(np.argmax(teacher_labels(stop_costs(rates[:, k], quality, h, beta,
                                                          gamma))))
    return tau


def weights_name(variant: str) -> str:
    """The exported weights' file stem of a variant: ``badiff`` or ``badiff_<variant>``."""
    return "badiff" if variant == "full" else f"badiff_{variant}"


def model_fingerprint(model: BADiff) -> str:
    """A hash of what a model's own teacher runs depend on (U-Net and e(H) weights), so a
    cache of them is never reused for another fine-tune."""
    h = hashlib.blake2s(digest_size=16)
    for mod in (model.unet, model.embed):
        for k, v in sorted(mod.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def teacher_data(args: argparse.Namespace, q_table: tuple[tuple[float, float], ...],
                 own: BADiff | None = None) -> dict[str, torch.Tensor]:
    """Long-step runs: states x_t (float16) and stop labels per budget.

    ``own=None``: the plain DDPM's runs (stage ``labels``, for the fine-tune), each labelled
    for every budget of ``LABEL_H``. ``own``: the fine-tuned model's own runs, each
    conditioned on one budget (runs cycle through ``LABEL_H``) and labelled for it only
    (``run_h``: the budget's index per run) -- Eq. 12's reference is the same model's
    long-step output, and these are the states its sampler visits (stage ``policy``)."""
    path = args.out / ("teacher.pt" if own is None else f"teacher_{args.variant}.pt")
    fp = "" if own is None else model_fingerprint(own)
    if path.is_file():
        cached = torch.load(path, map_location="cpu", weights_only=True)
        if cached.get("fingerprint", "") == fp:  # own runs: only of this very model
            return cached
    model = plain_backbone(args) if own is None else own.ddpm
    rate = LicRate()
    times = respaced_times(model.T, N_FULL)
    ab = model.alpha_bar
    gen = torch.Generator().manual_seed(args.seed + 4242)
    n_runs = (args.teacher_runs if own is None
              else int(getattr(args, "policy_runs", None) or POLICY_RUNS))
    bs = 16
    size = crop_size(args)
    lshape = model.latent_shape(size, size)  # (3, 32, 32) for the pixel DDPM
    states = torch.zeros(n_runs, len(times), *lshape, dtype=torch.float16)
    labels = torch.zeros(n_runs, len(LABEL_H), len(times))
    t0 = time.time()
    for b0 in range(0, n_runs, bs):
        n = min(bs, n_runs - b0)
        his = [(b0 + j) % len(LABEL_H) for j in range(n)]  # own runs: budgets in turn
        h_run = torch.tensor([LABEL_H[k] for k in his])
        x = torch.randn((n, *lshape), generator=gen)
        x0s = []
        for i, t in enumerate(times):
            states[b0:b0 + n, i] = x.half()
            eps = model.eps(x, t) if own is None else own.eps(x, t, h_run)
            x0 = model.clip_x0(model.x0_from_eps(x, t, eps))
            x0s.append(model.to_image(x0))  # the image of this step (VAE-decoded on an LDM)
            if i < len(times) - 1:
                tp = times[i + 1]
                a_t, a_p = float(ab[t]), float(ab[tp])
                beta = 1 - a_t / a_p
                mean = (a_p ** 0.5 * beta / (1 - a_t)) * x0 + (
                    (1 - beta) ** 0.5 * (1 - a_p) / (1 - a_t)) * x
                x = mean + (beta * (1 - a_p) / (1 - a_t)) ** 0.5 * torch.randn(
                    x.shape, generator=gen)
        traj = torch.stack(x0s, 1)  # n x steps x 3 x size x size
        sub = np.unique(np.r_[np.arange(0, len(times), LABEL_STEP_STRIDE), len(times) - 1])
        for j in range(n):
            images = to_uint8(traj[j, sub])  # the uint8 image of each evaluated step
            hs = LABEL_H if own is None else (LABEL_H[his[j]],)
            for k, tau in enumerate(stop_steps(rate, images, q_table, hs=hs)):
                labels[b0 + j, k if own is None else his[j], int(sub[tau]):] = 1.0
        print(f"[badiff_labels] {b0 + n}/{n_runs} runs, {time.time() - t0:.0f}s", flush=True)
    data = {"states": states, "labels": labels, "times": torch.tensor(times),
            "h": torch.tensor(LABEL_H)}
    if own is not None:
        data["run_h"] = torch.arange(n_runs) % len(LABEL_H)  # the budgets in turn, as run
        data["fingerprint"] = fp
    torch.save(data, path)
    return data


# --------------------------------------------------------------------------- stage 4
def finetune(args: argparse.Namespace, sampler: CropSampler, phi: EntropyPredictor,
             bank: dict[str, Any], teacher: dict[str, torch.Tensor], trainer_cls: type
             ) -> tuple[BADiff, dict[str, float]]:
    plain: DDPM = plain_backbone(args)
    table = tuple((float(h), float(d)) for h, d in bank["table"].tolist())
    cfg = BADiffConfig(conditioned=args.variant != "nocond", delta_op=table)
    model = BADiff.from_plain(plain, cfg)
    load_predictor_state(model.predictor, phi.state_dict())
    model.train()
    latent = model.cfg.backbone.get("kind") == "latent"
    if latent:
        model.ddpm.vae.eval()  # frozen: no training-mode behaviour either
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    theta = [*model.unet.parameters(), *model.embed.parameters()]
    # e(H) starts at zero and must grow from nothing in a short fine-tune, while the U-Net
    # only adapts: its own (larger) learning rate, ``--embed-lr`` (default: ``--lr``)
    embed_lr = getattr(args, "embed_lr", None) or args.lr
    opt_t = torch.optim.Adam([{"params": list(model.unet.parameters()), "lr": args.lr},
                              {"params": list(model.embed.parameters()), "lr": embed_lr}])
    opt_p = torch.optim.Adam(model.predictor.parameters(), lr=2e-4)
    opt_s = torch.optim.Adam(model.policy.parameters(), lr=1e-3)
    lam_ent = 0.0 if args.variant == "nohinge" else args.lambda_ent
    lam_cal = 0.0 if args.variant == "nocal" else LAMBDA_CAL
    T = model.ddpm.T
    n_bank = bank["images"].shape[0]
    lic_rate, q_table = LicRate(), q_op_of(bank)
    diag_every = int(getattr(args, "diag_every", DIAG_EVERY))
    diag: dict[str, float] = {}  # grad_ratio, once measured (logged from then on)

    size = crop_size(args)

    def step_fn(step: int, rng: np.random.Generator) -> dict[str, float]:
        torch.manual_seed(args.seed * 100003 + step)
        n = args.batch or 16
        x0 = sampler.batch(n, size, rng)
        with torch.no_grad():
            z0 = model.ddpm.to_latent(x0)  # the image itself for the pixel DDPM
        h = torch.from_numpy(rng.uniform(H_MIN, H_MAX, n)).float()
        t = torch.from_numpy(rng.integers(1, T + 1, n))
        noise = torch.from_numpy(rng.standard_normal(z0.shape, dtype=np.float32))
        x_t = model.ddpm.q_sample(z0, t, noise)
        eps = model.eps(x_t, t, h)
        l_simple = F.mse_loss(eps, noise)
        ab = model.ddpm.alpha_bar[t].float().view(-1, 1, 1, 1)
        x0_hat = model.ddpm.clip_x0((x_t - (1 - ab).sqrt() * eps) / ab.sqrt())
        # Eq. 8 in LIC's rate at the budget's operating scale, relative ((H_lic - H) / H)
        # and weighted by alpha_bar_t, on the clamped x0_hat (issue 16; module docstring)
        img = model.ddpm.to_image(x0_hat).clamp(-1.0, 1.0)  # the VAE decoding on an LDM
        h_lic = lic_rate(img, q_op(h, q_table), mode="ste")
        l_ent = hinge_loss(h_lic, h, weight=ab.view(-1))
        if diag_every and step % diag_every == 0:
            diag["grad_ratio"] = grad_ratio(theta, l_simple, lam_ent * l_ent)
        opt_t.zero_grad(set_to_none=True)
        (l_simple + lam_ent * l_ent).backward()
        torch.nn.utils.clip_grad_norm_(theta, 1.0)
        # H_phi: own rate on crops and on the generator's x0_hat, + Eq. 11 calibration
        opt_p.zero_grad(set_to_none=True)
        half = n // 2  # H_phi batches halved: its six-pass head dominates the step time
        with torch.no_grad():
            gen_img = model.ddpm.to_image(x0_hat[:half].detach())
        xs = torch.cat([to_levels(x0[:half]), to_levels(gen_img)])
        l_rate = model.predictor(xs, random_deltas(rng, 2 * half), noise=True)["bpp"].mean()
        bi = torch.from_numpy(rng.integers(0, n_bank, max(2, n // 4)))
        xb = bank["images"][bi].permute(0, 3, 1, 2).float()
        h_cal = model.predictor(xb, bank["delta"][bi], noise=True)["bpp"]
        l_cal = calibration_loss(h_cal, bank["bpp"][bi])
        aux = model.predictor.aux_loss()
        (l_rate + lam_cal * l_cal + aux).backward()
        torch.nn.utils.clip_grad_norm_(model.predictor.parameters(), 1.0)
        opt_p.step()
        opt_t.step()
        l_stop, acc = policy_step(model, opt_s, teacher, rng, n, LAMBDA_STOP)
        with torch.no_grad():
            for pe, pm in zip([*ema.unet.parameters(), *ema.embed.parameters()], theta,
                              strict=True):
                pe.lerp_(pm, 1.0 - min(args.ema, (1 + step) / (10 + step)))
        return {"simple": l_simple.item(), "ent": l_ent.item(), "h_lic": h_lic.mean().item(),
                **diag, "rate": l_rate.item(),
                "cal": l_cal.item(), "stop": l_stop.item(), "stop_acc": acc,
                "total": (l_simple + lam_ent * l_ent + lam_cal * l_cal
                          + LAMBDA_STOP * l_stop).item()}

    opts = MultiOpt(theta=opt_t, phi=opt_p, policy=opt_s)
    logs = trainer_cls(args.out, f"badiff_{args.variant}", args.steps, args.resume,
                       args.seed).run({"model": model, "ema": ema}, opts, NoSched(), step_fn,
                                      args.ckpt_every)
    load_predictor_state(ema.predictor, model.predictor.state_dict())
    ema.policy.load_state_dict(model.policy.state_dict())
    return ema.eval(), logs


def policy_step(model: BADiff, opt: torch.optim.Optimizer, teacher: dict[str, torch.Tensor],
                rng: np.random.Generator, n: int, weight: float = 1.0
                ) -> tuple[torch.Tensor, float]:
    """One BCE step of the stop policy on n cached teacher states (random run, step and
    budget); features from a no-grad call of ``model``'s U-Net conditioned on e(H).
    Returns the loss and the batch accuracy."""
    states, labels = teacher["states"], teacher["labels"]
    times, hs = teacher["times"], teacher["h"]
    ri = torch.from_numpy(rng.integers(0, states.shape[0], n))
    si = torch.from_numpy(rng.integers(0, states.shape[1], n))
    hi = torch.from_numpy(rng.integers(0, len(hs), n))
    with torch.no_grad(), mid_features(model.unet) as feats:
        cond = model.cond(hs[hi], n)
        model.ddpm.eps(states[ri, si].float(), times[si], cond)
        temb = time_embedding(model.unet, times[si] - 1)
    logits = model.policy(feats.value, temb, cond)
    target = labels[ri, hi, si].long()
    loss = F.cross_entropy(logits, target)
    opt.zero_grad(set_to_none=True)
    (weight * loss).backward()
    opt.step()
    return loss, (logits.argmax(1) == target).float().mean().item()


# --------------------------------------------------------------------------- stage 5
class _MidBlockReached(Exception):
    """Raised by ``policy_features``' hook: the policy needs nothing after the mid block."""


@torch.no_grad()
def policy_features(model: BADiff, teacher: dict[str, torch.Tensor], stride: int = 2,
                    chunk: int = 64) -> dict[str, torch.Tensor]:
    """The frozen model's policy inputs for every teacher run x step (every ``stride``-th
    and the last, the grid the labels were costed on) x budget (the run's own, when the
    teacher says ``run_h``): the pooled mid-block output (the U-Net run only up to it),
    e_t per step and e(H) per budget."""
    states, times, hs = teacher["states"], teacher["times"], teacher["h"]
    n_runs, n_steps = states.shape[:2]
    sub = torch.from_numpy(np.unique(np.r_[np.arange(0, n_steps, stride), n_steps - 1]))
    grid = torch.cartesian_prod(torch.arange(n_runs), sub, torch.arange(len(hs)))
    if "run_h" in teacher:  # the model's own runs: each labelled for its own budget only
        grid = grid[grid[:, 2] == teacher["run_h"][grid[:, 0]]]
    out: list[torch.Tensor] = []

    def stop(_m: nn.Module, _i: object, o: torch.Tensor) -> None:
        out.append(o.mean(dim=(2, 3)))
        raise _MidBlockReached

    handle = model.unet.mid_block.register_forward_hook(stop)
    try:
        for i in range(0, grid.shape[0], chunk):
            r, si, hi = grid[i:i + chunk].unbind(1)
            try:
                model.ddpm.eps(states[r, si].float(), times[si], model.cond(hs[hi], len(r)))
            except _MidBlockReached:
                pass
    finally:
        handle.remove()
    return {"feat": torch.cat(out), "index": grid,
            "temb": time_embedding(model.unet, times - 1), "hemb": model.cond(hs, len(hs)),
            "label": teacher["labels"][grid[:, 0], grid[:, 2], grid[:, 1]].long()}


def refit_policy(args: argparse.Namespace, q_table: tuple[tuple[float, float], ...],
                 trainer_cls: type, teacher: dict[str, torch.Tensor] | None = None
                 ) -> tuple[BADiff, dict[str, float]]:
    """Stage ``policy``: the stop policy fitted afresh on the exported model's own features.

    Fine-tuning trains the policy on the plain DDPM's runs through the moving U-Net, but
    inference runs the exported EMA of it, on its own conditioned trajectories. Here the
    teacher is the exported model itself (``teacher_data(own=...)``: its own 100-step runs,
    each at one budget, labelled against its own full-step output, Eq. 12), the U-Net and
    e(H) are frozen, their features computed once (``policy_features``), and a freshly
    initialised policy (seeded) is fitted to the labels for ``--policy-steps`` steps
    (Adam 1e-3, batch 256); the fine-tune's policy is discarded."""
    name = weights_name(args.variant)
    model = BADiff.load(args.export, name, ldm=getattr(args, "ldm", None)).eval()
    for prm in model.parameters():
        prm.requires_grad_(False)
    t0 = time.time()
    teacher = teacher if teacher is not None else teacher_data(args, q_table, own=model)
    data = policy_features(model, teacher)
    print(f"[badiff_policy] features of {data['feat'].shape[0]} teacher states, "
          f"{time.time() - t0:.0f}s", flush=True)
    torch.manual_seed(args.seed + 5)
    policy = model.policy = StopPolicy(*model.policy.dims)
    opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
    batch = max(args.batch or 256, 2)
    idx = data["index"]

    def step_fn(step: int, rng: np.random.Generator) -> dict[str, float]:
        b = torch.from_numpy(rng.integers(0, idx.shape[0], batch))
        logits = policy(data["feat"][b], data["temb"][idx[b, 1]], data["hemb"][idx[b, 2]])
        loss = F.cross_entropy(logits, data["label"][b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        acc = (logits.argmax(1) == data["label"][b]).float().mean().item()
        return {"stop": loss.item(), "stop_acc": acc}

    steps = int(getattr(args, "policy_steps", None) or POLICY_STEPS)
    logs = trainer_cls(args.out, f"policy_{args.variant}", steps, args.resume,
                       args.seed).run({"policy": policy}, opt, NoSched(), step_fn,
                                      args.ckpt_every)
    lab, run_h = teacher["labels"], teacher.get("run_h")
    stop_at = {}  # the labels' mean stop step per budget (first step labelled "stop")
    for k, h in enumerate(teacher["h"].tolist()):
        rows = lab[:, k] if run_h is None else lab[run_h == k, k]
        if rows.shape[0]:
            stop_at[f"{h:g}"] = round(float((1 - rows).sum(1).mean()), 2)
    model.cfg.training["policy_refit"] = {
        "teacher": "the exported model's own runs" if run_h is not None else "given",
        "runs": int(lab.shape[0]), "label_mean_stop_step": stop_at, "steps": steps,
        "batch": batch, "lr": 1e-3, "wall_s": round(time.time() - t0, 1),
        "final_losses": {k: round(v, 5) for k, v in logs.items()}}
    return model.eval(), logs


def grad_ratio(params: list[torch.Tensor], base: torch.Tensor, extra: torch.Tensor) -> float:
    """||grad extra|| / ||grad base|| over ``params`` (both graphs kept for the real step):
    how much the weighted hinge pulls against L_simple (issue 16: 6-1700x before)."""
    def norm(loss: torch.Tensor) -> float:
        if not loss.requires_grad:
            return 0.0
        gs = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        return math.sqrt(sum(float(g.pow(2).sum()) for g in gs if g is not None))

    b = norm(base)
    return norm(extra) / b if b > 0 else math.nan


def main_badiff(args: argparse.Namespace, trainer_cls: type) -> Path:
    args.out.mkdir(parents=True, exist_ok=True)
    images = getattr(args, "images", None)
    sampler = (CropSampler.from_folder(images, min_side=max(96, crop_size(args)))
               if images is not None else CropSampler())
    stages = STAGES if args.stage == "all" else (args.stage,)
    record: dict[str, Any] = {}
    rec_path = args.out / "record.json"
    if rec_path.is_file():
        record = json.loads(rec_path.read_text())
    phi = None
    if "phi" in stages:
        phi, logs = train_phi(args, sampler, trainer_cls)
        record["phi"] = {"steps": args.phi_steps, **{k: round(v, 4) for k, v in logs.items()}}
    if "lic" in stages:
        t0 = time.time()
        bank = build_lic_bank(args, sampler)
        record["lic"] = {"crops": int(bank["bpp"].numel()), "wall_s": round(time.time() - t0, 1),
                         "delta_op": bank["table"].tolist(), "q_op": bank["q_op"].tolist()}
    if "labels" in stages:
        t0 = time.time()
        data = teacher_data(args, q_op_of(build_lic_bank(args, sampler)))
        record["labels"] = {"runs": int(data["states"].shape[0]), "steps": N_FULL,
                            "budgets": list(LABEL_H), "wall_s": round(time.time() - t0, 1),
                            "mean_stop_step": {f"{h:g}": float(
                                (1 - data["labels"][:, k]).sum(1).mean())
                                for k, h in enumerate(LABEL_H)}}
    rec_path.write_text(json.dumps(record, indent=2) + "\n")
    out = args.out
    if "finetune" in stages:
        phi = phi or load_phi(args)
        bank = build_lic_bank(args, sampler)
        teacher = teacher_data(args, q_op_of(bank))
        model, logs = finetune(args, sampler, phi, bank, teacher, trainer_cls)
        model.cfg.training = {
            "variant": args.variant, "steps": args.steps, "batch": args.batch or 16,
            "lr": args.lr, "embed_lr": getattr(args, "embed_lr", None) or args.lr,
            "ema": args.ema,
            "init": (f"plain latent diffusion model ({args.ldm})"
                     if getattr(args, "ldm", None) is not None
                     else "plain DDPM (weights/ddpm.safetensors)"),
            "data": (f"crops of {images}" if images is not None
                     else "scikit-image photograph crops") + f" {crop_size(args)}px",
            "lambda": {"ent": args.lambda_ent if args.variant != "nohinge" else 0.0,
                       "cal": LAMBDA_CAL if args.variant != "nocal" else 0.0,
                       "stop": LAMBDA_STOP},
            "final_losses_ema": {k: round(v, 5) for k, v in logs.items()},
            "stages": record}
        name = weights_name(args.variant)
        out = model.save(args.export, name)
        record[f"finetune_{args.variant}"] = model.cfg.training["final_losses_ema"]
        rec_path.write_text(json.dumps(record, indent=2) + "\n")
    if "policy" in stages:
        model, _ = refit_policy(args, q_op_of(build_lic_bank(args, sampler)), trainer_cls)
        name = weights_name(args.variant)
        out = model.save(args.export, name)
        record[f"policy_{args.variant}"] = model.cfg.training["policy_refit"]
        rec_path.write_text(json.dumps(record, indent=2) + "\n")
    return out
