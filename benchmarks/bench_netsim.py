"""Network-only simulation speed: a 10-minute trace at 30 frames/s.

The codec is replaced by fixed-size payloads (NetworkOnlyEndpoints), everything else is the
real loop: SimPy sender process, policy, wire frames, packetisation, the mahimahi-accounting
link, delayed feedback reports and the playout model. Prints simulated seconds per wall
second (target >= 100x real time) for a few payload sizes and policies, all in one process.

    python benchmarks/bench_netsim.py [--duration 600] [--fps 30]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from diffstream.scenario.build import build_trace
from diffstream.scenario.schema import Scenario
from diffstream.sim.arm import ArmSimulation
from diffstream.sim.endpoints import NetworkOnlyEndpoints

ROOT = Path(__file__).resolve().parents[1]


def scenario(duration: float, fps: float, policy: dict) -> Scenario:
    return Scenario.model_validate({
        "name": "bench_netsim", "seed": 1, "duration_s": duration,
        "frame": {"width": 128, "height": 128, "fps": fps},
        "trace": {"kind": "mahimahi", "path": str(ROOT / "scenarios/traces/lte_like.down")},
        "link": {"share": 0.2, "delay_ms": 30, "queue": {"bytes": 60000},
                 "loss": {"kind": "bernoulli", "p": 0.01}},
        "arms": [{"codec": "jpeg", "policy": policy}],
    })


def run_once(duration: float, fps: float, payload: int | None, policy: dict) -> tuple[float, int]:
    sc = scenario(duration, fps, policy)
    trace = build_trace(sc, ROOT / "scenarios" / "x.yaml").scaled(sc.link.share)
    ep = NetworkOnlyEndpoints(sc, payload)
    t0 = time.perf_counter()
    res = ArmSimulation(sc, sc.arms[0], trace, ep, calibrate=False).run()
    wall = time.perf_counter() - t0
    packets = sum(r.packets for r in res.records)
    return wall, packets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=600.0)
    ap.add_argument("--fps", type=float, default=30.0)
    args = ap.parse_args()
    cases = [
        ("fixed 1 kB payloads, fixed policy", 1000, {"kind": "fixed", "bpp": 0.5}),
        ("fixed 4 kB payloads, rate policy", 4000, {"kind": "rate"}),
        ("budget-sized payloads, mpc policy", 0, {"kind": "mpc"}),
    ]
    print(f"network-only: {args.duration:g} s of trace at {args.fps:g} fps "
          f"({int(args.duration * args.fps)} frames)")
    print(f"{'case':40s} {'wall s':>8s} {'packets':>9s} {'sim s / wall s':>15s}")
    for label, payload, policy in cases:
        wall, packets = run_once(args.duration, args.fps, payload or None, policy)
        print(f"{label:40s} {wall:8.2f} {packets:9d} {args.duration / wall:14.0f}x")


if __name__ == "__main__":
    main()
