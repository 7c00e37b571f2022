"""DiffC (paper 002) on Kodak crops: R-D at every stopping step beside the ideal RCC rate,
both overhead measures, denoisers, chunk size and chunking ablations, timings, PFR
throughput and peak memory.

    python benchmarks/bench_diffc.py [--images 8] [--size 32] [--image-dir DIR]
        [--modes image table adaptive] [--rd-only] [--quick] [--json PATH]

Kodak (``--image-dir``, default ``../shared/datasets/kodak``) is evaluation data only (the
DDPM and the calibration never saw it). One seeded crop of ``--size`` pixels from each of
the first ``--images`` images. Everything runs on the CPU with one torch thread.

R-D: each crop is encoded once with an unlimited budget; the encoder keeps the payload it
would have sent had it stopped after each step (``EncodeStats.payloads``: what a
budget-limited ``encode`` sends), so every stopping step is scored from one encode. bpp
counts every payload byte (the x_t check byte included).

Two overhead measures, at each stopping step:
- like for like ("bits/KL-1", JSON ``overhead_coded_kl``): the payload's bits over the KL
  of the trajectory the codec actually coded (sum of the coded steps' KL(q || p)), the
  paper's own comparison (its "< 30 %": index bits against the KL of the same steps).
  Shown without the check byte ("stream") and with the payload and the codec's wire meta
  ("+meta": msgpack of ``meta`` without the 1-in-64 identity).
- strict ("ovh @PSNR", JSON ``overhead_equal_psnr``): real bpp over the ideal rate at equal
  PSNR. The ideal is what a perfect reverse-channel code would do (the paper's
  "idealized" DiffC): an exact sample x_t ~ q(x_t | x_0) at a rate equal to the summed
  per-step KL(q || p) of a chain of exact samples ("ideal bpp", "ideal PSNR", same
  schedule, same denoiser), interpolated in log-rate on the ideal curve. This one also
  charges the loss of quality when bounded PFR returns the best of K candidates instead of
  an exact q sample.
The JSON's figures are means over the stopping steps (the strict one over the steps whose
PSNR lies on the ideal curve); ``bpp`` and ``psnr_db`` are at the last step.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import numpy as np
import torch

from diffstream.codecs import create_codec
from diffstream.codecs.diffc import fused, pfr, prng
from diffstream.codecs.diffc.diffusion import denoise, predict_x0, step_coefs
from diffstream.evaluate.bd import bd_pair
from diffstream.evaluate.images import load_folder, seeded_crops
from diffstream.evaluate.scoring import Scorer
from diffstream.evaluate.tables import Coded, rd_rows
from diffstream.metrics.quality import QualityScorer, psnr
from diffstream.training.crops import to_tensor, to_uint8

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "datasets" / "kodak"
OPTS: dict[str, str] = {"device": "cpu"}  # + weights/calibration from the command line


def kodak_crops(size: int, n: int, seed: int = 0, folder: Path = KODAK) -> list[np.ndarray]:
    """One ``diffstream evaluate`` seeded crop from each of the first n images of
    ``folder`` (Kodak by default)."""
    return [c.pixels for c in seeded_crops(load_folder(folder)[:n], size, 1, seed)]


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
    sys.stdout.flush()


# ----------------------------------------------------------------------------- R-D
def stops_for(steps: int, want: int = 8) -> list[int]:
    """Stopping steps (1-based) spread over the schedule, always including the last."""
    if steps <= want:
        return list(range(1, steps + 1))
    return sorted({max(1, round(steps * (i + 1) / want)) for i in range(want)})


def exact_q_sample(model, x0: torch.Tensor, t: int, seed: int) -> torch.Tensor:
    ab = float(model.alpha_bar[t])
    g = torch.Generator().manual_seed(seed)
    return math.sqrt(ab) * x0 + math.sqrt(1 - ab) * torch.randn(x0.shape, generator=g)


def meta_bytes(meta: dict) -> int:
    """The codec's share of the wire header: msgpack of its meta (identity excluded: it
    rides on one frame in 64)."""
    return len(msgpack.packb({k: v for k, v in meta.items() if k != "id"}))


def rd(crops: list[np.ndarray], size: int, chunking: str) -> dict:
    """Real R-D per stopping step through ``diffstream.evaluate``'s tables (keyed by the
    step; a crop whose encode stopped earlier is "not sent" at later steps), beside the
    ideal-RCC curve, which this benchmark computes itself."""
    codec = create_codec("diffc", chunking=chunking, **OPTS)
    label = f"diffc-{chunking}"
    sched = codec.cal.schedule
    stops = stops_for(min(codec.max_steps, len(sched) - 1))
    pixels = size * size
    coded: list[Coded] = []
    ideal: dict[int, list[tuple[float, float, float]]] = {k: [] for k in stops}
    lfl: dict[int, list[tuple[float, float, float]]] = {k: [] for k in stops}
    times_enc, times_dec, pfr_s, unet_s = [], [], [], []
    for i, img in enumerate(crops):
        t0 = time.perf_counter()
        enc = codec.encode(img, 1 << 30)
        times_enc.append(time.perf_counter() - t0)
        st = codec.last_stats
        pfr_s.append(st.pfr_seconds)
        unet_s.append(st.unet_seconds)
        t0 = time.perf_counter()
        codec.decode(enc.payload, enc.meta, (size, size))
        times_dec.append(time.perf_counter() - t0)
        traj = codec.trajectory(enc.payload, enc.meta, (size, size))
        x0 = to_tensor(img)
        kl_cum = np.cumsum([r.kl_bits for r in st.steps])
        # ideal RCC: a chain of exact samples x_s ~ q(x_s | x_0); its rate is the sum of the
        # per-step KL(q || p) at those samples (independent draws per t, as Algorithm 3)
        q_kl = []
        with torch.no_grad():
            for k in range(len(sched) - 1):
                xq = exact_q_sample(codec.model, x0, sched[k], 5000 + 97 * i + k)
                c = step_coefs(codec.model.alpha_bar, sched[k], sched[k + 1])
                x0h = predict_x0(codec.model, xq, sched[k])
                q_kl.append(c.kl_per_sq_err * float(((x0 - x0h) ** 2).sum()) / math.log(2))
        q_cum = np.cumsum(q_kl)
        for k in stops:
            if k > enc.steps:
                coded.append(Coded(label, k, f"crop{i}", img, None, 0, False))
                continue
            sent = st.payloads[k - 1]
            real_bits = 8 * len(sent)
            meta = {**enc.meta, "steps": k, "t": sched[k], "bytes": len(sent)}
            lfl[k].append((real_bits / kl_cum[k - 1], 8 * (len(sent) - 1) / kl_cum[k - 1],
                           (real_bits + 8 * meta_bytes(meta)) / kl_cum[k - 1]))
            t, x_t = traj[k - 1]
            out = codec.denoise(x_t, t)
            coded.append(Coded(label, k, f"crop{i}", img, out, real_bits, True))
            with torch.no_grad():
                xq = exact_q_sample(codec.model, x0, t, 1000 + i)
                ideal_img = codec.denoise(xq, t)
            ideal[k].append((kl_cum[k - 1] / pixels, q_cum[k - 1] / pixels,
                             psnr(img, ideal_img)))
        print(f"[rd {chunking}] crop {i + 1}/{len(crops)}: {enc.steps} steps, {enc.bits} bits, "
              f"encode {times_enc[-1]:.2f}s decode {times_dec[-1]:.2f}s", flush=True)
    rows = {r.target: r for r in rd_rows(coded, [label], Scorer(seed=0), floor=False)
            if r.subset == "sent"}
    curve = []
    for k in stops:
        if not ideal[k]:
            continue
        kl, qbpp, qp = np.array(ideal[k]).mean(axis=0)
        curve.append((k, sched[k], rows[k], kl, qbpp, qp, np.array(lfl[k]).mean(axis=0)))
    # the ideal curve (exact-q rate, exact-q PSNR); overhead at equal PSNR, log-rate interp.
    ideal_r = np.log([c[4] for c in curve])
    ideal_p = np.array([c[5] for c in curve])
    order = np.argsort(ideal_p)
    out_rows = []
    eq_psnr, per_step = [], []
    for k, t, r, kl, qbpp, qp, ratios in curve:
        ovh = None
        if ideal_p.min() <= r.psnr_db <= ideal_p.max():
            r_eq = math.exp(float(np.interp(r.psnr_db, ideal_p[order], ideal_r[order])))
            ovh = r.bpp / r_eq - 1
            eq_psnr.append(ovh)
        per_step.append({"step": k, "t": t, "bpp": r.bpp, "psnr_db": r.psnr_db,
                         "ideal_bpp": qbpp, "ideal_psnr_db": qp, "kl_coded_bpp": kl,
                         "overhead_coded_kl": ratios[0] - 1,
                         "overhead_coded_kl_stream": ratios[1] - 1,
                         "overhead_coded_kl_meta": ratios[2] - 1, "overhead_equal_psnr": ovh})
        out_rows.append([str(k), str(t), f"{r.n}", f"{r.bpp:.3f}", f"{r.psnr_db:.2f}",
                         f"{r.ms_ssim:.4f}", f"{qbpp:.3f}", f"{qp:.2f}",
                         "-" if ovh is None else f"{100 * ovh:+.0f}%", f"{kl:.3f}",
                         f"{100 * (ratios[1] - 1):+.1f}%", f"{100 * (ratios[0] - 1):+.1f}%",
                         f"{100 * (ratios[2] - 1):+.1f}%"])
    table(f"R-D on {len(crops)} crops {size}x{size}: DiffC-F, chunk_bits "
          f"{codec.chunk_bits}, {chunking} chunking (means over crops). ideal = exact "
          f"samples of q(x_t|x_0) at KL rate; 'KL coded' = the KL of the trajectory actually "
          f"sent; bits/KL-1 of the stream alone, the payload, the payload + codec meta",
          ["step", "t", "n", "bpp", "PSNR dB", "MS-SSIM", "ideal bpp", "ideal PSNR",
           "ovh @PSNR", "KL coded", "stream/KL-1", "payload/KL-1", "+meta/KL-1"], out_rows)
    lfl_mean = float(np.mean([c[6][0] - 1 for c in curve]))
    print(f"mean over {len(curve)} stopping steps: like for like (payload bits / coded KL - 1)"
          f" {100 * lfl_mean:+.1f}%; strict (bits over ideal at equal PSNR) "
          + (f"{100 * np.mean(eq_psnr):+.1f}% over {len(eq_psnr)} steps" if eq_psnr else "-"))
    real = (np.array([c[2].bpp for c in curve]), np.array([c[2].psnr_db for c in curve]))
    bd_rate, _, why = bd_pair((np.exp(ideal_r), ideal_p), real, "cubic")
    print(f"BD-rate of the real codec against ideal RCC (cubic, PSNR): {bd_rate:+.0f}%"
          + (f" ({why})" if why else ""))
    print(f"\nper image ({chunking}): encode {np.mean(times_enc):.2f} s (UNet "
          f"{np.mean(unet_s):.2f} s, PFR {np.mean(pfr_s):.2f} s), decode "
          f"{np.mean(times_dec):.2f} s (full schedule, {len(sched) - 1} steps, DiffC-F)")
    last = per_step[-1]
    return {"stops": stops, "bd_rate_vs_ideal_pct": bd_rate, "chunking": chunking,
            "size": size, "images": len(crops), "chunk_bits": codec.chunk_bits,
            "overhead_coded_kl": lfl_mean,
            "overhead_equal_psnr": float(np.mean(eq_psnr)) if eq_psnr else None,
            "equal_psnr_steps": len(eq_psnr), "bpp": last["bpp"], "psnr_db": last["psnr_db"],
            "encode_s": float(np.mean(times_enc)), "decode_s": float(np.mean(times_dec)),
            "per_step": per_step}


def denoisers(crops: list[np.ndarray], size: int, scorer: QualityScorer, stops: list[int]
              ) -> None:
    codec = create_codec("diffc", **OPTS)
    rows = []
    encs = [(img, codec.encode(img, 1 << 30)) for img in crops]
    trajs = [codec.trajectory(e.payload, e.meta, (size, size)) for _, e in encs]
    for k in stops[1::2] + ([stops[-1]] if stops[-1] not in stops[1::2] else []):
        for name in ("flow", "ancestral", "mse"):
            vals, ms_ = [], []
            t0 = time.perf_counter()
            for (img, _), traj in zip(encs, trajs, strict=True):
                t, x_t = traj[k - 1]
                with torch.no_grad(), torch.inference_mode():
                    x0 = denoise(codec.model, x_t, t, name, 50, noise_key=k)
                out = to_uint8(x0)[0]
                vals.append(psnr(img, out))
                ms_.append(scorer.ms_ssim(img, out))
            ms = 1000 * (time.perf_counter() - t0) / len(encs)
            rows.append([str(k), str(codec.cal.schedule[k]), name, f"{np.mean(vals):.2f}",
                         f"{np.mean(ms_):.4f}", f"{ms:.0f}"])
    table("Denoisers on the same x_t (DiffC-F flow = DDIM eta 0; DiffC-A ancestral; "
          "DiffC-MSE one-step x0_hat)", ["step", "t", "denoiser", "PSNR dB", "MS-SSIM",
                                          "ms/image"], rows)


def ablations(crops: list[np.ndarray], size: int) -> None:
    """Chunk sizes (image chunking) and the other two chunking modes (12 bits), scored at a
    middle and the last step."""
    pixels = size * size
    rows = []
    for label, opts in [("chunk_bits 8", {"chunk_bits": 8}), ("chunk_bits 10", {"chunk_bits": 10}),
                        ("chunk_bits 12 (default)", {}), ("chunk_bits 14", {"chunk_bits": 14}),
                        ("chunk_bits 16", {"chunk_bits": 16}),
                        ("table chunking", {"chunking": "table"}),
                        ("adaptive chunking", {"chunking": "adaptive"})]:
        codec = create_codec("diffc", **{**OPTS, **opts})
        last = codec.max_steps
        mid = last // 2
        acc: dict[int, list[tuple[float, float, float]]] = {mid: [], last: []}
        pfr_t = []
        for img in crops:
            enc = codec.encode(img, 1 << 30)
            st = codec.last_stats
            pfr_t.append(st.pfr_seconds)
            traj = codec.trajectory(enc.payload, enc.meta, (size, size))
            for k in (mid, last):
                bits = 8 * len(st.payloads[k - 1])
                kl = sum(r.kl_bits for r in st.steps[:k])
                out = codec.denoise(traj[k - 1][1], traj[k - 1][0])
                acc[k].append((bits / pixels, kl / pixels, psnr(img, out)))
        row = [label]
        for k in (mid, last):
            a = np.array(acc[k]).mean(axis=0)
            row += [f"{a[0]:.3f}", f"{a[1]:.3f}", f"{a[2]:.2f}"]
        rows.append(row + [f"{1000 * np.mean(pfr_t):.0f}"])
    sched = codec.cal.schedule
    table(f"Chunk size and chunking, {len(crops)} crops, at step {mid} (t = {sched[mid]}) and "
          f"step {last} (t = {sched[last]}): real bpp, KL of the coded trajectory, PSNR",
          ["variant", "bpp@mid", "KL@mid", "PSNR@mid", "bpp@last", "KL@last", "PSNR@last",
           "PFR ms/img"], rows)


# ----------------------------------------------------------------------------- PFR speed
def throughput(d: int, bits: int, reps: int) -> None:
    K = 1 << bits
    rng = np.random.default_rng(0)
    m = (rng.standard_normal(d) * 0.2).astype(np.float32)
    mt = torch.from_numpy(m)
    gen = torch.Generator().manual_seed(0)
    key = prng.derive_key(1, 2, 3)

    def naive_randn() -> int:
        dots = torch.randn(K, d, generator=gen) @ mt  # App. A.4's PyTorch version, unbatched
        return int(np.argmax(dots.numpy() - pfr.log_arrival_times(key, K)))

    variants = [("naive torch.randn(K,d) @ mu", naive_randn),
                ("naive counter PRNG (K x d)", lambda: pfr.select_naive(m, key, bits)),
                ("blocked torch, block 512", lambda: pfr.select(m, key, bits, 512, "torch"))]
    if fused.available():
        variants.append(("fused C kernel, block 4096",
                         lambda: pfr.select(m, key, bits, 4096, "fused")))
    rows, rates = [], {}
    pfr.log_arrival_times(key, K)  # the arrival times are shared by all variants
    for label, fn in variants:
        fn()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        dt = (time.perf_counter() - t0) / reps
        rates[label] = K / dt
        rows.append([label, f"{dt * 1000:.1f}", f"{K / dt / 1e6:.3f}", f"{K * d / dt / 1e6:.0f}"])
    base_r = rates["naive torch.randn(K,d) @ mu"]
    base_c = rates["naive counter PRNG (K x d)"]
    for r, (label, _) in zip(rows, variants, strict=True):
        r += [f"{rates[label] / base_r:.2f}x", f"{rates[label] / base_c:.2f}x"]
    table(f"PFR throughput, one chunk: K = 2^{bits} candidates x d = {d} dims, one thread",
          ["implementation", "ms/chunk", "M cand/s", "M elem/s", "vs randn", "vs naive ctr"],
          rows)


MEM_CHILD = """
import sys, numpy as np, torch
torch.set_num_threads(1)
from diffstream.codecs.diffc import pfr, prng
d, bits, which = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
m = (np.random.default_rng(0).standard_normal(d) * 0.2).astype(np.float32)
key = prng.derive_key(9)
def run(b):
    if which == "naive-randn":
        torch.randn(1 << b, d) @ torch.from_numpy(m)
    elif which == "naive-counter":
        pfr.select_naive(m, key, b)
    elif which == "blocked-torch":
        pfr.select(m, key, b, 512, "torch")
    else:
        pfr.select(m, key, b, 4096, "fused")
run(4)  # lazy imports, tables, kernel build
pfr.log_arrival_times(key, 1 << bits)
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak-RSS high-water mark (VmHWM) to the current RSS
run(bits)
print(status("VmHWM") - before)
"""


def memory(d: int, bits: int) -> None:
    rows = []
    for which in ("naive-randn", "naive-counter", "blocked-torch", "fused"):
        if which == "fused" and not fused.available():
            continue
        out = subprocess.run([sys.executable, "-c", MEM_CHILD, str(d), str(bits), which],
                             capture_output=True, text=True, cwd=ROOT, timeout=600)
        val = out.stdout.strip().splitlines()[-1] if out.returncode == 0 else "error"
        mb = f"{int(val) / 2**10:.0f}" if val.lstrip("-").isdigit() else val
        rows.append([which, mb])
    K = 1 << bits
    table(f"PFR peak memory: VmHWM - VmRSS around one call (fresh process each, high-water "
          f"mark reset before the call; K = 2^{bits}, d = {d}; "
          f"the K x d float32 matrix alone is {K * d * 4 / 2**20:.0f} MiB)",
          ["implementation", "peak KiB"], rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=8, help="how many images (one crop each)")
    ap.add_argument("--size", type=int, default=32, help="crop side in pixels (32, 64, ...)")
    ap.add_argument("--image-dir", type=Path, default=KODAK,
                    help="folder of evaluation images (default: ../shared/datasets/kodak)")
    ap.add_argument("--modes", nargs="+", default=["image", "table", "adaptive"],
                    choices=["image", "table", "adaptive"], help="chunkings to measure")
    ap.add_argument("--rd-only", action="store_true",
                    help="only the R-D tables (no PFR speed, denoisers or ablations)")
    ap.add_argument("--quick", action="store_true", help="fewer crops and repetitions")
    ap.add_argument("--json", help="also write the R-D summary here (first mode's figures "
                                   "at the top level, every mode under 'modes')")
    ap.add_argument("--chunk-bits", type=int, help="PFR chunk size of the R-D runs "
                                                   "(default: the codec's, 12)")
    ap.add_argument("--chunk-kl", type=float, help="image chunking's KL per chunk "
                                                   "(default: the codec's)")
    ap.add_argument("--weights", help="DDPM weights folder (default: shipped)")
    ap.add_argument("--calibration", help="DiffC calibration JSON (default: shipped)")
    args = ap.parse_args()
    for k in ("weights", "calibration", "chunk_bits", "chunk_kl"):
        if getattr(args, k):
            OPTS[k] = getattr(args, k)
    torch.set_num_threads(1)
    t_all = time.perf_counter()
    print(f"torch {torch.__version__}, 1 thread; fused kernel: {fused.available()}")
    if not args.rd_only:
        throughput(d=768, bits=12, reps=2 if args.quick else 5)
        throughput(d=256, bits=16, reps=1 if args.quick else 2)
        memory(d=768, bits=14)
    if not args.image_dir.is_dir():
        print(f"\nno image folder at {args.image_dir}: R-D skipped")
        return 0
    n = 3 if args.quick else args.images
    crops = kodak_crops(args.size, n, folder=args.image_dir)
    scorer = QualityScorer()
    results = {mode: rd(crops, args.size, mode) for mode in args.modes}
    res = results[args.modes[0]]
    if not args.rd_only:
        denoisers(crops[: max(2, n // 2)], args.size, scorer, res["stops"])
        ablations(crops[: max(2, n // 2)], args.size)
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s; peak RSS of this process "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if args.json:
        summary = {k: v for k, v in res.items() if k != "per_step"}
        Path(args.json).write_text(json.dumps({**summary, "modes": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
