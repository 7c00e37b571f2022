"""Training GIC (``python -m diffstream.training gic [--stage ae|entropy|reverse|all]``).

Stages (paper 003, §3.3 and §4.1, scaled down to a 2-core CPU):

1. ``ae``: the autoencoder that replaces the paper's pretrained VAE, trained jointly with
   the hyperprior (MSE + ``--rate-weight`` x bpp, ``ae_loss``) on random 64x64 crops of the
   scikit-image photographs with latent-noise augmentation, then frozen; its latent is
   normalised per channel. ``--rate-weight 0`` trains the autoencoder alone (MSE).
2. ``entropy``: the rate-variable hyperprior, Eq. 14 with a random lambda (hence q) per
   sample; the rate is the likelihoods' -log2, summed.
3. ``reverse``: D_theta with the L2 loss of Eq. 15 toward y0 from
   y_bar_q = E_phi(y0, q) = mu + q * round((y0 - mu) / q) (mean-shifted, as the bitstream
   codes it; mu from the trained hyperprior on the rounded z), q ~ U(q_train_min, q_hi),
   using the simulated quantization y0 + U(-1/2, 1/2) * q when q < q_lo (outside the
   entropy model's support, §3.1).

Entropy and reverse start from the weights in ``--export`` when they hold those stages
(a fine-tune; the shipped format-2 weights were made that way from format 1's, see
docs/gic.md), else from scratch.

Stages 2 and 3 train on a bank of latents of random 64x64 crops (encoded once by the frozen
autoencoder, cached in the output folder). After each stage the shipped weights
(safetensors + JSON) are exported to ``--export`` (default: diffstream/codecs/gic/weights).
The loop itself (checkpoints, resume) is ``diffstream.training.loop``.

On a pretrained VAE (``--vae DIR``, the paper's setup; usually with ``--images DIR``):
stage 1 trains nothing: the VAE stays frozen and ``ae`` measures the per-channel mean and
std of its posterior-mean latent over 16 x 64 random crops (``train_vae_stats``); stages 2
and 3 then train on a bank of latents of random (16 x factor)^2 crops (16 x 16 latents,
as for our own autoencoder). The VAE encodes on ``--device`` (CUDA when present); the
small entropy model and reverse network train on the CPU, as for the shipped weights. The
weights (without the VAE) go to ``--export``, by default ``--out``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from diffstream.codecs.gic.model import STAGES, GicConfig, GicModel, _persist
from diffstream.training.crops import CropSampler
from diffstream.training.loop import Trainer, cosine_schedule, step_rng

DEFAULT_STEPS = {"ae": 4000, "entropy": 2000, "reverse": 2000}
BANK_SIZE = 6000
AE_NOISE_Q = (0.03, 1.0)  # latent noise scales seen by the AE decoder (units of latent std)
RATE_WEIGHT = 2e-4  # bpp weight in the joint autoencoder loss (MSE in [-1, 1] units)


def q_to_lambda(q: torch.Tensor) -> torch.Tensor:
    """lambda for which q is the high-rate R-D optimal step of Eq. 14 (bits, sum of squares).

    R(q) ~ h - log2 q per element and D = q^2 / 12, so d(R + lambda D)/dq = 0 gives
    lambda = 6 / (ln 2 q^2). With the autoencoder frozen, ||y_hat - y||^2 has no gradient
    with respect to the entropy model, so lambda only selects q; we sample q log-uniformly
    over the model's range (equivalently lambda log-uniformly over the mapped range).
    """
    return 6.0 / (math.log(2.0) * q ** 2)


# --------------------------------------------------------------------------- stages
def ae_loss(ae: nn.Module, hyper: nn.Module | None, x: torch.Tensor, q: torch.Tensor,
            rate_weight: float) -> tuple[torch.Tensor, dict[str, float]]:
    """The joint autoencoder loss of ``train_ae``: MSE over the batch + rate_weight * bpp.

    The first len(q) crops decode their latent through the quantisation proxy at scale q
    (the hyperprior's y_n + U * q when ``hyper`` is given, and its bits count; plain
    uniform noise otherwise), the rest decode the clean latent. The latent is normalised by
    detached batch statistics, so noise and rate do not change when the encoder rescales y.
    """
    half = q.shape[0]
    y = ae.encoder(x)
    mean = y.detach().mean(dim=(0, 2, 3), keepdim=True)
    std = y.detach().std(dim=(0, 2, 3), keepdim=True)
    yn = (y - mean) / std
    u = torch.rand_like(yn[:half]) - 0.5
    qv = q.view(-1, 1, 1, 1)
    # y_n + U q is the proxy mu + (r + U) q with mu cancelled: formed directly, so a large
    # hyperprior mean early in training cannot cost the decoder float32 precision
    noisy = yn[:half] + u * qv
    bpp = torch.zeros(())
    if hyper is not None:  # its likelihoods under the same U (its y_hat is not used)
        out = hyper(yn[:half], q, noise=u)
        bits = (-torch.log2(out["y_likelihoods"]).sum(dim=(1, 2, 3))
                - torch.log2(out["z_likelihoods"]).sum(dim=(1, 2, 3)))
        bpp = (bits / (x.shape[2] * x.shape[3])).mean()
    out_img = ae.decoder(torch.cat([noisy, yn[half:]]) * std + mean)
    mse = F.mse_loss(out_img, x)
    with torch.no_grad():
        clean = F.mse_loss(out_img[half:], x[half:]).item() if half < x.shape[0] else 0.0
    parts = {"mse": mse.item(), "clean_psnr": 10 * math.log10(4.0 / max(clean, 1e-10)),
             "bpp": float(bpp.detach())}
    return mse + rate_weight * bpp, parts


def train_ae(model: GicModel, args: argparse.Namespace, sampler: CropSampler) -> dict[str, float]:
    """Autoencoder and hyperprior trained jointly: MSE plus a rate term (issue 14, item 3).

    The paper's VAE is KL-regularised, so its decoder is trained on noisy latents. We do the
    analogue for the corruption GIC applies: for half of each batch the decoder sees the
    normalised latent y_n = (y - m_c) / s_c quantised by the hyperprior's training proxy,
    mu + (r + U(-1/2, 1/2)) * q = y_n + U * q, with q log-uniform in [AE_NOISE_Q]; the other
    half decodes the clean latent. m_c, s_c are the per-channel batch mean and std, detached,
    so the encoder cannot out-scale the noise or the rate (both are invariant to a rescaled
    y). The loss is MSE + ``rate_weight`` * bpp of the noisy half under the hyperprior
    (Eq. 14's rate): the encoder learns a latent that is cheap at coarse q, and the
    hyperprior starts the ``entropy`` stage already matched to it. ``rate_weight`` 0 is the
    format-2 recipe (MSE only; the hyperprior is then trained in the entropy stage alone).
    Deviation: the paper trains no autoencoder (its VAE is pretrained and frozen); ours is
    trained here and then frozen like the paper's.
    """
    ae, hyper = model.ae.train(), model.hyper.train()
    joint = args.rate_weight > 0
    groups = [{"params": list(ae.parameters()), "lr": 2e-3}]
    if joint:  # the hyperprior at the entropy stage's learning rate
        groups.append({"params": [p for n, p in hyper.named_parameters()
                                  if not n.endswith("quantiles")], "lr": 1e-3,
                       "weight_decay": 0.0})
    params = [p for g in groups for p in g["params"]]  # gradient-clipped (not the quantiles)
    if joint:
        groups.append({"params": [p for n, p in hyper.named_parameters()
                                  if n.endswith("quantiles")], "lr": 1e-3, "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, weight_decay=1e-4, betas=(0.9, 0.99))
    sched = cosine_schedule(opt, args.steps)
    lo, hi = math.log(AE_NOISE_Q[0]), math.log(AE_NOISE_Q[1])
    crop = args.ae_crop

    def step_fn(step: int, rng: np.random.Generator) -> dict[str, float]:
        n = args.batch or 16
        x = sampler.batch(n, crop, rng)
        q = torch.from_numpy(np.exp(rng.uniform(lo, hi, n // 2))).float()
        torch.manual_seed(int(rng.integers(2**62)))  # the proxy noise: a function of the step
        loss, parts = ae_loss(ae, hyper if joint else None, x, q, args.rate_weight)
        aux_loss = hyper.entropy_bottleneck.loss() if joint else torch.zeros(())
        opt.zero_grad(set_to_none=True)
        (loss + aux_loss).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return parts

    modules = {"ae": ae, "hyper": hyper} if joint else {"ae": ae}
    logs = Trainer(args.out, "ae", args.steps, args.resume, args.seed).run(
        modules, opt, sched, step_fn, args.ckpt_every)
    ae.eval()
    hyper.eval()
    with torch.no_grad():
        rng = step_rng(args.seed + 1, 0)
        ys = torch.cat([ae.encoder(sampler.batch(64, 64, rng))
                        for _ in range(args.stat_batches)])
        ae.latent_mean.copy_(ys.mean(dim=(0, 2, 3)))
        ae.latent_std.copy_(ys.std(dim=(0, 2, 3)).clamp_min(1e-3))
        x = sampler.batch(64, 64, rng)
        logs["clean_psnr"] = 10 * math.log10(4.0 / F.mse_loss(ae.decode(ae.encode(x)), x).item())
        if joint:
            hyper.entropy_bottleneck.update(force=True, update_quantiles=True)
    logs["rate_weight"] = float(args.rate_weight)
    return logs


@torch.no_grad()
def train_vae_stats(model: GicModel, args: argparse.Namespace, sampler: CropSampler
                    ) -> dict[str, float]:
    """Stage ``ae`` on a pretrained VAE: no training, the latent's per-channel statistics
    (posterior mean over ``--stat-batches`` x 64 random crops of 16 x factor pixels)."""
    ae = model.ae
    size = 16 * model.factor
    rng = step_rng(args.seed + 1, 0)
    dev = _encode_device(args)
    ae.to(dev)
    ys = torch.cat([ae.encode_raw(sampler.batch(64, size, rng).to(dev)).cpu()
                    for _ in range(args.stat_batches)])
    ae.latent_mean.copy_(ys.mean(dim=(0, 2, 3)).to(dev))
    ae.latent_std.copy_(ys.std(dim=(0, 2, 3)).clamp_min(1e-3).to(dev))
    x = sampler.batch(16, size, rng).to(dev)
    rec = ae.decode(ae.encode(x)).clamp(-1, 1)
    ae.cpu()
    return {"crops": float(ys.shape[0]),
            "clean_psnr": 10 * math.log10(4.0 / max(F.mse_loss(rec.cpu(), x.cpu()).item(),
                                                    1e-10)),
            "latent_std_mean": float(ys.std(dim=(0, 2, 3)).mean())}


def _encode_device(args: argparse.Namespace) -> str:
    dev = getattr(args, "device", None)
    return dev or ("cuda" if torch.cuda.is_available() else "cpu")


def latent_bank(model: GicModel, args: argparse.Namespace, sampler: CropSampler) -> torch.Tensor:
    """Normalised latents of BANK_SIZE random crops of 16 x factor pixels (64x64 for a 4x
    autoencoder: 16 x 16 latents), cached next to the checkpoints."""
    path = args.out / "latent_bank.pt"
    size = 16 * model.factor
    if path.is_file():
        bank = torch.load(path, map_location="cpu", weights_only=True)
        if (bank.shape[1] == model.cfg.latent_channels and bank.shape[0] >= args.bank
                and bank.shape[2] == size // model.factor):
            return bank
    rng = step_rng(args.seed + 2, 0)
    chunks = []
    dev = _encode_device(args) if model.cfg.autoencoder == "diffusers" else "cpu"
    model.ae.to(dev)
    with torch.no_grad():
        for _ in range(max(1, math.ceil(args.bank / 100))):
            chunks.append(model.ae.encode(sampler.batch(100, size, rng).to(dev)).cpu())
    model.ae.cpu()
    bank = torch.cat(chunks)[:max(args.bank, 1)].contiguous()
    torch.save(bank, path)
    return bank


def train_entropy(model: GicModel, args: argparse.Namespace, bank: torch.Tensor
                  ) -> dict[str, float]:
    """Eq. 14 with one random q per sample; rate in bits per image pixel."""
    hyper = model.hyper.train()
    cfg = model.cfg
    main = [p for n, p in hyper.named_parameters() if not n.endswith("quantiles")]
    aux = [p for n, p in hyper.named_parameters() if n.endswith("quantiles")]
    opt = torch.optim.AdamW([{"params": main, "lr": 1e-3}, {"params": aux, "lr": 1e-3}],
                            weight_decay=0.0, betas=(0.9, 0.95))
    sched = cosine_schedule(opt, args.steps)
    lo, hi = math.log(cfg.q_lo), math.log(cfg.q_hi)

    def step_fn(step: int, rng: np.random.Generator) -> dict[str, float]:
        n = args.batch or 32
        idx = torch.from_numpy(rng.integers(0, bank.shape[0], n))
        y = bank[idx]
        q = torch.from_numpy(np.exp(rng.uniform(lo, hi, n))).float()
        out = hyper(y, q)
        pixels = y.shape[2] * y.shape[3] * model.factor ** 2  # image pixels per sample
        bits_y = -torch.log2(out["y_likelihoods"]).sum(dim=(1, 2, 3))
        bits_z = -torch.log2(out["z_likelihoods"]).sum(dim=(1, 2, 3))
        lam = q_to_lambda(q)
        dist = ((out["y_hat"] - y) ** 2).sum(dim=(1, 2, 3))  # no gradient wrt phi (frozen AE)
        loss = ((bits_y + bits_z + lam * dist) / pixels).mean()
        aux_loss = hyper.entropy_bottleneck.loss()
        opt.zero_grad(set_to_none=True)
        (loss + aux_loss).backward()
        torch.nn.utils.clip_grad_norm_(main, 1.0)
        opt.step()
        return {"bpp": float(((bits_y + bits_z) / pixels).mean().detach()),
                "bpp_z": float((bits_z / pixels).mean().detach()), "aux": aux_loss.item()}

    logs = Trainer(args.out, "entropy", args.steps, args.resume, args.seed).run(
        {"hyper": hyper}, opt, sched, step_fn, args.ckpt_every)
    hyper.eval()
    with torch.no_grad():
        hyper.entropy_bottleneck.update(force=True, update_quantiles=True)
    return logs


def corrupt(y0: torch.Tensor, mu: torch.Tensor, q: torch.Tensor, q_lo: float,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """y_bar_q = E_phi(y0, q) = mu + q round((y0 - mu) / q) (mean-shifted Eq. 5) for
    q >= q_lo, else y0 + U(-1/2, 1/2) q (§3.1)."""
    qv = q.view(-1, 1, 1, 1)
    real = mu + torch.round((y0 - mu) / qv) * qv
    noise = (torch.rand(y0.shape, generator=generator) - 0.5).to(y0) * qv
    return torch.where(qv >= q_lo, real, y0 + noise)


@torch.no_grad()
def mean_bank(model: GicModel, bank: torch.Tensor, chunk: int = 500) -> torch.Tensor:
    """The hyperprior's mu for every latent of the bank (the decoder's mean for it)."""
    hyper = model.hyper.eval()
    return torch.cat([hyper.means(bank[i:i + chunk]) for i in range(0, bank.shape[0], chunk)])


def sample_q_reverse(n: int, cfg: GicConfig, rng: np.random.Generator) -> torch.Tensor:
    """q for reverse-network training: half U(q_train_min, q_hi) (the paper's eps_q), half
    log-uniform on the same interval, so the high-rate end where most frames are coded is
    seen as often as the low-rate end (a documented deviation)."""
    uni = rng.uniform(cfg.q_train_min, cfg.q_hi, n)
    logu = np.exp(rng.uniform(math.log(cfg.q_train_min), math.log(cfg.q_hi), n))
    pick = rng.random(n) < 0.5
    return torch.from_numpy(np.where(pick, uni, logu)).float()


def train_reverse(model: GicModel, args: argparse.Namespace, bank: torch.Tensor
                  ) -> dict[str, float]:
    """Eq. 15: || y0 - D_theta(E_phi(y0, q), q) ||^2."""
    if "entropy" not in model.cfg.stages:
        raise SystemExit("the reverse stage needs the trained entropy model (its means "
                         "enter y_bar): run `python -m diffstream.training gic --stage "
                         "entropy` first")
    net = model.reverse.train()
    cfg = model.cfg
    opt = torch.optim.AdamW(net.parameters(), lr=4e-4, weight_decay=0.02, betas=(0.9, 0.95))
    sched = cosine_schedule(opt, args.steps)
    mus = mean_bank(model, bank)

    def step_fn(step: int, rng: np.random.Generator) -> dict[str, float]:
        n = args.batch or 32
        idx = torch.from_numpy(rng.integers(0, bank.shape[0], n))
        y0 = bank[idx]
        q = sample_q_reverse(n, cfg, rng)
        g = torch.Generator().manual_seed(int(rng.integers(2**62)))
        y_bar = corrupt(y0, mus[idx], q, cfg.q_lo, g)
        loss = F.mse_loss(net(y_bar, q), y0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            base = F.mse_loss(y_bar, y0)
        return {"l2": loss.item(), "l2_input": base.item()}

    logs = Trainer(args.out, "reverse", args.steps, args.resume, args.seed).run(
        {"reverse": net}, opt, sched, step_fn, args.ckpt_every)
    net.eval()
    return logs


def _load_for(stage: str, args: argparse.Namespace) -> GicModel:
    """A fresh model; for the entropy and reverse stages, with the trained autoencoder (or
    the pretrained VAE and its measured statistics)."""
    vae = getattr(args, "vae", None)
    if stage == "ae":
        if vae is None:
            return GicModel(GicConfig(latent_channels=args.latent_channels))
        from diffstream.backbones.latent import load_vae
        from diffstream.backbones.pretrained import find_vae
        from diffstream.codecs.gic.vae import vae_record

        comp = find_vae(vae)
        cfg = GicConfig(autoencoder="diffusers", latent_channels=vae_record(comp)[
            "latent_channels"], vae=vae_record(comp))
        return GicModel(cfg, load_vae(comp))
    return GicModel.load(args.export, require=("ae",), vae=vae)


def export_stage(model: GicModel, stage: str, export: Path, logs: dict[str, float]) -> Path:
    """Merge this stage's weights and notes into the export folder (other stages kept).

    Re-reads the folder at the end of the stage, so stages trained in parallel processes
    (entropy and reverse only need the autoencoder) do not overwrite each other.
    """
    note = {"steps": model.cfg.training.get("_steps", 0),
            **{k: round(v, 5) for k, v in logs.items()}}
    if stage != "ae" and (export / "gic.json").is_file():
        vae = model.ae.vae if model.cfg.autoencoder == "diffusers" else None
        base = GicModel.load(export, require=(), vae=vae)
        base_modules = {"ae": base.ae, "entropy": base.hyper, "reverse": base.reverse}
        own = {"ae": model.ae, "entropy": model.hyper, "reverse": model.reverse}[stage]
        keep = {k: v for k, v in own.state_dict().items() if _persist(k)}  # not "ae" here
        base_modules[stage].load_state_dict(keep, strict=False)
        out = base
    else:
        out = model
        out.cfg.stages, out.cfg.training = [], {}
    out.cfg.training.pop("_steps", None)
    out.cfg.stages = [s for s in STAGES if s in {*out.cfg.stages, stage}]
    out.cfg.training[stage] = note
    return out.save(export)
