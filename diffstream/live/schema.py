"""A live scenario: the simulator's scenario schema plus a ``live:`` section.

Everything else keeps its simulator meaning where it applies: ``frame`` (size, fps),
``content``, ``mode`` (interactive only: real time has no playback fetch loop yet),
``duration_s`` (how long the stream runs), ``max_bpp``, ``qoe``, ``output``, and the arm that
streams (``live.arm``, default the first). ``trace`` and ``link`` are used only when shaping
is on: the sender then pushes every frame through the simulator's link model (trace x
``link.share``, ``link.queue``, ``link.delay_ms``, ``link.loss``) and releases it to the real
network when that link would have delivered it. ``compute`` is ignored: live codec work
takes the time it takes (``measured``).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from diffstream.errors import ConfigError, located
from diffstream.pipeline.compute import ComputeSpec
from diffstream.scenario.load import load_scenario
from diffstream.scenario.schema import ArmSpec, Scenario
from diffstream.scenario.yaml_lines import _LineMap


class LiveSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    arm: str | None = Field(None, description="name (label) of the arm to stream; default first")
    shaping: bool = Field(False, description="pace frames to trace x link.share (LTE on a LAN)")
    hwm: int = Field(32, ge=1, le=100_000, description="messages queued per direction (ZMQ HWM)")
    heartbeat_ms: int = Field(500, ge=50, le=60_000, description="ZMTP heartbeat interval")
    peer_timeout_s: float = Field(3.0, gt=0, description="peer silent this long: reconnecting")
    ping_interval_s: float = Field(0.5, gt=0, description="clock/RTT probes from the receiver")
    report_timeout_s: float = Field(
        10.0, gt=0, description="a frame with no report after this long is recorded lost")
    max_frame_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="larger frames are dropped")
    replay_window: int = Field(1024, ge=16, le=1 << 20, description="seqs tracked per session")
    max_gap_s: float = Field(
        600.0, gt=0, description="a seq jump over this many seconds of frames is refused")
    max_scored_gap_s: float = Field(
        10.0, ge=0, description="lost frames of a longer gap are logged but not scored")
    status_every_s: float = Field(5.0, gt=0, description="plain-line status period (no TTY)")


class LiveScenario(Scenario):
    live: LiveSpec = LiveSpec()

    @property
    def stream_arm(self) -> ArmSpec:
        name = self.live.arm
        for arm in self.arms:
            if name is None or arm.label == name:
                return arm
        raise ValueError(f"live.arm {name!r} is not one of {[a.label for a in self.arms]}")


def load_live_scenario(path: str | Path) -> tuple[LiveScenario, Path]:
    """Load and check a live scenario; ConfigError (exit 2) names file, line and field."""
    scenario, spath = load_scenario(path, LiveScenario)
    assert isinstance(scenario, LiveScenario)
    root = yaml.compose(spath.read_text(encoding="utf-8"))
    lines = _LineMap(root)
    if scenario.mode.kind != "interactive":
        raise ConfigError(located(spath, lines.line_of(("mode", "kind")),
                                  "mode.kind: live mode streams interactively; use "
                                  "{kind: interactive, target_latency_ms: ...}"))
    try:
        arm = scenario.stream_arm
    except ValueError as exc:
        raise ConfigError(located(spath, lines.line_of(("live", "arm")), str(exc))) from None
    if getattr(arm.policy, "needs_future", False) is True and not scenario.live.shaping:
        raise ConfigError(located(spath, lines.line_of(("live", "shaping")) or
                                  lines.line_of(("arms",)),
                                  f"the {arm.policy.kind} policy reads the link's future, "
                                  "which exists only when shaping is on (live.shaping: true)"))
    measured = scenario.model_copy(update={"compute": ComputeSpec(kind="measured")})
    return measured, spath
