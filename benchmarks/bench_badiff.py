"""BADiff (paper 000) against its baselines at 32x32: Tables 1-3 in one run.

    python benchmarks/bench_badiff.py [--seeds 4] [--out runs/bench_badiff.json]

For each regime (Low 0.2-0.5, Med 0.5-1.0, High 1.0-2.0 bpp) every method generates the
same requests (seeds) at the same three budgets per regime, through the registered codecs'
``generate`` (real payloads), and the receiver's image (the codec's ``decode`` of those
bytes) is scored against the request's reference (the plain DDPM's 100-step sample).
Quality comes from ``diffstream.evaluate``'s tables, fed (reference, decoded image, payload
bits, sent) per request: PSNR and MS-SSIM (2 scales at 32 px, diffstream.metrics.quality)
on the common subset, the requests every method in the table sent at that budget, so a
method that skips the hard requests does not look better (a regime's cell averages its
three budgets' common requests); SWD to the references and BD-rate against BADiff on the
same subset. LPIPS/FID are not reported: no LPIPS weights are on disk, and FID needs
thousands of samples.

bpp error = mean |actual payload bpp - budget bpp| (skipped frames count as 0 bpp and are
also counted); steps = U-Net calls; ms = wall time of ``generate`` on one torch thread,
sampling included (the Cascade's reference is recomputed per call, as a sender would).
Ablations (Table 3, low budgets): the short fine-tunes in runs/badiff_ablate, if present.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diffstream.codecs import create_codec  # noqa: E402
from diffstream.codecs.badiff.samplers import load_plain_ddpm, reference_image  # noqa: E402
from diffstream.codecs.base import GenerationRequest  # noqa: E402
from diffstream.evaluate.bd import bd_rows  # noqa: E402
from diffstream.evaluate.report import bd_table, common_table  # noqa: E402
from diffstream.evaluate.scoring import Scorer  # noqa: E402
from diffstream.evaluate.tables import Coded, RdRow, common_rows, rd_rows  # noqa: E402

SHAPE = (32, 32)
REGIMES = {"Low": (0.25, 0.35, 0.45), "Med": (0.6, 0.75, 0.9), "High": (1.2, 1.5, 1.8)}
METHODS = {"BADiff": "badiff", "Cascade+LIC": "cascade-lic", "Cascade+JPEG": "cascade-jpeg",
           "Cascade+WebP": "cascade-webp", "Early-Stop+LIC": "earlystop-lic",
           "DPM-Solver+LIC": "dpmsolver-lic", "PNDM+LIC": "pndm-lic"}
ABLATE_DIR = ROOT / "runs" / "badiff_ablate"
ABLATIONS = {"w/o Cond.": "badiff_nocond", "w/o Hinge": "badiff_nohinge",
             "w/o Cal.": "badiff_nocal", "Full (short)": "badiff"}


def run_cell(codec, label: str, seeds: list[int], budgets: tuple[float, ...],
             refs: dict[int, np.ndarray]) -> tuple[dict[str, float], list[Coded]]:
    """Timings, steps and bpp adherence of one method x regime, and its coded requests
    (for the quality tables)."""
    rows, coded = [], []
    pixels = SHAPE[0] * SHAPE[1]
    for seed in seeds:
        for b in budgets:
            budget = int(b * pixels)
            t0 = time.perf_counter()
            enc = codec.generate(GenerationRequest(seed=seed), budget, (32, 32))
            ms = 1000 * (time.perf_counter() - t0)
            assert enc.skipped or enc.bits <= budget, (codec.name, enc.bits, budget)
            t0 = time.perf_counter()
            img = None
            dec_ms = np.nan
            if not enc.skipped:
                img = codec.decode(enc.payload, enc.meta, SHAPE)
                dec_ms = 1000 * (time.perf_counter() - t0)
            coded.append(Coded(label, b, f"seed{seed}", refs[seed], img,
                               0 if enc.skipped else enc.bits, not enc.skipped))
            rows.append({"err": abs(enc.bits / pixels - b), "steps": enc.steps, "ms": ms,
                         "dec_ms": dec_ms, "skip": float(enc.skipped),
                         "fallback": float("fallback" in enc.meta), "bpp": enc.bits / pixels})
    stats = {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]} | {"n": len(rows)}
    return stats, coded


def quality(coded: list[Coded], labels: list[str], scorer: Scorer
            ) -> tuple[list[RdRow], dict[str, dict[str, dict[str, float]]]]:
    """RD rows of ``labels`` and, per label and regime, PSNR / MS-SSIM on the common subset
    (n-weighted over the regime's budgets) and how many requests that subset held."""
    rows = rd_rows([c for c in coded if c.codec in labels], labels, scorer)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for label in labels:
        mine = common_rows(rows, label)
        for regime, budgets in REGIMES.items():
            cell = [r for r in mine if r.target in budgets and r.n > 0]
            n = sum(r.n for r in cell)
            if not any(r.target in budgets for r in mine):
                continue
            out.setdefault(label, {})[regime] = {
                "psnr": sum(r.psnr_db * r.n for r in cell) / n if n else float("nan"),
                "msssim": sum(r.ms_ssim * r.n for r in cell) / n if n else float("nan"),
                "n_common": float(n)}
    return rows, out


def merge(results: dict[str, dict[str, dict[str, float]]],
          q: dict[str, dict[str, dict[str, float]]]) -> None:
    for label, cells in q.items():
        for regime, vals in cells.items():
            results.setdefault(label, {}).setdefault(regime, {}).update(vals)


def table(title: str, results: dict[str, dict[str, dict[str, float]]], key: str, fmt: str
          ) -> str:
    lines = [f"\n{title}", "| method | Low | Med | High |", "|---|---|---|---|"]
    for name, cells in results.items():
        lines.append(f"| {name} | " + " | ".join(fmt.format(cells[r][key]) if r in cells
                                                   else "-" for r in REGIMES) + " |")
    return "\n".join(lines)


def ablation_table(ablation: dict[str, dict[str, float]]) -> str:
    lines = ["\nTable 3 (ablation, Low 0.2-0.5 bpp)",
             "| variant | PSNR | MS-SSIM | |bpp err| | steps | ms |", "|---|---|---|---|---|---|"]
    for label, c in ablation.items():
        lines.append(f"| {label} | {c['psnr']:.2f} | {c['msssim']:.3f} | {c['err']:.3f} | "
                     f"{c['steps']:.1f} | {c['ms']:.0f} |")
    return "\n".join(lines)


def run_ablation(seeds: list[int], refs: dict[int, np.ndarray], scorer: Scorer,
                 full: tuple[dict[str, float], list[Coded]]) -> dict[str, dict[str, float]]:
    """Table 3: the fine-tunes in runs/badiff_ablate, if present, beside the shipped BADiff
    (``full``: its Low cell), compared on the requests all of them sent."""
    cells: dict[str, dict[str, dict[str, float]]] = {}
    coded: list[Coded] = []
    for label, name in ABLATIONS.items():
        if (ABLATE_DIR / f"{name}.safetensors").is_file():
            codec = create_codec("badiff", weights=str(ABLATE_DIR), model=name)
            stats, c = run_cell(codec, label, seeds, REGIMES["Low"], refs)
            cells[label] = {"Low": stats}
            coded += c
    cells["Full (shipped)"] = {"Low": dict(full[0])}
    coded += [dataclasses.replace(c, codec="Full (shipped)") for c in full[1]]
    merge(cells, quality(coded, list(cells), scorer)[1])
    return {label: c["Low"] for label, c in cells.items()}


def ablation_only(seeds: list[int], refs: dict[int, np.ndarray], scorer: Scorer,
                  out: Path) -> int:
    ablation = run_ablation(seeds, refs, scorer,
                            run_cell(create_codec("badiff"), "BADiff", seeds, REGIMES["Low"],
                                     refs))
    print(f"n = {len(seeds) * 3} generations per row")
    print(ablation_table(ablation))
    path = out.with_name(out.stem + "_ablation.json")
    path.write_text(json.dumps(ablation, indent=2) + "\n")
    return 0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=4, help="requests per budget (n per cell = 3x)")
    p.add_argument("--seed0", type=int, default=1000)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_badiff.json")
    p.add_argument("--ablation-only", action="store_true",
                   help="only Table 3 (the runs/badiff_ablate fine-tunes + shipped BADiff)")
    p.add_argument("--no-ablation", action="store_true", help="skip Table 3")
    args = p.parse_args()
    torch.set_num_threads(1)
    t_all = time.time()
    seeds = list(range(args.seed0, args.seed0 + args.seeds))
    scorer = Scorer(seed=0)
    model = load_plain_ddpm()
    # per-step cost of the U-Net (batch 1, one thread)
    x = torch.randn(1, 3, *SHAPE)
    with torch.no_grad():
        model.eps(x, 500)
        t0 = time.perf_counter()
        for _ in range(20):
            model.eps(x, 500)
    step_ms = 1000 * (time.perf_counter() - t0) / 20
    t0 = time.perf_counter()
    refs = {s: reference_image(GenerationRequest(seed=s), SHAPE) for s in seeds}
    ref_ms = 1000 * (time.perf_counter() - t0) / len(seeds)
    results: dict[str, dict[str, dict[str, float]]] = {}
    if args.ablation_only:
        return ablation_only(seeds, refs, scorer, args.out)
    coded: dict[str, dict[str, list[Coded]]] = {}
    for name, codec_name in METHODS.items():
        codec = create_codec(codec_name)
        for regime, budgets in REGIMES.items():
            stats, c = run_cell(codec, name, seeds, budgets, refs)
            results.setdefault(name, {})[regime] = stats
            coded.setdefault(name, {})[regime] = c
        print(f"[bench] {name} done ({time.time() - t_all:.0f}s)", flush=True)
    everything = [c for cells in coded.values() for cs in cells.values() for c in cs]
    rd, q = quality(everything, list(METHODS), scorer)
    merge(results, q)
    nostop = "BADiff (no adaptive stop)"
    stats, c = run_cell(create_codec("badiff", adaptive_stop=False), nostop, seeds,
                        REGIMES["Low"], refs)
    results[nostop] = {"Low": stats}
    # against BADiff on the requests both sent (its own common subset with BADiff)
    merge(results, {nostop: quality(coded["BADiff"]["Low"] + c, ["BADiff", nostop],
                                    scorer)[1][nostop]})
    bd = bd_rows(rd, list(METHODS))
    ablation = {} if args.no_ablation else run_ablation(
        seeds, refs, scorer, (results["BADiff"]["Low"], coded["BADiff"]["Low"]))
    if args.no_ablation:
        ablation["Full (shipped)"] = results["BADiff"]["Low"]

    n = len(seeds) * 3
    print(f"\nBADiff benchmark, 32x32, n = {n} generations per cell ({len(seeds)} seeds x 3 "
          f"budgets), one torch thread; U-Net {step_ms:.1f} ms/step; reference (100 steps) "
          f"{ref_ms:.0f} ms")
    print(table("PSNR (dB) vs the reference sample, common subset (higher is better)",
                results, "psnr", "{:.2f}"))
    print(table("MS-SSIM vs the reference sample, common subset", results, "msssim",
                "{:.3f}"))
    print(table("requests in the common subset (of 3 x seeds per cell; 'no adaptive stop': "
                "common with BADiff)", results, "n_common", "{:.0f}"))
    print(table("bpp adherence: mean |actual - target| (bpp)", results, "err", "{:.3f}"))
    print(table("actual bpp", results, "bpp", "{:.3f}"))
    print(table("U-Net steps per image", results, "steps", "{:.1f}"))
    print(table("generate ms per image (1 thread)", results, "ms", "{:.0f}"))
    print(table("decode ms per image", results, "dec_ms", "{:.1f}"))
    print(table("skipped fraction / BADiff requantise fallbacks", {
        k: {r: {"x": c["skip"]} for r, c in v.items()} for k, v in results.items()}, "x",
        "{:.2f}") + "\nBADiff fallback fraction: " + ", ".join(
        f"{r} {c['fallback']:.2f}" for r, c in results["BADiff"].items()))
    print(ablation_table(ablation))
    print("\nPer budget, common subset of the seven methods (SWD to the references; with a "
          "few 32x32 images it is noisy, read its interval)")
    print(common_table(rd, list(METHODS), lpips=False))
    print("\nBD against BADiff (PSNR vs the reference, common subset, all nine budgets)")
    print(bd_table(bd))
    lo = results["BADiff"]["Low"]
    ratio_steps = results["Cascade+LIC"]["Low"]["steps"] / lo["steps"]
    ratio_ms = results["Cascade+LIC"]["Low"]["ms"] / lo["ms"]
    cas = results["Cascade+LIC"]["Low"]["steps"]
    print(f"\nStep saving at Low (0.2-0.5 bpp): Cascade+LIC {cas:.0f}"
          f" steps / BADiff {lo['steps']:.1f} = {ratio_steps:.2f}x; wall time "
          f"{ratio_ms:.2f}x (paper: ~1.7x)")
    for r in REGIMES:
        c = results["BADiff"][r]
        print(f"BADiff {r}: {c['steps']:.1f} steps -> {100 / c['steps']:.2f}x fewer than full")
    summary = {"n_per_cell": n, "seeds": seeds, "step_ms": step_ms, "reference_ms": ref_ms,
               "results": results, "ablation": ablation, "step_saving_low": ratio_steps,
               "bd_vs_badiff": [dataclasses.asdict(b) for b in bd],
               "time_saving_low": ratio_ms, "wall_s": time.time() - t_all}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nwhole benchmark {time.time() - t_all:.0f}s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
