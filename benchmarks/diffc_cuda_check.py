"""DiffC PFR on CUDA: bit-identity with the CPU paths, then timings. For a GPU machine.

    python benchmarks/diffc_cuda_check.py [--device cuda] [--quick]

Checks (each printed PASS/FAIL; the last line is PASS only when all pass):
1. candidates: ``prng.normals_torch`` on the device equals the CPU bit for bit;
2. scores: ``pfr.scores_torch`` on the device equals the CPU torch path and the C kernel
   (when it loads) bit for bit, so the score ordering is the same, for chunk sizes of 8,
   12, 16, 18 and 20 bits;
3. selection: ``pfr.select`` on a device tensor returns the CPU index (C kernel with 1 and
   N threads, torch CPU);
4. codec: a 64x64 encode on the device with 16-bit chunks, decoded on the same device,
   rebuilds the encoder's x_t exactly.
Timings: ms per chunk for the device search at 12-20 bits against the C kernel (1 thread
and all cores), and the codec's per-image split (U-Net / PFR) at 32x32 12-bit and 64x64
16-bit. ``--device cpu`` runs the same script against the CPU torch path (a dry run for
machines without a GPU; its codec part is 32x32 only). Exit status 0 when everything
passes, 1 on a failure, 2 without the device.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from diffstream.codecs import create_codec
from diffstream.codecs.diffc import fused, pfr, prng

FAILS: list[str] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"{'PASS' if ok else 'FAIL'}  {name}" + (f"  ({detail})" if detail else ""),
          flush=True)
    if not ok:
        FAILS.append(name)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, dev: torch.device, reps: int) -> float:
    fn()
    sync(dev)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(dev)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="fewer sizes, no 20-bit, no codec")
    args = ap.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("SKIP: no CUDA device (run on a GPU machine, or --device cpu for a dry run)")
        return 2
    torch.set_num_threads(1)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu (dry run)"
    print(f"torch {torch.__version__}, device {name}; C kernel: {fused.available()} "
          f"({fused.reason() or 'loaded'}); cores {pfr.default_threads()}")
    rng = np.random.default_rng(0)

    # 1. candidates
    for d in (1, 123, 768):
        key = prng.derive_key(1, d)
        a = prng.normals_torch(key, 7, 300, d).numpy()
        b = prng.normals_torch(key, 7, 300, d, dev).cpu().numpy()
        check(f"candidates d={d}", same_bits(a, b))

    # 2./3. scores, ordering, selection
    bits_list = (8, 12, 16) if args.quick else (8, 12, 16, 18, 20)
    for bits in bits_list:
        K = 1 << bits
        d = 256 if bits <= 16 else 48  # keep the CPU reference quick at 2^20
        m = (rng.standard_normal(d) * 0.3).astype(np.float32)
        key = prng.derive_key(2, bits)
        mt = torch.from_numpy(m).to(dev)
        ref = pfr.scores_torch(m, key, 0, K)
        got = pfr.scores_torch(mt, key, 0, K)
        check(f"scores device == torch CPU, 2^{bits} x {d}", same_bits(ref, got))
        if fused.available():
            check(f"scores device == C kernel, 2^{bits} x {d}",
                  same_bits(pfr.scores_fused(m, key, 0, K), got))
        lt = pfr.log_arrival_times(key, K)
        order_ok = np.array_equal(np.argsort(ref.astype(np.float64) - lt, kind="stable"),
                                  np.argsort(got.astype(np.float64) - lt, kind="stable"))
        check(f"score ordering, 2^{bits}", order_ok)
        want = pfr.select(m, key, bits, backend="torch")
        n_dev = pfr.select(mt, key, bits, backend="torch")
        detail = f"index {n_dev} vs {want}"
        if fused.available():
            ones = pfr.select(m, key, bits, backend="fused", threads=1)
            alls = pfr.select(m, key, bits, backend="fused")
            detail += f", C 1 thread {ones}, C {pfr.default_threads()} threads {alls}"
            check(f"selection, 2^{bits}", n_dev == want == ones == alls, detail)
        else:
            check(f"selection, 2^{bits}", n_dev == want, detail)

    # timings: one chunk
    print("\nms per chunk (d = 256 and 768): device search vs C kernel")
    for d in (256, 768):
        m = (rng.standard_normal(d) * 0.3).astype(np.float32)
        mt = torch.from_numpy(m).to(dev)
        for bits in (12, 16) if args.quick else (12, 16, 18, 20):
            key = prng.derive_key(3, d, bits)
            pfr.log_arrival_times(key, 1 << bits)  # same cached arrival times for all
            t_dev = timed(lambda mt=mt, key=key, bits=bits:
                          pfr.select(mt, key, bits, backend="torch"), dev, 3)
            line = f"  d={d:4d} 2^{bits}: {args.device} {t_dev * 1e3:8.2f} ms"
            if fused.available() and bits <= 18:
                t1 = timed(lambda m=m, key=key, bits=bits:
                           pfr.select(m, key, bits, backend="fused", threads=1),
                           torch.device("cpu"), 1)
                tn = timed(lambda m=m, key=key, bits=bits:
                           pfr.select(m, key, bits, backend="fused"),
                           torch.device("cpu"), 1)
                line += (f" | C 1 thread {t1 * 1e3:8.2f} ms, C {pfr.default_threads()} "
                         f"threads {tn * 1e3:8.2f} ms | device speed-up {t1 / t_dev:6.1f}x")
            print(line, flush=True)

    # 4. codec on the device
    if not args.quick:
        from skimage import data

        img = data.astronaut()[100:164, 150:214].copy()
        sizes = ((32, 12), (64, 16)) if dev.type == "cuda" else ((32, 12),)  # dry run: short
        for size, bits in sizes:
            codec = create_codec("diffc", chunk_bits=bits, device=args.device)
            crop = img[:size, :size].copy()
            codec.encode(crop, 1 << 40)  # warm-up
            t0 = time.perf_counter()
            enc = codec.encode(crop, 1 << 40)
            sync(dev)
            t_enc = time.perf_counter() - t0
            st = codec.last_stats
            t0 = time.perf_counter()
            traj = codec.trajectory(enc.payload, enc.meta, (size, size))
            sync(dev)
            t_dec = time.perf_counter() - t0
            same = torch.equal(traj[-1][1], st.x_t)
            check(f"codec {size}x{size} {bits}-bit: decoder rebuilds x_t exactly", same)
            print(f"  {size}x{size} {bits}-bit on {args.device}: {enc.steps} steps, "
                  f"{sum(s.chunks for s in st.steps)} chunks, {len(enc.payload)} bytes; "
                  f"encode {t_enc:.3f} s (U-Net {st.unet_seconds:.3f}, PFR "
                  f"{st.pfr_seconds:.3f}), trajectory decode {t_dec:.3f} s", flush=True)

    print(("\nFAIL: " + ", ".join(FAILS)) if FAILS else "\nPASS")
    return 1 if FAILS else 0


if __name__ == "__main__":
    raise SystemExit(main())
