"""Training CLI: ``python -m diffstream.training gic|ddpm|badiff ...``.

One entry point for the three trainable models; each model's training lives with it:
GIC in ``diffstream.codecs.gic.train``, the DDPM backbone in ``diffstream.backbones.train``,
BADiff in ``diffstream.codecs.badiff.train``. Each exports its shipped weights into its own
package's ``weights/`` folder unless ``--export`` says otherwise.

On pretrained diffusers models from local folders (no downloads; docs/gic.md and
docs/badiff.md, "Pretrained models from local folders"):

    python -m diffstream.training gic --vae DIR --images DIR [--steps N] --out OUT
        # GIC's entropy model + reverse network on a frozen VAE; weights -> OUT
    python -m diffstream.training badiff --ldm LDM_DIR [--size 32] --out OUT
        # BADiff on an unconditional latent diffusion model; weights -> OUT

(The issue that asked for these names the old module path ``diffstream.models.train``;
the entry point is ``diffstream.training``.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from diffstream.codecs.gic.model import STAGES
from diffstream.codecs.gic.train import (
    BANK_SIZE,
    DEFAULT_STEPS,
    RATE_WEIGHT,
    _load_for,
    export_stage,
    latent_bank,
    train_ae,
    train_entropy,
    train_reverse,
    train_vae_stats,
)
from diffstream.training.crops import CropSampler
from diffstream.training.loop import Trainer

# where each model's shipped weights live (the --export default)
_PKG = Path(__file__).resolve().parent.parent
EXPORT_DIRS = {"gic": _PKG / "codecs" / "gic" / "weights",
               "ddpm": _PKG / "backbones" / "weights",
               "badiff": _PKG / "codecs" / "badiff" / "weights"}


def main(argv: list[str] | None = None) -> int:
    # Subnormal floats (tiny Adam moments and activations late in training) run 2-3x
    # slower on x86: the GIC autoencoder's steps went from 0.53 to 1.5 s without this. The
    # flag is process-wide, so it is switched back off for whoever called us (a test run
    # under hypothesis refuses to run in flush-to-zero mode).
    torch.set_flush_denormal(True)
    try:
        return _main(argv)
    finally:
        torch.set_flush_denormal(False)


def _main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m diffstream.training")
    p.add_argument("model", choices=["gic", "ddpm", "badiff"])
    p.add_argument("--stage", choices=[*STAGES, "phi", "lic", "labels", "finetune", "policy",
                                       "all"],
                   default="all",
                   help="gic: ae|entropy|reverse; badiff: phi|lic|labels|finetune|policy")
    p.add_argument("--steps", type=int, default=None, help="steps per stage (default per stage)")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--out", type=Path, default=Path("runs/gic_train"),
                   help="checkpoints and the latent bank")
    p.add_argument("--export", type=Path, default=None,
                   help="where the shipped safetensors + JSON are written (default: the "
                        "model's own weights/ folder in the package)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--ckpt-every", type=int, default=200)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: on a shared 2-core machine 2 threads ran 10x slower)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bank", type=int, default=BANK_SIZE,
                   help="64x64 crops in the latent bank of the entropy/reverse stages")
    p.add_argument("--stat-batches", type=int, default=16,
                   help="batches of 64 crops for the latent normalisation statistics")
    p.add_argument("--latent-channels", type=int, default=12,
                   help="gic: channels of the autoencoder latent (stage ae; the shipped "
                        "weights have 12)")
    p.add_argument("--ae-crop", type=int, default=64, help="gic: training crop side, stage ae")
    p.add_argument("--rate-weight", type=float, default=RATE_WEIGHT,
                   help="gic: weight of the hyperprior rate (bpp) in the autoencoder's loss "
                        "(stage ae trains both jointly; 0: MSE only)")
    p.add_argument("--size", type=int, default=32,
                   help="ddpm: crop / model size; badiff --ldm: image size of the crops")
    p.add_argument("--lr", type=float, default=2e-4, help="ddpm: Adam learning rate")
    p.add_argument("--ema", type=float, default=0.999, help="ddpm: weight EMA decay")
    p.add_argument("--variant", choices=["full", "nocond", "nohinge", "nocal"], default="full",
                   help="badiff: the full model or a Table-3 ablation")
    p.add_argument("--phi-steps", type=int, default=2000, help="badiff: H_phi warm-up steps")
    p.add_argument("--lambda-ent", type=float, default=0.1,
                   help="badiff: hinge weight (App. G's 0.1; the relative, alpha-bar-weighted "
                        "hinge on LIC's rate trains at it: docs/badiff.md)")
    p.add_argument("--policy-steps", type=int, default=None,
                   help="badiff: steps of the stop policy's refit on the exported model "
                        "(stage policy; default 3000)")
    p.add_argument("--policy-runs", type=int, default=None,
                   help="badiff: the fine-tuned model's own teacher runs for stage policy "
                        "(default 144: 16 per labelled budget)")
    p.add_argument("--embed-lr", type=float, default=None,
                   help="badiff: learning rate of the entropy embedding e(H) (default --lr)")
    p.add_argument("--lic-bank", type=int, default=384, help="badiff: LIC calibration crops")
    p.add_argument("--teacher-runs", type=int, default=48, help="badiff: teacher sampler runs")
    p.add_argument("--ddpm-weights", type=Path, default=None,
                   help="badiff: folder with ddpm.safetensors (default: shipped weights)")
    p.add_argument("--vae", type=Path, default=None,
                   help="gic: a pretrained diffusers VAE folder (AutoencoderKL/VQModel, or a "
                        "pipeline with vae/): train the entropy model and reverse network "
                        "in its latent; --export defaults to --out")
    p.add_argument("--images", type=Path, default=None,
                   help="gic/badiff: train on crops of the images in this folder (default: "
                        "the scikit-image photographs)")
    p.add_argument("--ldm", type=Path, default=None,
                   help="badiff: an unconditional latent diffusion pipeline folder (unet/, "
                        "scheduler/, vae/ or vqvae/); --export defaults to --out")
    p.add_argument("--device", default=None,
                   help="gic --vae: where the VAE encodes crops (default: CUDA when present)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.vae is not None and args.model != "gic":
        p.error("--vae is a gic option (badiff takes --ldm)")
    if args.ldm is not None and args.model != "badiff":
        p.error("--ldm is a badiff option")
    if args.export is None:
        pretrained = args.vae is not None or args.ldm is not None
        if pretrained and args.model == "badiff" and args.out == Path("runs/gic_train"):
            args.out = Path("runs/badiff_ldm")
        args.export = args.out if pretrained else EXPORT_DIRS[args.model]
    torch.manual_seed(args.seed)
    if args.model == "ddpm":
        if args.out == Path("runs/gic_train"):
            args.out = Path("runs/ddpm_train")
        args.out.mkdir(parents=True, exist_ok=True)
        from diffstream.backbones.train import DEFAULT_DDPM_STEPS, train_ddpm

        args.steps = args.steps or DEFAULT_DDPM_STEPS
        path = train_ddpm(args, CropSampler())
        print(f"[ddpm] done ({args.steps} steps) -> {path}", flush=True)
        return 0
    if args.model == "badiff":
        from diffstream.codecs.badiff.train import main_badiff

        if args.out == Path("runs/gic_train"):
            args.out = Path("runs/badiff_train")
        args.steps = args.steps or 1500  # the shipped fine-tune (docs/badiff.md)
        if args.lr == 2e-4:
            args.lr = 1e-4  # App. E
        path = main_badiff(args, Trainer)
        print(f"[badiff] done -> {path}", flush=True)
        return 0
    if args.stage not in (*STAGES, "all"):
        p.error(f"--stage {args.stage} is a badiff stage")
    args.out.mkdir(parents=True, exist_ok=True)
    stages = STAGES if args.stage == "all" else (args.stage,)
    per_stage_steps = args.steps
    sampler = _sampler(args)
    for stage in stages:
        args.steps = per_stage_steps or DEFAULT_STEPS[stage]
        model = _load_for(stage, args)
        if stage == "ae":
            logs = (train_vae_stats if args.vae is not None else train_ae)(model, args, sampler)
        else:
            bank = latent_bank(model, args, sampler)
            logs = (train_entropy if stage == "entropy" else train_reverse)(model, args, bank)
        model.cfg.training["_steps"] = 0 if stage == "ae" and args.vae else args.steps
        path = export_stage(model, stage, args.export, logs)
        if stage == "ae" and args.vae is None and args.rate_weight > 0:
            # joint training: the hyperprior is trained too; the entropy stage fine-tunes it
            export_stage(model, "entropy", args.export, {"joint_with_ae": 1.0,
                                                         "bpp": logs.get("bpp", 0.0)})
        print(f"[{stage}] done ({args.steps} steps): {logs} -> {path}", flush=True)
    return 0


def _sampler(args: argparse.Namespace) -> CropSampler:
    """Training crops: ``--images DIR`` or the scikit-image photographs. The smallest side
    kept must fit the largest crop (the latent bank's 16 x factor pixels)."""
    if args.images is None:
        return CropSampler()
    return CropSampler.from_folder(args.images, min_side=_min_side(args))


def _min_side(args: argparse.Namespace) -> int:
    if args.vae is None:
        return max(96, args.size)
    from diffstream.backbones.pretrained import find_vae, vae_factor

    return max(64, 16 * vae_factor(find_vae(args.vae)))


if __name__ == "__main__":
    raise SystemExit(main())
