"""Scenario schema: parse a YAML scenario, validate it, and explain errors by file and line.

A scenario is one pydantic model tree with ``extra="forbid"`` everywhere, so a misspelt key
is an error rather than a silently ignored option. Validation errors are mapped back to the
YAML source line of the offending key (``scenarios/x.yaml:12: arms[2].policy.windw: ...``)
and raised as ``ConfigError`` (exit code 2).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from diffstream.control.policies import PolicySpec
from diffstream.metrics.qoe_presets import DiffstreamQoE, QoESpec, with_default_preset
from diffstream.pipeline.compute import ComputeSpec


def check_steps(steps: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """A steps trace's shape (the schema's validator): starts at t = 0, times increase,
    rates are finite and >= 0 (0 is an outage) and at least one is > 0."""
    times = [t for t, _ in steps]
    rates = [r for _, r in steps]
    if times[0] != 0:
        raise ValueError(f"the first step must start at t = 0, not {times[0]:g}; e.g. "
                         "[[0, 5.0], [10, 1.0]]")
    if any(b <= a for a, b in zip(times, times[1:], strict=False)):
        raise ValueError("step start times must increase")
    if any(not math.isfinite(r) or r < 0 for r in rates):
        raise ValueError("rates are Mbit/s and must be >= 0 (0 is an outage)")
    if not any(r > 0 for r in rates):
        raise ValueError("every rate is 0: the link would carry nothing; give one > 0")
    return steps


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- traces
class _TraceCommon(_Strict):
    scale: float = Field(1.0, gt=0, description="multiply the trace's capacity")
    offset_s: float = Field(0.0, ge=0, description="start this many seconds into the trace")


class FileTrace(_TraceCommon):
    kind: Literal["mahimahi", "pensieve", "sabre", "csv"]
    path: str = Field(description="trace file; relative to the scenario's folder, else the cwd")
    csv_unit: Literal["bps", "kbps", "mbps"] | None = None


class ConstantTrace(_TraceCommon):
    kind: Literal["constant"]
    mbps: float = Field(gt=0)
    duration_s: float = Field(60.0, gt=0)


class StepsTrace(_TraceCommon):
    kind: Literal["steps"]
    steps: list[tuple[float, float]] = Field(min_length=1, description="[[t_s, mbps], ...]")
    duration_s: float = Field(gt=0)

    @field_validator("steps")
    @classmethod
    def _steps_shape(cls, steps: list[tuple[float, float]]) -> list[tuple[float, float]]:
        return check_steps(steps)


class MarkovTrace(_TraceCommon):
    kind: Literal["markov"]
    seed: int | None = Field(None, description="defaults to the scenario seed")
    duration_s: float = Field(300.0, gt=0)


TraceSpec = Annotated[
    FileTrace | ConstantTrace | StepsTrace | MarkovTrace, Field(discriminator="kind")
]


# --------------------------------------------------------------------------- link
class QueueSpec(_Strict):
    bytes: int | None = Field(None, gt=0)
    packets: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_limit(self) -> QueueSpec:
        if (self.bytes is None) == (self.packets is None):
            raise ValueError("give exactly one of 'bytes' or 'packets'")
        return self


class NoLossSpec(_Strict):
    kind: Literal["none"]


class BernoulliSpec(_Strict):
    kind: Literal["bernoulli"]
    p: float = Field(ge=0, le=1)


class GilbertElliottSpec(_Strict):
    kind: Literal["gilbert_elliott"]
    p_good_to_bad: float = Field(ge=0, le=1)
    p_bad_to_good: float = Field(gt=0, le=1)
    loss_good: float = Field(0.0, ge=0, le=1)
    loss_bad: float = Field(1.0, ge=0, le=1)


LossSpec = Annotated[NoLossSpec | BernoulliSpec | GilbertElliottSpec, Field(discriminator="kind")]


class LinkSpec(_Strict):
    share: float = Field(
        1.0, gt=0, le=1, description="fraction of the trace's capacity this stream gets"
    )
    mtu: int = Field(1500, ge=576, le=9000)
    delay_ms: float = Field(20.0, ge=0, description="one-way propagation delay")
    feedback_delay_ms: float | None = Field(
        None, ge=0, description="receiver->sender report delay; defaults to delay_ms"
    )
    queue: QueueSpec | None = Field(None, description="drop-tail limit; none = unlimited")
    loss: LossSpec = NoLossSpec(kind="none")


# --------------------------------------------------------------------------- stream
class FrameSpec(_Strict):
    width: int = Field(ge=16, le=4096)
    height: int = Field(ge=16, le=4096)
    fps: float = Field(gt=0, le=240)

    @property
    def pixels(self) -> int:
        return self.width * self.height


class ContentSpec(_Strict):
    """What the sender streams: pans over photos (``skimage``), a folder of frames, or
    generation requests (``generated``: BADiff and its baselines generate each frame)."""

    source: Literal["skimage", "folder", "generated"] = "skimage"
    shot_frames: int = Field(50, ge=1)
    photos: list[str] | None = None
    path: str | None = None
    requests: int = Field(20, ge=1, description="generated: distinct requests before looping")
    seed: int | None = Field(None, description="generated: request seeds (default: the "
                             "scenario's seed)")
    model: str | None = Field(
        None, description="generated: the diffusion model folder (diffusers layout) whose "
        "full-step sample of each request is the quality reference, and which every "
        "generative arm must use (its ldm: option); default: the shipped pixel DDPM")
    model_steps: int = Field(100, ge=1, description="generated with model: sampler steps of "
                             "the reference (the generator's full run: 200 for LDM-200)")

    @model_validator(mode="after")
    def _folder_needs_path(self) -> ContentSpec:
        if self.source == "folder" and not self.path:
            raise ValueError("source 'folder' needs 'path'")
        if self.model is not None and self.source != "generated":
            raise ValueError("'model' is the generator of source 'generated' only")
        return self


class InteractiveMode(_Strict):
    kind: Literal["interactive"]
    target_latency_ms: float = Field(200.0, gt=0)


class PlaybackMode(_Strict):
    kind: Literal["playback"]
    startup_s: float = Field(1.0, ge=0)
    max_buffer_s: float = Field(4.0, gt=0)
    max_outstanding: int = Field(
        3, ge=1, description="frames requested but not yet reported (1 = one request per RTT)"
    )


ModeSpec = Annotated[InteractiveMode | PlaybackMode, Field(discriminator="kind")]


def check_codec_reference(ref: str) -> str:
    """A codec reference resolves: a built-in or registered name (nothing imported), else an
    import path or entry-point name, imported and checked against the codec contract now,
    so a wrong module or class fails at load time with the arm's line, not in a worker."""
    from diffstream.codecs.registry import codec_class, is_known_name

    if not is_known_name(ref):
        try:
            codec_class(ref)
        except KeyError as exc:  # UnknownCodecError: the message says what to fix
            raise PydanticCustomError("codec_reference", "{reason}", {"reason": str(exc)}
                                      ) from None
    return ref


# A scenario's ``codec:``: a built-in name, an import path or an entry-point name.
CodecRef = Annotated[str, AfterValidator(check_codec_reference)]


class ArmSpec(_Strict):
    name: str | None = None
    codec: CodecRef
    codec_options: dict[str, Any] = Field(default_factory=dict)
    policy: PolicySpec

    @property
    def label(self) -> str:
        return self.name or f"{self.codec}-{self.policy.kind}"

    @property
    def needs_rate_quality(self) -> bool:
        """MPC plans with the codec's measured rate-quality curve; the sender measures it
        only for such arms (a diffusion codec pays seconds per calibration frame). A plugin
        policy asks for it with a ``needs_rate_quality = True`` class attribute."""
        return self.policy.kind == "mpc" or getattr(self.policy, "needs_rate_quality",
                                                    False) is True


class OutputSpec(_Strict):
    dir: str = Field("runs/{name}", description="'{name}' is replaced by the scenario name")
    plots: bool = True


class Scenario(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    seed: int = 0
    duration_s: float = Field(gt=0, le=24 * 3600)
    frame: FrameSpec
    content: ContentSpec = ContentSpec()
    mode: ModeSpec = InteractiveMode(kind="interactive")
    trace: TraceSpec
    link: LinkSpec = LinkSpec()
    compute: ComputeSpec = ComputeSpec()
    max_bpp: float = Field(4.0, gt=0, description="cap on any budget, bits per pixel")
    qoe: QoESpec = DiffstreamQoE()
    arms: list[ArmSpec] = Field(min_length=1)
    output: OutputSpec = OutputSpec()

    @field_validator("qoe", mode="before")
    @classmethod
    def _qoe_preset(cls, value: object) -> object:
        return with_default_preset(value)  # `qoe: {metric, ...}` without a preset: diffstream

    @model_validator(mode="after")
    def _unique_arm_names(self) -> Scenario:
        labels = [a.label for a in self.arms]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(f"arm names must be unique; repeated: {dupes} (set 'name:')")
        return self

    @property
    def frames_per_arm(self) -> int:
        return max(1, math.floor(self.duration_s * self.frame.fps + 1e-9))
