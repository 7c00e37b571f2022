"""The binary-exact tie scenario both agreement suites run (fast path vs SimPy loop, kernel
vs fast path): 8 fps (0.125 s), 62.5 ms delays, whole-ms opportunities on an idle
12 Mbit/s link. Frame k departs at its capture time, so its report lands exactly on frame
k+1's capture; SimPy orders the sender's timeout first (it was scheduled before the
report's process started), and both faster loops must too."""

from __future__ import annotations

from diffstream.scenario.schema import Scenario


def tie_scenario(*policies: str) -> Scenario:
    return Scenario.model_validate({
        "name": "ties", "seed": 1, "duration_s": 3.0,
        "frame": {"width": 64, "height": 64, "fps": 8},
        "mode": {"kind": "interactive", "target_latency_ms": 200},
        "trace": {"kind": "constant", "mbps": 12.0, "duration_s": 10},
        "link": {"share": 1.0, "delay_ms": 62.5},
        "arms": [{"codec": "jpeg", "policy": {"kind": k}} for k in policies],
    })
