"""Regenerate DiffC's calibration: Algorithm 3's schedule, the App. A.5 KL table and the
chunk models, from crops of scikit-image photographs (never Kodak: that is evaluation data).

    python -m diffstream.codecs.diffc.calibrate [--images 24] [--size 32] [--t-final 10]
        [--weights DIR | --diffusers FOLDER | --model DIR [--null-embedding FILE]]
        [--run-images 12] [--out diffstream/codecs/diffc/weights/diffc_calibration.json]

``--model DIR`` calibrates any diffusers pipeline folder, a latent one (vae/ or vqvae/)
included: the prediction errors, the KL table (per latent value) and the index statistics
are then those of the latent; the crops are ``--size`` pixels (use the model's resolution,
e.g. 256 or 512) and the output defaults to ``DIR/diffc_calibration.json``, where the codec
finds it.

For every calibration crop x_0 and every t in 1..T it draws x_t ~ q(x_t | x_0) (the paper's
"each x_i we send is statistically indistinguishable from a sample of q(x_i | x_0)", so
independent draws per t give the same statistics as a chain) and runs the model once:
e_t = |x_0 - x0_hat(x_t)|^2. Then KL(i -> j) = coef(i, j) e_i for every j < i in closed form
(``diffusion.kl_coef_matrix``), the cost C(i, j) = mean over crops of I + log2 I + 5 bits,
and the schedule is the shortest path T -> t_final (``schedule.shortest_path``). The KL
table is the mean per-step KL along that path, per dimension. The index code's statistics
(bucket histograms per chunk size and chunking mode, chunk-count symbols) come from real
encodes of calibration crops by the codec itself.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from diffstream.backbones.ddpm import DDPM, WEIGHTS_DIR
from diffstream.backbones.latent import load_backbone
from diffstream.codecs.diffc.diffusion import kl_coef_matrix
from diffstream.codecs.diffc.schedule import (
    CALIBRATION_FILE,
    RATIO_SYMBOLS,
    Calibration,
    ChunkModel,
    bucket_histogram,
    pfr_cost_bits,
    shortest_path,
)

CHUNK_BITS = (8, 10, 12, 14, 16)
DEFAULT_BITS = 12  # the chunk-count symbol histogram is taken at the codec's default
CHUNK_SLACK_BITS = 3.0  # planned chunk KL = chunk_bits - 3 (see docs/diffc.md, "chunks")
SCHEDULE_ID = 1
# image chunking's KL per chunk = chunk_bits + IMAGE_KL_OFFSET: chunks loaded up to K's
# capacity and beyond; measured on 64x64 Kodak crops, this buys more PSNR per bit than
# chunks at chunk_bits - 3 (docs/diffc.md, "Measured")
IMAGE_KL_OFFSET = 0.0


def load(args: argparse.Namespace) -> tuple[DDPM, dict[str, str]]:
    if args.model:
        src = {"source": f"model:{args.model}"}
        if args.null_embedding:
            src["null_embedding"] = str(args.null_embedding)
        return load_backbone(args.model, args.null_embedding, args.device), src
    if args.diffusers:
        return DDPM.from_diffusers(args.diffusers), {"source": f"diffusers:{args.diffusers}"}
    d = Path(args.weights) if args.weights else WEIGHTS_DIR
    model = DDPM.load(d)
    digest = hashlib.sha256((d / "ddpm.safetensors").read_bytes()).hexdigest()[:16]
    return model, {"source": str(d / "ddpm.safetensors"), "sha256_16": digest}


@torch.no_grad()
def prediction_errors(model: DDPM, x0: torch.Tensor, batch: int, gen: torch.Generator
                      ) -> torch.Tensor:
    """e[t] = |x_0 - clip(x0_hat(x_t))|^2 for t = 1..T (index 0 unused), float64.

    ``x0`` is in the model's diffusion space (the image, or its latent)."""
    T = model.T
    dev = x0.device  # the model's device; the noise is drawn on the CPU generator
    ab = model.alpha_bar.cpu()
    e = torch.zeros(T + 1, dtype=torch.float64)
    for start in range(1, T + 1, batch):
        ts = torch.arange(start, min(start + batch, T + 1))
        a = ab[ts].float().view(-1, 1, 1, 1).to(dev)
        noise = torch.randn((len(ts), *x0.shape[1:]), generator=gen).to(dev)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        eps = model.eps(xt, ts.to(dev))
        x0_hat = model.clip_x0((xt - (1 - a).sqrt() * eps) / a.sqrt())
        e[ts] = ((x0_hat - x0) ** 2).flatten(1).sum(1).double().cpu()
    return e


def image_sizes(args: argparse.Namespace) -> tuple[int, ...]:
    """Crop sides for image chunking's statistics: the calibration size and twice it for
    the pixel DDPM (32 and 64: both supported sizes), the calibration size for a model."""
    return (args.size,) if args.model else (args.size, 2 * args.size)


def image_counts(cal: Calibration, src: dict, device: str, crops: list[np.ndarray],
                 bits_list: list[int], seed: int, samples: int) -> None:
    """``bucket_counts_image`` of every chunk size (in place). Real image-chunking encodes of
    ``crops`` (uint8, any sizes) at the default chunk size (or the first one calibrated)
    give the chunks' KLs as fractions
    of the chunk target (what image chunking makes of real content); each chunk size's
    index statistics are then 1-D PFR simulations (``bucket_histogram``) at its own target:
    real encodes at 16 bits would take minutes per crop on a CPU."""
    import tempfile

    from diffstream.codecs.diffc.codec import DiffcCodec

    for bits in bits_list:
        cal.chunk_models[bits].image_kl_bits = bits + IMAGE_KL_OFFSET
    with tempfile.TemporaryDirectory() as tmp:
        provisional = Path(tmp) / "provisional.json"
        cal.save(provisional)
        run_bits = DEFAULT_BITS if DEFAULT_BITS in bits_list else bits_list[0]
        codec = DiffcCodec(chunk_bits=run_bits, chunking="image", device=device,
                           calibration=str(provisional), **src)
        fractions = []
        for img in crops:
            codec.encode(img, 1 << 40)
            for kls in codec.last_stats.chunk_kls:
                fractions += [v / codec.chunk_kl for v in kls]
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(fractions), size=min(samples, len(fractions)), replace=False)
    for bits in bits_list:
        m = cal.chunk_models[bits]
        m.bucket_counts_image = bucket_histogram([fractions[i] * m.image_kl_bits
                                                  for i in pick], bits, seed=seed)
        print(f"[calibrate] chunk_bits {bits}: image buckets {m.bucket_counts_image}",
              flush=True)


def image_crops(n: int, seed: int, sizes: tuple[int, ...]) -> list[np.ndarray]:
    from diffstream.training.crops import CropSampler, to_uint8

    out: list[np.ndarray] = []
    for i, size in enumerate(sizes):
        out += list(to_uint8(CropSampler().batch(n, size, np.random.default_rng(seed + i))))
    return out


def real_runs(cal: Calibration, args: argparse.Namespace, crops: torch.Tensor) -> None:
    """Replace the provisional index statistics by those of real encodes (in place)."""
    import tempfile

    from diffstream.codecs.diffc.codec import DiffcCodec
    from diffstream.training.crops import to_uint8

    images = to_uint8(crops)
    if args.model:
        src = {"model": args.model, "null_embedding": args.null_embedding}
    else:
        src = {"diffusers": args.diffusers} if args.diffusers else {"weights": args.weights}
    with tempfile.TemporaryDirectory() as tmp:
        provisional = Path(tmp) / "provisional.json"
        cal.save(provisional)
        ratios = [0] * RATIO_SYMBOLS
        for bits in args.chunk_bits:
            hist = {}
            for mode in ("table", "adaptive"):
                codec = DiffcCodec(chunk_bits=bits, chunking=mode, device=args.device,
                                   calibration=str(provisional), **src)
                counts = [1] * (bits + 1)  # add-one: every bucket stays codable
                for img in images:
                    codec.encode(img, 1 << 40)
                    for step in codec.last_stats.indices:
                        for n in step:
                            counts[n.bit_length()] += 1
                    if mode == "adaptive" and bits == DEFAULT_BITS:
                        for rec in codec.last_stats.steps:
                            ratios[int(rec.ratio)] += 1
                hist[mode] = counts
            cal.chunk_models[bits] = ChunkModel(bits, cal.chunk_models[bits].kl_bits,
                                                hist["table"], hist["adaptive"])
            print(f"[calibrate] chunk_bits {bits}: buckets table {hist['table']}, "
                  f"adaptive {hist['adaptive']}", flush=True)
    # every symbol keeps >= ~1 % of the mass: other content can need other chunk counts
    total = sum(ratios)
    cal.ratio_counts = [c + max(1, total // 100) for c in ratios]
    print(f"[calibrate] chunk-count symbols {cal.ratio_counts}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--weights", help="folder with ddpm.safetensors (default: shipped)")
    src.add_argument("--diffusers", help="a local diffusers DDPM folder")
    src.add_argument("--model", help="a diffusers pipeline folder (latent: vae/ or vqvae/); "
                                     "the output defaults to MODEL/diffc_calibration.json")
    ap.add_argument("--null-embedding", default=None,
                    help="with --model: the null-prompt embedding of a conditional U-Net")
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--t-final", type=int, default=10)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk-bits", type=int, nargs="*", default=list(CHUNK_BITS))
    ap.add_argument("--chunk-samples", type=int, default=1000,
                    help="simulated PFR chunks per provisional chunk model")
    ap.add_argument("--run-images", type=int, default=12,
                    help="crops encoded by the codec itself for the index statistics")
    ap.add_argument("--out", default=None,
                    help=f"default: {CALIBRATION_FILE} (MODEL/diffc_calibration.json with "
                         "--model)")
    ap.add_argument("--image-only", action="store_true",
                    help="only (re)compute image chunking's index statistics of the "
                         "calibration at --out (existing file), from --run-images crops "
                         "per size (--size and twice it; --size only with --model)")
    ap.add_argument("--device", default=None,
                    help="with --model: where the model runs (default: CUDA when present); "
                         "the shipped pixel calibration is made on the CPU")
    args = ap.parse_args(argv)
    if args.device is None:
        args.device = "cuda" if args.model and torch.cuda.is_available() else "cpu"
    if args.out is None:
        args.out = (str(Path(args.model) / "diffc_calibration.json") if args.model
                    else str(CALIBRATION_FILE))
    torch.set_num_threads(1)
    from diffstream.training.crops import CropSampler

    src_opts = ({"model": args.model, "null_embedding": args.null_embedding} if args.model
                else {"diffusers": args.diffusers} if args.diffusers
                else {"weights": args.weights})
    if args.image_only:
        t0 = time.perf_counter()
        cal = Calibration.load(args.out)
        image_counts(cal, src_opts, args.device,
                     image_crops(args.run_images, args.seed, image_sizes(args)),
                     [b for b in args.chunk_bits if b in cal.chunk_models], args.seed,
                     4 * args.chunk_samples)
        cal.info["image_counts"] = (f"{args.run_images} crops per size {image_sizes(args)}, "
                                    f"{time.perf_counter() - t0:.0f} s: python -m "
                                    "diffstream.codecs.diffc.calibrate "
                                    + " ".join(argv if argv is not None else sys.argv[1:]))
        cal.save(args.out)
        print(f"[calibrate] updated {args.out}")
        return 0

    t_start = time.perf_counter()
    model, source = load(args)
    T = model.T
    crops = CropSampler().batch(args.images, args.size, np.random.default_rng(args.seed))
    gen = torch.Generator().manual_seed(args.seed)
    errs = []
    dev = model.alpha_bar.device
    with torch.no_grad():  # the latents of the crops (the crops themselves for pixels)
        x0s = [model.to_latent(crops[i:i + 1].to(dev)) for i in range(args.images)]
    for i in range(args.images):
        errs.append(prediction_errors(model, x0s[i], args.batch, gen))
        print(f"[calibrate] image {i + 1}/{args.images}  {time.perf_counter() - t_start:.0f}s",
              flush=True)
    coef = kl_coef_matrix(model.alpha_bar, t_min=args.t_final)  # nats per squared error
    valid = coef > 0
    cost = torch.zeros_like(coef)
    kl_all = []
    for e in errs:
        kl_bits = coef * e.view(-1, 1) / math.log(2.0)
        cost += torch.where(valid, pfr_cost_bits(kl_bits), torch.zeros_like(kl_bits))
        kl_all.append(kl_bits)
    cost = torch.where(valid, cost / len(errs), torch.full_like(cost, math.inf))
    path = shortest_path(cost.numpy(), T, args.t_final)
    dims = x0s[0].numel()  # values in the diffusion space (3 H W, or C h w for a latent)
    per_image = [[float(kl[a, b]) / dims for a, b in zip(path[:-1], path[1:], strict=True)]
                 for kl in kl_all]
    mean = np.mean(np.array(per_image), axis=0).tolist()
    print(f"[calibrate] schedule ({len(path) - 1} steps): {path}")
    edges = list(zip(path[:-1], path[1:], strict=True))
    expected = float(sum(cost[a, b] for a, b in edges))
    print(f"[calibrate] mean total KL {sum(mean) * dims:.0f} bits "
          f"({sum(mean) * dims / args.size ** 2:.3f} bpp), expected cost {expected:.0f} bits")
    cal = Calibration(id=SCHEDULE_ID, T=T, schedule=path, kl_bits_per_dim=mean,
                      chunk_models={}, kl_bits_per_dim_images=[[round(v, 7) for v in r]
                                                                for r in per_image])
    # provisional chunk models (simulated 1-D PFR on the crops' q-sample chunk KLs), then
    # the real ones: the codec itself encodes the first --run-images crops in both chunking
    # modes and the bucket / chunk-count histograms of the indices it chose are shipped
    # (App. A.5 also runs DiffC on the calibration images).
    models = {}
    for bits in args.chunk_bits:
        kl_target = bits - CHUNK_SLACK_BITS
        models[bits] = ChunkModel(bits, kl_target, [1] * (bits + 1), [1] * (bits + 1))
        cal.chunk_models = models
        chunk_kls = []
        for r in per_image:
            for k, v in enumerate(r):
                n = cal.chunks(k, dims, bits, cal.choose_ratio(k, dims, bits, v * dims))
                chunk_kls += [v * dims / n] * n
        rng = np.random.default_rng(args.seed + bits)
        pick = rng.choice(len(chunk_kls), size=min(args.chunk_samples, len(chunk_kls)),
                          replace=False)
        counts = bucket_histogram([chunk_kls[i] for i in pick], bits, seed=args.seed)
        models[bits] = ChunkModel(bits, kl_target, counts, counts)
    cal.chunk_models = models
    cal.ratio_counts = [1] * RATIO_SYMBOLS
    if args.run_images > 0:
        real_runs(cal, args, crops[:args.run_images])
        image_counts(cal, src_opts, args.device,
                     image_crops(max(1, args.run_images // 2), args.seed, image_sizes(args)),
                     list(args.chunk_bits), args.seed, 4 * args.chunk_samples)
    cal.info = {**source, "images": args.images, "size": args.size, "t_final": args.t_final,
                "seed": args.seed, "data": "scikit-image photographs (CropSampler), not Kodak",
                "cost": "C = I + log2(max(I, 1)) + 5 bits per step (Algorithm 3)",
                "chunk_kl": f"chunk_bits - {CHUNK_SLACK_BITS:g}",
                "seconds": round(time.perf_counter() - t_start, 1),
                "command": "python -m diffstream.codecs.diffc.calibrate "
                           + " ".join(argv if argv is not None else sys.argv[1:])}
    cal.save(args.out)
    print(f"[calibrate] wrote {args.out} in {time.perf_counter() - t_start:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
