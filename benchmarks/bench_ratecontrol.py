"""Rate control of the built-in codecs: how full the budget is and how many real encodes it
takes, on a video-like stream of scikit-image crops with budgets jumping over 0.1-2 bpp.

    python benchmarks/bench_ratecontrol.py [--codecs jpeg webp gic lic badiff]
        [--sizes 64 128] [--frames 40] [--json out.json]

For every codec and frame size one codec instance encodes ``--frames`` frames of a
``PanSequence`` (shots of 10 frames, so the codec's carried rate model sees both slow
change and cuts), each under a budget drawn log-uniformly from 0.1-2 bpp (seeded), in
order, the way a stream drives it. Reported per codec and size:

- fill: payload bits / budget, mean over sent frames (1.0 = the whole budget used);
- PSNR of the decoded frame against the original, mean over sent frames (quality at the
  budget: the codec's own decode);
- probes: real encodes per frame (``meta['probes']`` or ``meta['passes']``), mean and max;
- skips and over-budget frames (must be 0).

``--json`` writes every frame's (budget, bits, probes, knob) so two versions of the code can
be compared frame by frame (the same stream and budgets are used every time).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from diffstream.codecs import create_codec
from diffstream.content.sources import make_source
from diffstream.metrics.quality import psnr

BPP_RANGE = (0.1, 2.0)


def budgets(n: int, pixels: int, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    lo, hi = np.log(BPP_RANGE[0]), np.log(BPP_RANGE[1])
    return [int(np.exp(rng.uniform(lo, hi)) * pixels) for _ in range(n)]


def run(codec_name: str, size: int, frames: int) -> dict[str, Any]:
    source = make_source({"source": "skimage", "shot_frames": 10}, size, size, ".")
    codec = create_codec(codec_name)
    rows = []
    t0 = time.perf_counter()
    for k, budget in enumerate(budgets(frames, size * size)):
        img = source.frame(k)
        enc = codec.encode(img, budget)
        probes = int(enc.meta.get("probes", enc.meta.get("passes", 0)))
        row: dict[str, Any] = {"budget": budget, "bits": enc.bits, "probes": probes,
                               "skipped": enc.skipped,
                               "knob": enc.meta.get("q", enc.meta.get("delta_index"))}
        if not enc.skipped:
            row["psnr"] = psnr(img, codec.decode(enc.payload, enc.meta, (size, size)))
        rows.append(row)
    wall = time.perf_counter() - t0
    sent = [r for r in rows if not r["skipped"]]
    return {
        "codec": codec_name, "size": size, "frames": frames, "wall_s": wall,
        "fill": float(np.mean([r["bits"] / r["budget"] for r in sent])) if sent else 0.0,
        "psnr": float(np.mean([r["psnr"] for r in sent])) if sent else 0.0,
        "probes_mean": float(np.mean([r["probes"] for r in rows])),
        "probes_max": max(r["probes"] for r in rows),
        "skipped": len(rows) - len(sent),
        "over": sum(r["bits"] > r["budget"] for r in rows),
        "rows": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--codecs", nargs="+", default=["jpeg", "webp", "gic", "lic"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[64, 128])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    results = []
    print(f"{'codec':>7} {'size':>4} {'fill':>6} {'PSNR':>6} {'probes':>6} {'max':>3} "
          f"{'skip':>4} {'over':>4} {'wall s':>6}")
    for name in args.codecs:
        for size in args.sizes:
            r = run(name, size, args.frames)
            results.append(r)
            print(f"{name:>7} {size:>4} {r['fill']:6.3f} {r['psnr']:6.2f} "
                  f"{r['probes_mean']:6.2f} {r['probes_max']:>3} {r['skipped']:>4} "
                  f"{r['over']:>4} {r['wall_s']:6.1f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f)


if __name__ == "__main__":
    main()
