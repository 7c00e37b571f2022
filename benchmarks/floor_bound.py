"""How many frames of a scenario can reach the viewer on time if each is the codec's smallest?

A clairvoyant bound on skips: a fluid FIFO over the scenario's own share-scaled trace (no
loss, no feedback delay), one floor-sized frame per capture, sent only when it would arrive
by its deadline (capture + target latency, minus one-way delay and decode). Every frame it
cannot send is a skip no sender could avoid at that floor. Used for the WebP + MPC skip
analysis in docs/policies/predictors_mpc.md.

    python benchmarks/floor_bound.py [scenarios/lte_trace.yaml] [--floor webp=2752 ...]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from diffstream.netsim.trace import Trace
from diffstream.scenario.build import build_trace
from diffstream.scenario.load import load_scenario
from diffstream.transport.packets import wire_bytes_for_payload

HEADER_BYTES = 160  # the wire-frame header of the default scenario's frames (157-160 B)


def clear_time(trace: Trace, t: float, bits: float) -> float:
    """The first time u >= t by which the link has carried ``bits`` since t."""
    hi = t + 0.01
    while trace.capacity_bytes(t, hi) * 8 < bits:
        hi = t + 2 * (hi - t)
        if hi - t > 1e4:
            return math.inf
    lo = t
    for _ in range(40):
        mid = (lo + hi) / 2
        if trace.capacity_bytes(t, mid) * 8 >= bits:
            hi = mid
        else:
            lo = mid
    return hi


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario", nargs="?", default="scenarios/lte_trace.yaml")
    ap.add_argument("--floor", nargs="+", default=["webp=2560", "webp-content=2752",
                                                   "jpeg=760"],
                    help="NAME=PAYLOAD_BITS floors to test")
    ap.add_argument("--encode-ms", type=float, default=2.0)
    ap.add_argument("--decode-ms", type=float, default=0.2)
    args = ap.parse_args()
    sc, path = load_scenario(Path(args.scenario))
    assert sc.mode.kind == "interactive", "the bound is for interactive scenarios"
    trace = build_trace(sc, path).scaled(sc.link.share)
    interval, n = 1.0 / sc.frame.fps, sc.frames_per_arm
    owd, latency = sc.link.delay_ms / 1000.0, sc.mode.target_latency_ms / 1000.0
    enc, dec = args.encode_ms / 1000.0, args.decode_ms / 1000.0
    caps = np.array([trace.capacity_bytes(k * interval, (k + 1) * interval) * 8
                     for k in range(n)])
    print(f"{n} frames; capacity per interval (bits): median {np.median(caps):.0f}, "
          f"mean {caps.mean():.0f}, p25 {np.percentile(caps, 25):.0f}")
    for item in args.floor:
        name, bits = item.split("=")
        wire = 8 * wire_bytes_for_payload(int(bits), HEADER_BYTES, sc.link.mtu)
        free, on_time = 0.0, 0
        for k in range(n):
            done = clear_time(trace, max(free, k * interval + enc), wire)
            if done + owd + dec <= k * interval + latency:
                on_time += 1
                free = done
        print(f"{name}: floor {bits} payload bits = {wire} wire bits; intervals that cannot "
              f"carry one: {(caps < wire).sum()}; on time at best: {on_time}, so at least "
              f"{n - on_time} skips")


if __name__ == "__main__":
    main()
