"""Does BADiff's entropy embedding carry information? (issue 16, item 1)

    python benchmarks/badiff_conditioning.py [--weights DIR] [--seeds 16] [--json PATH]

Two measurements of a trained BADiff (the shipped weights by default):

1. Size. ||e(H)|| / ||e_t|| at H in {0.2, 0.5, 1, 2}: e(H) is added to the U-Net's timestep
   embedding e_t, so this ratio says how loud the budget is next to the time (mean over the
   100 steps of the full sampler). The review before issue 16 found 0.01-0.09 against
   ||e_t|| = 7.7: e(H) was nearly silent.
2. Effect. For the same seeds (the same x_T and sampler noise), BADiff's stopped sample at
   each H, compared with its sample at H = 2: the mean absolute difference in pixel levels
   and LIC's ideal rate of each image at the operating scale of the lowest budget
   (q_op(0.2), the hinge's), plus the mean stop step. A silent e(H) gives a difference
   that comes only from where the run stops, and rates that do not fall with H. The mean
   and standard deviation of the pixel levels are printed too: the collapsed lambda_ent =
   0.1 model of before had 86 / 101 against the plain DDPM's 179 / 53.

Without a trained stop (``--no-stop``) the full-step outputs are compared instead, which
isolates the embedding's effect on the samples from the stop policy's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diffstream.codecs.badiff.codec import BADiffCodec  # noqa: E402
from diffstream.codecs.badiff.lic_rate import LicRate, q_op  # noqa: E402
from diffstream.codecs.badiff.samplers import N_FULL, respaced_times  # noqa: E402
from diffstream.codecs.badiff.stop_policy import time_embedding  # noqa: E402
from diffstream.codecs.base import GenerationRequest  # noqa: E402
from diffstream.training.crops import to_tensor  # noqa: E402

HS = (0.2, 0.5, 1.0, 2.0)


@torch.no_grad()
def embedding_ratio(codec: BADiffCodec) -> dict[str, float]:
    m = codec.model
    times = torch.tensor(respaced_times(m.ddpm.T, N_FULL))
    et = time_embedding(m.unet, times - 1).norm(dim=1).mean()
    return {f"{h:g}": float(m.cond(h).norm() / et) for h in HS}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None, help="BADiff weights folder (default: shipped)")
    ap.add_argument("--model", default="badiff", help="weights name in --weights")
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--no-stop", action="store_true", help="compare full-step outputs")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    codec = BADiffCodec(weights=args.weights, model=args.model, adaptive_stop=not args.no_stop)
    table = codec.model.cfg.training.get("stages", {}).get("lic", {}).get("q_op")
    if not table:
        print("these weights have no q_op table (trained before issue 16's hinge); the "
              "rate column uses q = 3.0", file=sys.stderr)
    q_low = float(q_op(0.2, [tuple(r) for r in table])) if table else 3.0
    rate = LicRate()
    images: dict[float, list[np.ndarray]] = {h: [] for h in HS}
    steps: dict[float, list[int]] = {h: [] for h in HS}
    for s in range(args.seeds):
        for h in HS:
            img, calls, _ = codec.sample(GenerationRequest(seed=1000 + s), (32, 32), h)
            images[h].append(img)
            steps[h].append(calls)
        print(f"[conditioning] seed {s + 1}/{args.seeds}", file=sys.stderr, flush=True)
    ref = np.stack(images[HS[-1]]).astype(np.float64)
    out: dict[str, dict[str, float]] = {"embedding_ratio": embedding_ratio(codec),
                                        "steps": {}, "abs_diff_to_h2": {}, "rate_at_q_low": {},
                                        "level_mean": {}, "level_std": {}}
    with torch.no_grad():
        for h in HS:
            arr = np.stack(images[h])
            out["steps"][f"{h:g}"] = float(np.mean(steps[h]))
            out["abs_diff_to_h2"][f"{h:g}"] = float(np.abs(arr - ref).mean())
            out["level_mean"][f"{h:g}"] = float(arr.mean())
            out["level_std"][f"{h:g}"] = float(arr.std())
            out["rate_at_q_low"][f"{h:g}"] = float(rate(to_tensor(arr), q_low,
                                                        mode="round").mean())
    print(f"{'H (bpp)':>8} {'|e(H)|/|e_t|':>13} {'steps':>6} {'|x_H - x_2|':>12} "
          f"{'LIC bpp @ q_op(0.2)':>20} {'levels mean / std':>18}")
    for h in HS:
        k = f"{h:g}"
        print(f"{k:>8} {out['embedding_ratio'][k]:13.3f} {out['steps'][k]:6.1f} "
              f"{out['abs_diff_to_h2'][k]:12.2f} {out['rate_at_q_low'][k]:20.3f} "
              f"{out['level_mean'][k]:9.1f} / {out['level_std'][k]:5.1f}")
    if args.json is not None:
        args.json.write_text(json.dumps({**out, "seeds": args.seeds,
                                         "stop": not args.no_stop, "q_low": q_low},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
