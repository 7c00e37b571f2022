"""Codec cost per call on this machine: the numbers behind the ``cpu-2core`` profile.

For each codec and frame size: mean ms of a rate-controlled ``encode`` (budget bisection
included) over a pan sequence with budgets cycling through 0.25-2 bpp, mean ms of
``decode``, and the encode cost as a ratio against one plain Pillow encode of the same frame
at a fixed quality, measured in the same run (the baseline: what a single-shot encoder
costs). Prints a suggested profile entry.

    python benchmarks/bench_codecs.py [--frames 200]
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
from PIL import Image

from diffstream.codecs import create_codec
from diffstream.content.sources import pan_sequence

BPPS = (0.25, 0.5, 1.0, 1.5, 2.0)


def plain_encode_ms(fmt: str, frames: list[np.ndarray]) -> float:
    t0 = time.perf_counter()
    for f in frames:
        buf = io.BytesIO()
        opts = {"method": 2} if fmt == "WEBP" else {}
        Image.fromarray(f).save(buf, fmt, quality=50, **opts)
    return (time.perf_counter() - t0) * 1000 / len(frames)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200)
    args = ap.parse_args()
    print(f"{'codec':6s} {'size':>8s} {'encode ms':>10s} {'decode ms':>10s} "
          f"{'plain ms':>9s} {'encode/plain':>13s} {'skipped':>8s}")
    for size in (64, 128):
        src = pan_sequence(size, size)
        frames = [src.frame(k) for k in range(args.frames)]
        for name, fmt in (("jpeg", "JPEG"), ("webp", "WEBP")):
            codec = create_codec(name)
            codec.min_bits((size, size))  # warm the per-shape rate model, as the sender does
            encoded, enc_s = [], 0.0
            for k, f in enumerate(frames):
                budget = int(BPPS[k % len(BPPS)] * size * size)
                t0 = time.perf_counter()
                encoded.append(codec.encode(f, budget))
                enc_s += time.perf_counter() - t0
            dec_s, n_dec = 0.0, 0
            for e in encoded:
                if e.skipped:
                    continue
                t0 = time.perf_counter()
                codec.decode(e.payload, e.meta, (size, size))
                dec_s += time.perf_counter() - t0
                n_dec += 1
            enc_ms = enc_s * 1000 / len(frames)
            dec_ms = dec_s * 1000 / max(n_dec, 1)
            plain = plain_encode_ms(fmt, frames)
            skipped = sum(e.skipped for e in encoded)
            print(f"{name:6s} {size:4d}x{size:<3d} {enc_ms:10.2f} {dec_ms:10.2f} {plain:9.2f} "
                  f"{enc_ms / plain:12.1f}x {skipped:8d}")


if __name__ == "__main__":
    main()
