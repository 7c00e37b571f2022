"""Planning time of ``policy: {kind: optimal}`` for one arm (the whole-arm DP).

    python benchmarks/bench_optimal.py [--seconds 60] [--fps 10] [--repeat 3]

Plans a 64x64 arm of ``seconds * fps`` frames on the project's ``lte_like.down`` trace (share
0.05) from its first frame, interactive (300 ms target) and playback (0.5 s startup, 2 s
buffer), with the default options, and prints the best of ``--repeat`` wall times and the
size of the action table. ``interactive+content`` is the interactive arm with the content
known (a steady pan: motion ``0.004 * age``; per-frame floors alternating 700 / 1100 bits),
which plans with the shown image's age in its state (``optimal_aged``); ``+loss`` adds the
lte_trace scenario's Gilbert-Elliott loss (p_gb 0.005, p_bg 0.3), planned as expected values
(the direct ``O(M A^2 R)`` maximum). A simulated arm replans at least once more (frame 1,
when the encode estimate first arrives).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from diffstream.control.policies import OptimalPolicy
from diffstream.control.policies.base import Observation, OracleView, RateQualityModel
from diffstream.netsim.loaders import load_trace
from diffstream.netsim.loss import GilbertElliott, frame_delivery_prob

ROOT = Path(__file__).resolve().parents[1]
RQ = RateQualityModel(bpp=(0.1, 0.5, 1.0, 2.0, 4.0), quality_db=(24.0, 29.0, 32.0, 35.0, 38.0))


def wire(bits: int) -> float:
    payload = math.ceil(bits / 8)
    return 60.0 + payload + 40.0 * max(0, math.ceil(payload / 1460) - 1)


def first_observation(mode: str, frames: int, fps: float, content: bool = False,
                      loss: bool = False) -> Observation:
    trace = load_trace(ROOT / "scenarios/traces/lte_like.down", "mahimahi").scaled(0.05)
    motion = [[0.004 * a for a in range(1, 9)]] * frames if content else None
    floors = [700 + 400 * (k // 50 % 2) for k in range(frames)] if content else None
    view = OracleView(capacity_bytes=trace.capacity_bytes, backlog_bytes=0.0, delay_s=0.03,
                      frames_total=frames, duration_s=frames / fps, finish_s=trace.finish_s,
                      startup_s=0.5, max_buffer_s=2.0, queue_limit_bytes=30000.0,
                      motion_mse=motion, frame_floors=floors,
                      delivery_prob=frame_delivery_prob(GilbertElliott(0.005, 0.3), 1500)
                      if loss else None)
    return Observation(
        now_s=0.0, frame_index=0, frame_interval_s=1.0 / fps, pixels=4096, mode=mode,  # type: ignore[arg-type]
        capture_s=0.0, deadline_s=0.3 if mode == "interactive" else None, throughput_bps=(),
        rtt_s=None, one_way_delay_s=None, loss_rate=0.0, inflight_bytes=0.0, buffer_s=0.0,
        encode_s=0.005, decode_s=0.01, min_bits=700, max_bits=4 * 4096, wire_bytes=wire,
        rate_quality=RQ, future=view)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    frames = max(1, math.floor(args.seconds * args.fps + 1e-9))
    for label in ("interactive", "interactive+content", "interactive+content+loss",
                  "playback"):
        mode = label.split("+")[0]
        obs = first_observation(mode, frames, args.fps, content="+content" in label,
                                loss=label.endswith("+loss"))
        best = math.inf
        for _ in range(args.repeat):
            policy = OptimalPolicy()
            t = time.perf_counter()
            policy.budget_bits(obs)
            best = min(best, time.perf_counter() - t)
        plan = policy._arm
        assert plan is not None
        table = plan.plan.action
        print(f"{label:24s} {frames} frames: plan {best:.2f} s, action table "
              f"{table.shape} {table.nbytes / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
