"""GIC (paper 003) on Kodak crops: RD table, sampler ablation, timings, rate-control accuracy.

    python benchmarks/bench_gic.py [--crops-per-image 4] [--size 64] [--plot docs/gic_rd.png]

Kodak (``../shared/datasets/kodak``) is evaluation data only; the models never saw it.
Crops are cut at native resolution at seeded positions, several per image. The RD part is
``diffstream evaluate``'s (``diffstream.evaluate``: the same crops, loop, tables, BD and plot):
every codec is driven by the same bit budgets, through its own rate control, and scored on
what it actually sent (bpp = payload bits / pixels; budgets a codec cannot reach are skipped
and counted). The table quotes the common subset (the crops every codec sent at that
target): PSNR, MS-SSIM (diffstream.metrics.quality; 3 scales at 64 px), SWD against the
originals with its real-vs-real floor, and the spectral ratio (diffstream.metrics.realism).
The sampler ablation also reports "HF ratio", the high-frequency energy of the decoded crop
over that of the original (mean squared Laplacian): 1 means as much fine detail as the
source, below 1 is blur; a cheap sharpness proxy, not a perceptual metric.

Timings are on the CPU with one torch thread (what the simulator's workers use) and include
rate control (encode) and Algorithm 1 + synthesis (decode).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from diffstream.codecs import create_codec
from diffstream.evaluate.bd import bd_rows
from diffstream.evaluate.images import Crop, load_folder, seeded_crops
from diffstream.evaluate.plots import rd_plot
from diffstream.evaluate.report import bd_table, common_table
from diffstream.evaluate.run import evaluate
from diffstream.evaluate.scoring import Scorer
from diffstream.evaluate.tables import RdRow
from diffstream.metrics.quality import QualityScorer, psnr

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "datasets" / "kodak"
RD_BPPS = (0.1, 0.15, 0.25, 0.4, 0.6, 0.9, 1.3, 2.0)
ABLATION_BPPS = (0.15, 0.3, 0.6, 1.0)
CODECS = ("jpeg", "webp", "lic", "gic")  # the first is the BD anchor


def kodak_crops(size: int, per_image: int, seed: int = 0) -> list[Crop]:
    """``diffstream evaluate``'s seeded crops of every Kodak image."""
    return seeded_crops(load_folder(KODAK), size, per_image, seed)


def hf_energy(img: np.ndarray) -> float:
    g = img.astype(np.float64).mean(axis=2)
    lap = (4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:])
    return float(np.mean(lap**2))


class Scores:
    def __init__(self) -> None:
        self.scorer = QualityScorer()

    def __call__(self, ref: np.ndarray, out: np.ndarray) -> tuple[float, float, float]:
        ms = self.scorer.ms_ssim(ref, out)
        return psnr(ref, out), ms, hf_energy(out) / max(hf_energy(ref), 1e-9)


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=False)))
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=False)))


def rd(crops: list[Crop]) -> list[RdRow]:
    """Every codec x target x crop through ``diffstream.evaluate`` (common + sent rows)."""
    codecs = {n: create_codec(n) for n in CODECS}
    return evaluate(codecs, crops, RD_BPPS, Scorer(seed=0)).rows


def print_rd(rows: list[RdRow], size: int, n: int) -> None:
    print(f"\nRD on {n} Kodak crops {size}x{size} (budget = target bpp), common subset")
    print(common_table(rows, CODECS, lpips=False))
    print("\nBD (PSNR, common subset)")
    print(bd_table(bd_rows(rows, CODECS)))


def ablation(crops: list[np.ndarray], size: int, scores: Scores) -> None:
    """Same payloads decoded by the sampler variants."""
    variants = [("lic (no reverse net)", "lic", {}),
                ("1 step, deterministic", "gic", {"steps": 1, "beta": 0.0}),
                ("2 steps, deterministic", "gic", {"steps": 2, "beta": 0.0}),
                ("4 steps, deterministic", "gic", {"steps": 4, "beta": 0.0}),
                ("1 step, beta 0.075 gauss", "gic", {"steps": 1}),
                ("2 steps, beta 0.075 gauss", "gic", {"steps": 2}),
                ("2 steps, beta 0.075 unif", "gic", {"steps": 2, "noise": "uniform"}),
                ("4 steps, beta 0.075 gauss", "gic", {"steps": 4})]
    codecs = [(label, create_codec(name, **opts)) for label, name, opts in variants]
    enc_codec = create_codec("gic")
    rows = []
    pixels = size * size
    for bpp in ABLATION_BPPS:
        encs = [(img, enc_codec.encode(img, int(bpp * pixels))) for img in crops]
        encs = [(img, e) for img, e in encs if not e.skipped]
        mbpp = np.mean([e.bits / pixels for _, e in encs])
        for label, codec in codecs:
            t0 = time.perf_counter()
            s = np.array([scores(img, codec.decode(e.payload, e.meta, (size, size)))
                          for img, e in encs])
            ms = (time.perf_counter() - t0) * 1000 / len(encs)
            rows.append([f"{bpp:.2f}", f"{mbpp:.3f}", label, f"{s[:, 0].mean():.2f}",
                         f"{s[:, 1].mean():.4f}", f"{s[:, 2].mean():.2f}", f"{ms:.1f}"])
    table(f"Sampler ablation ({len(crops)} crops {size}x{size}; same payloads)",
          ["target", "bpp", "decoder", "PSNR dB", "MS-SSIM", "HF ratio", "dec ms"], rows)


def timings(crops: list[np.ndarray], size: int) -> None:
    """ms per frame on the CPU, one thread, budgets cycling 0.15-1.5 bpp."""
    torch.set_num_threads(1)
    bpps = (0.15, 0.3, 0.6, 1.0, 1.5)
    rows = []
    for name in CODECS:
        codec = create_codec(name)
        codec.min_bits((size, size))
        encs, t_enc = [], 0.0
        for k, img in enumerate(crops):
            t0 = time.perf_counter()
            encs.append(codec.encode(img, int(bpps[k % len(bpps)] * size * size)))
            t_enc += time.perf_counter() - t0
        sent = [e for e in encs if not e.skipped]
        t0 = time.perf_counter()
        for e in sent:
            codec.decode(e.payload, e.meta, (size, size))
        t_dec = time.perf_counter() - t0
        rows.append([name, f"{t_enc * 1000 / len(crops):.2f}",
                     f"{t_dec * 1000 / max(len(sent), 1):.2f}", f"{len(sent)}/{len(crops)}"])
    gic = create_codec("gic")
    y = torch.zeros(1, gic.model.cfg.latent_channels, size // 4, size // 4)
    q = torch.tensor([0.5])
    with torch.no_grad():
        for _ in range(3):
            gic.model.reverse(y, q)
        t0 = time.perf_counter()
        for _ in range(20):
            gic.model.reverse(y, q)
    step_ms = (time.perf_counter() - t0) * 1000 / 20
    table(f"CPU ms per frame, 1 thread, {size}x{size} (encode includes rate control)",
          ["codec", "encode ms", "decode ms", "sent"], rows)
    print(f"reverse network D_theta: {step_ms:.2f} ms per evaluation (one sampler step)")


def rate_control(crops: list[np.ndarray], size: int) -> None:
    """Every budget in the codec's range: actual <= budget, relative error, rANS passes."""
    gic = create_codec("gic")
    pixels = size * size
    budgets = np.unique(np.round(np.geomspace(0.06, 3.0, 24) * pixels).astype(int))
    rel, passes, viol, skips, sat, n = [], [], 0, 0, 0, 0
    q_lo = gic.model.cfg.q_lo
    for img in crops:
        for b in budgets:
            enc = gic.encode(img, int(b))
            n += 1
            passes.append(enc.meta["passes"])
            if enc.skipped:
                skips += 1
                continue
            viol += enc.bits > b
            if enc.meta["q"] <= q_lo * 1.0001:
                sat += 1  # the finest q fits with room to spare: nothing larger exists
                continue
            rel.append(abs(enc.bits - b) / b)
    in_range = np.array(rel)
    rows = [[f"{n}", f"{viol}", f"{skips}", f"{sat}", f"{len(in_range)}",
             f"{100 * in_range.mean():.2f}", f"{100 * np.percentile(in_range, 95):.2f}",
             f"{100 * in_range.max():.2f}", f"{np.mean(passes):.2f}", f"{np.max(passes)}"]]
    table(f"GIC rate control on {len(crops)} crops x {len(budgets)} budgets "
          f"({budgets[0] / pixels:.2f}-{budgets[-1] / pixels:.2f} bpp)",
          ["calls", "over budget", "skipped", "saturated", "in range", "mean |err| %",
           "p95 |err| %", "max |err| %", "mean passes", "max passes"], rows)
    print("skipped: budget below the frame's floor (q_hi too big); saturated: budget above "
          "the size at the finest q (q_lo is sent); the error columns cover the rest. "
          "Passes count every rANS pass, skip decisions included.")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--crops-per-image", type=int, default=4)
    ap.add_argument("--plot", type=Path, default=ROOT / "docs" / "gic_rd.png")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: rd,ablation,"
                    "timing,rate")
    args = ap.parse_args()
    if not KODAK.is_dir() or not any(KODAK.glob("*.png")):
        print(f"Kodak not found at {KODAK}: nothing to benchmark (the project runs without "
              "../shared; put the 24 PNGs there to run this).")
        return 0
    torch.set_num_threads(1)
    skip = set(filter(None, args.skip.split(",")))
    kodak = kodak_crops(args.size, args.crops_per_image)
    crops = [c.pixels for c in kodak]
    scores = Scores()
    t0 = time.perf_counter()
    if "rd" not in skip:
        rows = rd(kodak)
        print_rd(rows, args.size, len(crops))
        if args.plot and str(args.plot) != "-":
            rd_plot(rows, CODECS, args.plot, title=f"Kodak {args.size}x{args.size} crops, "
                    "common subset: GIC (2 steps, beta 0.075) vs LIC, JPEG, WebP")
            print(f"\nRD plot written to {args.plot}")
    if "ablation" not in skip:
        ablation(crops[::2], args.size, scores)
    if "timing" not in skip:
        timings(crops, args.size)
    if "rate" not in skip:
        rate_control(crops, args.size)
    print(f"\nbenchmark wall time {time.perf_counter() - t0:.0f} s "
          f"({sys.executable.split('/')[-3] if '/' in sys.executable else ''})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
