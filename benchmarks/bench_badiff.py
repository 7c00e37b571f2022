"""BADiff (paper 000) against its baselines at 32x32: Tables 1-3 in one run.

    python benchmarks/bench_badiff.py [--seeds 4] [--out runs/bench_badiff.json]

For each regime (Low 0.2-0.5, Med 0.5-1.0, High 1.0-2.0 bpp) every method generates the
same requests (seeds) at the same three budgets per regime, through the registered codecs'
``generate`` (real payloads), and the receiver's image (the codec's ``decode`` of those
bytes) is scored against the request's reference (the plain DDPM's 100-step sample):
PSNR and MS-SSIM (2 scales at 32 px, diffstream.metrics.quality). LPIPS/FID are not
reported: no LPIPS weights are on disk, and FID needs thousands of samples.

bpp error = mean |actual payload bpp - budget bpp| (skipped frames count as 0 bpp and are
also counted); steps = U-Net calls; ms = wall time of ``generate`` on one torch thread,
sampling included (the Cascade's reference is recomputed per call, as a sender would).
Ablations (Table 3, low budgets): the short fine-tunes in runs/badiff_ablate, if present.
"""

from __future__ import annotations

import argparse
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
from diffstream.metrics.quality import QualityScorer  # noqa: E402

SHAPE = (32, 32)
REGIMES = {"Low": (0.25, 0.35, 0.45), "Med": (0.6, 0.75, 0.9), "High": (1.2, 1.5, 1.8)}
METHODS = {"BADiff": "badiff", "Cascade+LIC": "cascade-lic", "Cascade+JPEG": "cascade-jpeg",
           "Cascade+WebP": "cascade-webp", "Early-Stop+LIC": "earlystop-lic",
           "DPM-Solver+LIC": "dpmsolver-lic", "PNDM+LIC": "pndm-lic"}
ABLATE_DIR = ROOT / "runs" / "badiff_ablate"
ABLATIONS = {"w/o Cond.": "badiff_nocond", "w/o Hinge": "badiff_nohinge",
             "w/o Cal.": "badiff_nocal", "Full (short)": "badiff"}


def run_cell(codec, seeds: list[int], budgets: tuple[float, ...],
             refs: dict[int, np.ndarray], scorer: QualityScorer) -> dict[str, float]:
    rows = []
    for seed in seeds:
        for b in budgets:
            budget = int(b * SHAPE[0] * SHAPE[1])
            t0 = time.perf_counter()
            enc = codec.generate(GenerationRequest(seed=seed), budget, (32, 32))
            ms = 1000 * (time.perf_counter() - t0)
            assert enc.skipped or enc.bits <= budget, (codec.name, enc.bits, budget)
            t0 = time.perf_counter()
            if enc.skipped:
                q = {"psnr_db": np.nan, "ms_ssim": np.nan}
                dec_ms = np.nan
            else:
                img = codec.decode(enc.payload, enc.meta, SHAPE)
                dec_ms = 1000 * (time.perf_counter() - t0)
                q = scorer.score(refs[seed], img)
            rows.append({"err": abs(enc.bits / (SHAPE[0] * SHAPE[1]) - b), "psnr": q["psnr_db"],
                         "msssim": q["ms_ssim"], "steps": enc.steps, "ms": ms,
                         "dec_ms": dec_ms, "skip": float(enc.skipped),
                         "fallback": float("fallback" in enc.meta),
                         "bpp": enc.bits / (SHAPE[0] * SHAPE[1])})
    return {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]} | {"n": len(rows)}


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


def run_ablation(seeds: list[int], refs: dict[int, np.ndarray], scorer: QualityScorer
                 ) -> dict[str, dict[str, float]]:
    ablation: dict[str, dict[str, float]] = {}
    for label, name in ABLATIONS.items():
        if (ABLATE_DIR / f"{name}.safetensors").is_file():
            codec = create_codec("badiff", weights=str(ABLATE_DIR), model=name)
            ablation[label] = run_cell(codec, seeds, REGIMES["Low"], refs, scorer)
    return ablation


def ablation_only(seeds: list[int], refs: dict[int, np.ndarray], scorer: QualityScorer,
                  out: Path) -> int:
    ablation = run_ablation(seeds, refs, scorer)
    ablation["Full (shipped)"] = run_cell(create_codec("badiff"), seeds, REGIMES["Low"], refs,
                                          scorer)
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
    scorer = QualityScorer()
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
    for name, codec_name in METHODS.items():
        codec = create_codec(codec_name)
        results[name] = {r: run_cell(codec, seeds, b, refs, scorer) for r, b in REGIMES.items()}
        print(f"[bench] {name} done ({time.time() - t_all:.0f}s)", flush=True)
    full = create_codec("badiff", adaptive_stop=False)
    results["BADiff (no adaptive stop)"] = {
        "Low": run_cell(full, seeds, REGIMES["Low"], refs, scorer)}
    ablation = {} if args.no_ablation else run_ablation(seeds, refs, scorer)
    ablation["Full (shipped)"] = results["BADiff"]["Low"]

    n = len(seeds) * 3
    print(f"\nBADiff benchmark, 32x32, n = {n} generations per cell ({len(seeds)} seeds x 3 "
          f"budgets), one torch thread; U-Net {step_ms:.1f} ms/step; reference (100 steps) "
          f"{ref_ms:.0f} ms")
    print(table("PSNR (dB) vs the reference sample (higher is better)", results, "psnr",
                "{:.2f}"))
    print(table("MS-SSIM vs the reference sample", results, "msssim", "{:.3f}"))
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
               "time_saving_low": ratio_ms, "wall_s": time.time() - t_all}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nwhole benchmark {time.time() - t_all:.0f}s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
