"""GIC (paper 003) on Kodak crops: RD table, sampler ablation, timings, rate-control accuracy.

    python benchmarks/bench_gic.py [--crops-per-image 4] [--size 64] [--plot docs/gic_rd.png]
        [--skip rd,ablation,timing,rate] [--json ablation.json] [--ablation-stride 1]

Kodak (``../shared/datasets/kodak``) is evaluation data only; the models never saw it.
Crops are cut at native resolution at seeded positions, several per image. The RD part is
``diffstream evaluate``'s (``diffstream.evaluate``: the same crops, loop, tables, BD and plot):
every codec is driven by the same bit budgets, through its own rate control, and scored on
what it actually sent (bpp = payload bits / pixels; budgets a codec cannot reach are skipped
and counted). The table quotes the common subset (the crops every codec sent at that
target): PSNR, MS-SSIM (diffstream.metrics.quality; 3 scales at 64 px), SWD against the
originals with its real-vs-real floor, and the spectral ratio (diffstream.metrics.realism).
The sampler ablation (paper 003 §4.2 and App. A Table 1, with SWD and the spectral ratio in
place of FID/CLIPIQA) encodes every crop once per target with the default gic encoder and
decodes the same payloads with each sampler variant: Algorithm 1 line 10 under both readings
(``line10``), noise kind, beta, q1 and the step count; ``--json PATH`` writes it, progress
goes to stderr. docs/gic.md quotes it.

Timings are on the CPU with one torch thread (what the simulator's workers use) and include
rate control (encode) and Algorithm 1 + synthesis (decode).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from diffstream.codecs import create_codec
from diffstream.evaluate.bd import bd_rows
from diffstream.evaluate.images import Crop, load_folder, seeded_crops
from diffstream.evaluate.plots import rd_plot
from diffstream.evaluate.report import bd_table, common_table
from diffstream.evaluate.run import budget_bits, evaluate
from diffstream.evaluate.scoring import Scorer
from diffstream.evaluate.tables import RdRow

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "datasets" / "kodak"
RD_BPPS = (0.1, 0.15, 0.25, 0.4, 0.6, 0.9, 1.3, 2.0)
CODECS = ("jpeg", "webp", "lic", "gic")  # the first is the BD anchor


def kodak_crops(size: int, per_image: int, seed: int = 0) -> list[Crop]:
    """``diffstream evaluate``'s seeded crops of every Kodak image."""
    return seeded_crops(load_folder(KODAK), size, per_image, seed)


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


# --- sampler ablation (paper 003 §4.2, App. A Table 1; issue 14 item 4) ---------------

ABLATION_SCHEMA = "diffstream.bench_gic.ablation/1"
ABLATION_TARGETS = (0.15, 0.4)
BETAS = (0.0, 0.025, 0.05, 0.075, 0.1, 0.15)  # §4.2, Fig. 4
Q1S = (0.10, 0.11, 0.12, 0.13, 0.14, 0.15, 0.16, 0.17)  # App. A, Table 1


@dataclass(frozen=True)
class Variant:
    ablation: str  # which question the row answers: reference, line10, noise, beta, q1, steps
    label: str
    codec: str  # "gic" or "lic"
    options: tuple[tuple[str, Any], ...] = ()  # codec options over the defaults

    @property
    def key(self) -> tuple:
        return (self.codec, self.options)


def _gic(ablation: str, label: str, **options: Any) -> Variant:
    return Variant(ablation, label, "gic", tuple(sorted(options.items())))


def ablation_variants(betas: Sequence[float] = BETAS, q1s: Sequence[float] = Q1S,
                      steps: Sequence[int] = (1, 2, 4)) -> list[Variant]:
    """Every decoder of the ablation; options not named are the codec's defaults (2 steps,
    beta 0.075, Gaussian noise, q1 0.13, line10 alpha_i). Variants that are the same
    decoder (the default appears in every ablation) are decoded and scored once."""
    out = [Variant("reference", "lic (no reverse net)", "lic")]
    for line10 in ("alpha_i", "alpha_next"):
        for noise in ("gaussian", "uniform"):
            out.append(_gic("line10", f"{line10}, {noise}", line10=line10, noise=noise))
    out.append(_gic("noise", "deterministic (beta 0)", beta=0.0))
    out += [_gic("noise", noise, noise=noise) for noise in ("gaussian", "uniform")]
    for line10 in ("alpha_i", "alpha_next"):
        for noise in ("gaussian", "uniform"):
            out += [_gic("beta", f"beta {b:g}, {noise}, {line10}", beta=b, noise=noise,
                         line10=line10) for b in betas]
    out += [_gic("q1", f"q1 {q1:.2f}", q1=q1) for q1 in q1s]
    out += [_gic("steps", f"{n} step{'s' * (n > 1)}", steps=n) for n in steps]
    return out


def _decoder_key(codec: Any) -> tuple:
    """Variants that are the same decoder share a key: the default appears in every
    ablation, and at beta 0 the noise kind and line10 are moot."""
    if codec.name != "gic":
        return (codec.name,)
    cfg = codec.sampler
    if cfg.beta == 0.0:
        cfg = replace(cfg, noise="gaussian", line10="alpha_i")
    return (codec.name, cfg, codec.seed)


def ablation(crops: Sequence[Crop], targets: Sequence[float] = ABLATION_TARGETS,
             variants: Sequence[Variant] | None = None, scorer: Scorer | None = None,
             log: TextIO = sys.stderr) -> dict[str, Any]:
    """Same payloads (the default gic encoder at each target) decoded by every variant.

    Per target and variant: mean PSNR and MS-SSIM over the sent crops, and the set metrics
    of ``diffstream evaluate`` (``Scorer.set``: paired SWD with its bootstrap CI, unpaired
    SWD, spectral ratio); per target, the SWD floor of the originals. A JSON-ready dict
    (schema ``ABLATION_SCHEMA``); progress goes to ``log``.
    """
    variants = list(ablation_variants() if variants is None else variants)
    scorer = scorer or Scorer(seed=0)
    size = crops[0].shape
    pixels = size[0] * size[1]
    decoders: dict[tuple, Any] = {}
    rates, rows = [], []
    t_start = time.perf_counter()
    for target in targets:
        enc_codec = create_codec("gic")  # fresh: its rate control carries a calibration
        coded = [(c, enc_codec.encode(c.pixels, budget_bits(target, size))) for c in crops]
        coded = [(c, e) for c, e in coded if not e.skipped]
        if not coded:
            raise SystemExit(f"gic sent none of the {len(crops)} crops at {target} bpp")
        originals = [c.pixels for c, _ in coded]
        q0 = np.array([e.meta["q"] for _, e in coded])
        floor = scorer.floor(originals, key=("floor", target))
        rates.append({"target_bpp": target, "sent": len(coded), "crops": len(crops),
                      "bpp": float(np.mean([e.bits / pixels for _, e in coded])),
                      "q0": {"min": float(q0.min()), "median": float(np.median(q0)),
                             "max": float(q0.max())},
                      # schedule() lowers q1 to q0/2 on these crops (q1 = 0.17 is the largest)
                      "q1_capped_at_0.17": int(np.sum(0.5 * q0 < 0.17)),
                      "swd_floor": None if floor is None else
                      {"value": floor.value, "ci_low": floor.ci_low, "ci_high": floor.ci_high}})
        scored: dict[tuple, dict[str, float]] = {}
        for v in variants:
            if v.key not in decoders:
                decoders[v.key] = create_codec(v.codec, **dict(v.options))
            codec = decoders[v.key]
            key = _decoder_key(codec)
            if key not in scored:
                recons = [codec.decode(e.payload, e.meta, size) for _, e in coded]
                items = [scorer.item(o, r) for o, r in zip(originals, recons, strict=True)]
                sets = scorer.set(originals, recons)
                scored[key] = {"psnr_db": float(np.mean([i["psnr_db"] for i in items])),
                               "ms_ssim": float(np.mean([i["ms_ssim"] for i in items])),
                               **{k: float(x) for k, x in asdict(sets).items()}}
                print(f"[ablation {target:g} bpp, {time.perf_counter() - t_start:.0f} s] "
                      f"{v.ablation}: {v.label}: PSNR {scored[key]['psnr_db']:.2f} dB, "
                      f"SWD {scored[key]['swd']:.1f}, spectral "
                      f"{scored[key]['spectral_ratio']:.3f}", file=log, flush=True)
            rows.append({"ablation": v.ablation, "label": v.label, "codec": v.codec,
                         "options": dict(v.options), "target_bpp": target, "n": len(coded),
                         **scored[key]})
    return {"schema": ABLATION_SCHEMA, "size": list(size), "n_crops": len(crops),
            "crops": [c.id for c in crops], "targets": list(targets),
            "swd_seed": scorer.seed, "bootstrap": scorer.bootstrap, "rates": rates,
            "rows": rows}


def print_ablation(result: dict[str, Any]) -> None:
    rows = [[f"{r['target_bpp']:.2f}", r["ablation"], r["label"], f"{r['psnr_db']:.2f}",
             f"{r['ms_ssim']:.4f}", f"{r['swd']:.1f} [{r['swd_ci_low']:.1f}, "
             f"{r['swd_ci_high']:.1f}]", f"{r['swd_unpaired']:.1f}",
             f"{r['spectral_ratio']:.3f}"] for r in result["rows"]]
    h, w = result["size"]
    table(f"Sampler ablation ({result['n_crops']} crops {h}x{w}; same payloads per target)",
          ["target", "ablation", "decoder", "PSNR dB", "MS-SSIM", "SWD [95% CI]",
           "SWD unpaired", "spectral"], rows)
    for r in result["rates"]:
        f = r["swd_floor"]
        print(f"target {r['target_bpp']:g}: sent {r['sent']}/{r['crops']}, "
              f"{r['bpp']:.3f} bpp, q0 median {r['q0']['median']:.3f} "
              f"[{r['q0']['min']:.3f}, {r['q0']['max']:.3f}], q1 capped below 0.17 on "
              f"{r['q1_capped_at_0.17']}; SWD floor (unpaired, real vs real) "
              + ("-" if f is None else f"{f['value']:.1f} [{f['ci_low']:.1f}, {f['ci_high']:.1f}]"))


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
    ap.add_argument("--json", type=Path, help="write the sampler ablation here (JSON)")
    ap.add_argument("--ablation-stride", type=int, default=1,
                    help="ablate every k-th crop (1: all)")
    args = ap.parse_args()
    if not KODAK.is_dir() or not any(KODAK.glob("*.png")):
        print(f"Kodak not found at {KODAK}: nothing to benchmark (the project runs without "
              "../shared; put the 24 PNGs there to run this).")
        return 0
    torch.set_num_threads(1)
    skip = set(filter(None, args.skip.split(",")))
    kodak = kodak_crops(args.size, args.crops_per_image)
    crops = [c.pixels for c in kodak]
    t0 = time.perf_counter()
    if "rd" not in skip:
        rows = rd(kodak)
        print_rd(rows, args.size, len(crops))
        if args.plot and str(args.plot) != "-":
            rd_plot(rows, CODECS, args.plot, title=f"Kodak {args.size}x{args.size} crops, "
                    "common subset: GIC (2 steps, beta 0.075) vs LIC, JPEG, WebP")
            print(f"\nRD plot written to {args.plot}")
    if "ablation" not in skip:
        result = ablation(kodak[::args.ablation_stride])
        print_ablation(result)
        if args.json:
            args.json.write_text(json.dumps(result, indent=1) + "\n")
            print(f"\nablation JSON written to {args.json}")
    if "timing" not in skip:
        timings(crops, args.size)
    if "rate" not in skip:
        rate_control(crops, args.size)
    print(f"\nbenchmark wall time {time.perf_counter() - t0:.0f} s "
          f"({sys.executable.split('/')[-3] if '/' in sys.executable else ''})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
