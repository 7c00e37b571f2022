"""GIC's floor: the smallest payload it can send (the coarsest q, q_hi), by frame size.

    python benchmarks/bench_gic_floor.py [--weights DIR] [--sizes 32,64,128]

On seeded Kodak crops (``../shared/datasets/kodak``, evaluation only; the crops of
``diffstream evaluate``, 4 per image, seed 0) and on the codec's pink-noise reference frame
(``min_bits``, what the simulator uses to predict skips): the real payload at q_hi in bytes
and bpp (min / median / max over the crops), and how it splits into the 2-byte header, the
hyperprior z (its ideal -log2 P, the side information) and the y symbols.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from diffstream.codecs import create_codec
from diffstream.codecs.gic.bitstream import HEADER_BYTES, Q_LEVELS
from diffstream.evaluate.images import load_folder, seeded_crops

KODAK = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "kodak"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--weights", default=None, help="GIC weights folder (default: shipped)")
    p.add_argument("--sizes", default="32,64,128")
    p.add_argument("--images", type=Path, default=KODAK)
    args = p.parse_args()
    torch.set_num_threads(1)
    gic = create_codec("gic", device="cpu", weights=args.weights)
    images = load_folder(args.images)
    print("| size | payload bytes min / median / max | bpp min / median | z bits (median) "
          "| y + rANS padding bits (median) | pink-noise floor bytes (bpp) |")
    print("|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        sizes, zbits = [], []
        for crop in seeded_crops(images, size, 4, 0):
            a = gic.analyse(crop.pixels)
            sizes.append(len(gic.coder.encode(a, Q_LEVELS - 1)))
            zbits.append(a.z_bits)
        b = np.array(sizes)
        px = size * size
        ybits = 8 * (np.median(b) - HEADER_BYTES) - np.median(zbits)
        pink = gic.min_bits((size, size)) // 8
        print(f"| {size}² | {b.min()} / {np.median(b):.0f} / {b.max()} | "
              f"{8 * b.min() / px:.3f} / {8 * np.median(b) / px:.3f} | {np.median(zbits):.0f} "
              f"| {ybits:.0f} | {pink} ({8 * pink / px:.3f}) |")


if __name__ == "__main__":
    main()
