"""The environment's endpoints: network-only frames that carry the real codec's floor and
rate-quality curve.

Why network-only, not the codec workers: a reward must be known when the agent acts, and
the same actions must give the same episode. With worker processes the decoded quality
arrives asynchronously (``poll_results``), so which results the sender has seen by frame k
depends on wall-clock timing (docs/architecture.md, "Determinism"), and a decode per frame
would make an episode cost seconds instead of milliseconds. Here the payload is exactly the
budget (``NetworkOnlyEndpoints(payload_bytes=None)``): the same wire frames cross the same
link model, and the quality of a slot comes from the codec's rate-quality curve
(``rl/reward.py``), measured once in process with the simulator's own calibration
(``FrameEncoder``, the curve MPC plans with).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffstream.control.policies.base import RateQualityModel
from diffstream.errors import ConfigError
from diffstream.pipeline.encoder import ArmInfo, FrameEncoder
from diffstream.scenario.schema import ArmSpec, Scenario
from diffstream.sim.endpoints import NetworkOnlyEndpoints


def calibrate_arm(scenario: Scenario, arm: ArmSpec, scenario_dir: Path
                  ) -> tuple[RateQualityModel, int]:
    """(rate-quality curve, floor in bits) of the arm's codec on the scenario's content."""
    info = FrameEncoder(scenario, str(scenario_dir)).open_arm(
        arm.label, arm.codec, arm.codec_options, calibrate=True)
    if info.rq is None:
        raise ConfigError(f"arm {arm.label}: codec {arm.codec} decoded fewer than two "
                          "calibration budgets, so it has no rate-quality curve to score "
                          "with; raise max_bpp or use another codec")
    return RateQualityModel(*info.rq), info.min_bits


class ModelledEndpoints(NetworkOnlyEndpoints):
    """``NetworkOnlyEndpoints`` whose arm reports a codec's floor and curve (the sender's
    observation then holds the same ``min_bits`` and ``rate_quality`` as a real run)."""

    def __init__(self, scenario: Scenario, rate_quality: RateQualityModel,
                 min_bits: int) -> None:
        super().__init__(scenario, payload_bytes=None)
        self.rate_quality = rate_quality
        self.min_bits = int(min_bits)

    def start_arm(self, arm: str, codec: str, options: dict[str, Any],
                  calibrate: bool, motion_ages: int = 0) -> ArmInfo:
        base = super().start_arm(arm, codec, options, calibrate)
        rq = self.rate_quality
        return ArmInfo(min_bits=self.min_bits, progressive=False,
                       rq=(rq.bpp, rq.quality_db) if calibrate else None,
                       header_bytes=base.header_bytes)
