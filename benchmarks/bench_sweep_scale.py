#!/usr/bin/env python3
"""A sweep at scale: N synthetic traces (Markov LTE-like, seeds 1..N) x one policy,
network-only, on the local pool. Prints the wall time, runs per second, and the mean
simulated seconds per wall second over the sweep.

    python benchmarks/bench_sweep_scale.py [--traces 1000] [--duration 60] [--policy rate]
                                           [--workers 2] [--payload 0]

``--payload 0``: each frame's payload is its budget (the policy's choice shapes the load);
a positive value sends fixed-size payloads. The traces are generated in each run from their
seed (nothing is written to disk but the sweep's own outputs).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diffstream.sweep.driver import SweepOptions, run_sweep_file  # noqa: E402


def write_sweep(folder: Path, n: int, duration_s: float, policy: str, payload: int) -> Path:
    data = {
        "name": "bench_sweep_scale",
        "base": str(ROOT / "scenarios" / "lte_trace.yaml"),
        "overrides": {"duration_s": duration_s, "frame": {"width": 128, "height": 128},
                      "link": {"share": 0.03}},
        "sweep": {
            "traces": [{"kind": "markov", "seed": s, "duration_s": duration_s}
                       for s in range(1, n + 1)],
            "codecs": ["jpeg"], "policies": [{"kind": policy}]},
        "network_only_bytes": payload,
        "output": {"dir": str(folder / "out"), "frames": False, "plots": False},
    }
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--policy", default="rate")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--payload", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sweep-scale-") as tmp:
        path = write_sweep(Path(tmp), args.traces, args.duration, args.policy, args.payload)
        t0 = time.perf_counter()
        res = run_sweep_file(path, SweepOptions(workers=args.workers, live=False,
                                                console=Console(file=open(os.devnull, "w"))))
        wall = time.perf_counter() - t0
    runs = res.run.ok
    sim_s = runs * args.duration
    print(f"{args.traces} synthetic traces x {args.policy}, {args.duration:g} s each, "
          f"network-only, local pool of {args.workers}: {runs} ok, {res.failed} failed")
    print(f"wall {wall:.1f} s · {runs / wall:.1f} runs/s · "
          f"{sim_s / wall:.0f} simulated s per wall s over the sweep")


if __name__ == "__main__":
    main()
