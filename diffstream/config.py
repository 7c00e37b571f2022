"""Scenario schema: parse a YAML scenario, validate it, and explain errors by file and line.

A scenario is one pydantic model tree with ``extra="forbid"`` everywhere, so a misspelt key
is an error rather than a silently ignored option. Validation errors are mapped back to the
YAML source line of the offending key (``scenarios/x.yaml:12: arms[2].policy.windw: ...``)
and raised as ``ConfigError`` (exit code 2).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from diffstream.errors import ConfigError, located
from diffstream.metrics.qoe import QoEWeights
from diffstream.policy import PolicySpec
from diffstream.precheck import check_steps
from diffstream.yamlguard import check_expansion


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

    @model_validator(mode="after")
    def _folder_needs_path(self) -> ContentSpec:
        if self.source == "folder" and not self.path:
            raise ValueError("source 'folder' needs 'path'")
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


class ProfileCost(_Strict):
    encode_ms: float = Field(ge=0)
    decode_ms: float = Field(ge=0)
    per_step_ms: float = Field(0.0, ge=0, description="added per codec step (diffusion)")
    decode_per_step_ms: float | None = Field(
        None, ge=0, description="per step on decode, when it differs (default: per_step_ms); "
        "0 for codecs whose steps all run at the sender (BADiff generates, then codes)")


class ComputeSpec(_Strict):
    """``measured``: charge what the codec took on this machine (not reproducible).
    ``profile``: charge a device profile's costs (named, or inline per codec): deterministic."""

    kind: Literal["measured", "profile"] = "profile"
    profile: str | dict[str, ProfileCost] = "cpu-2core"


class ArmSpec(_Strict):
    name: str | None = None
    codec: str
    codec_options: dict[str, Any] = Field(default_factory=dict)
    policy: PolicySpec

    @property
    def label(self) -> str:
        return self.name or f"{self.codec}-{self.policy.kind}"

    @property
    def needs_rate_quality(self) -> bool:
        """MPC plans with the codec's measured rate-quality curve; the sender measures it
        only for such arms (a diffusion codec pays seconds per calibration frame)."""
        return self.policy.kind == "mpc"

    @field_validator("codec")
    @classmethod
    def _known_codec(cls, name: str) -> str:
        from diffstream.codecs import available_codecs

        if name not in available_codecs():
            raise ValueError(f"unknown codec {name!r}; available: {', '.join(available_codecs())}")
        return name


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
    qoe: QoEWeights = QoEWeights()
    arms: list[ArmSpec] = Field(min_length=1)
    output: OutputSpec = OutputSpec()

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


# --------------------------------------------------------------------------- loading
class _LineMap:
    """Maps a pydantic error location to the YAML line of the nearest existing node."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.root = root

    def line_of(self, loc: tuple[Any, ...]) -> int | None:
        node = self.root
        line = node.start_mark.line + 1 if node is not None else None
        for key in loc:
            child = self._child(node, key)
            if child is None:
                continue  # discriminator tags and other synthetic loc parts
            node, line = child
        return line

    @staticmethod
    def _child(node: yaml.Node | None, key: Any) -> tuple[yaml.Node, int] | None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if getattr(k, "value", None) == key:
                    # point at the key for missing/extra errors, the value is on the same line
                    return v, k.start_mark.line + 1
        if isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            if 0 <= key < len(node.value):
                child = node.value[key]
                return child, child.start_mark.line + 1
        return None


def _all_field_names(model: type[BaseModel]) -> set[str]:
    names: set[str] = set()
    stack: list[Any] = [model]
    seen: set[Any] = set()
    while stack:
        m = stack.pop()
        if m in seen:
            continue
        seen.add(m)
        if isinstance(m, type) and issubclass(m, BaseModel):
            for name, f in m.model_fields.items():
                names.add(name)
                stack.extend(_models_in(f.annotation))
    return names


def _models_in(annotation: Any) -> Iterator[Any]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        yield from _models_in(arg)
    meta = getattr(annotation, "__metadata__", None)
    if meta is not None:
        yield from _models_in(getattr(annotation, "__origin__", None))


def _fmt_loc(loc: tuple[Any, ...], data: Any) -> str:
    """'arms[2].policy.window', skipping discriminator tags that are not in the data."""
    out = ""
    node = data
    tagged: set[int] = set()
    for key in loc:
        if isinstance(node, dict) and node.get("kind") == key and id(node) not in tagged:
            tagged.add(id(node))  # the union tag (trace.steps is also a field of 'steps')
            continue
        if isinstance(key, int) and isinstance(node, list) and 0 <= key < len(node):
            out += f"[{key}]"
            node = node[key]
        elif isinstance(node, dict) and key in node:
            out += ("." if out else "") + str(key)
            node = node[key]
        elif isinstance(node, dict) and key not in node and isinstance(key, str):
            # a tag (pydantic puts the union member name in loc) or a missing/extra key
            if node.get("kind") == key:
                continue
            out += ("." if out else "") + str(key)
        else:
            out += ("." if out else "") + str(key)
    return out or "(top level)"


def _hint(err: dict[str, Any], known: set[str]) -> str:
    kind = err.get("type", "")
    loc = err.get("loc", ())
    last = loc[-1] if loc else None
    if kind == "extra_forbidden" and isinstance(last, str):
        close = difflib.get_close_matches(last, sorted(known), n=1)
        return f"unknown key; did you mean {close[0]!r}?" if close else "unknown key; remove it"
    if kind == "missing":
        return "required; add it"
    return ""


def format_validation_error(path: Path, err: ValidationError, root: yaml.Node | None,
                            data: Any, model: type[BaseModel] | None = None) -> str:
    lines = _LineMap(root)
    known = _all_field_names(model or Scenario)
    msgs = []
    for e in err.errors():
        loc = tuple(e.get("loc", ()))
        msg = e.get("msg", "invalid")
        line_loc = loc + ("kind",) if e.get("type") == "union_tag_invalid" else loc
        hint = _hint(e, known)
        text = f"{_fmt_loc(loc, data)}: {msg}" + (f" ({hint})" if hint else "")
        msgs.append(located(path, lines.line_of(line_loc), text))
    n = len(msgs)
    head = f"{path}: scenario has {n} error{'s' if n > 1 else ''}; see the README's Scenario schema"
    return "\n".join([head, *msgs])


def resolve_path(raw: str, scenario_path: Path) -> Path | None:
    """Relative paths: the scenario's folder first, then the current directory."""
    p = Path(raw).expanduser()
    if p.is_absolute():
        return p if p.exists() else None
    for base in (scenario_path.parent, Path.cwd()):
        cand = (base / p).resolve()
        if cand.exists():
            return cand
    return None


def read_yaml(path: Path, what: str) -> tuple[dict[str, Any], yaml.Node | None]:
    """Parse ``path`` into (mapping, node tree for line numbers); ConfigError otherwise.

    ``what`` names the kind of file in messages ("scenario", "sweep")."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc}") from None
    try:
        root = yaml.compose(text)
        check_expansion(root, path)  # before anything expands an alias bomb
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(located(path, line, f"not valid YAML: {problem}")) from None
    if not isinstance(data, dict):
        raise ConfigError(located(path, 1, f"a {what} must be a YAML mapping of keys"))
    return data, root


def load_scenario(path: str | Path, model: type[Scenario] | None = None) -> tuple[Scenario, Path]:
    """Parse and validate a scenario file. Returns the model and the scenario's path.

    Raises ConfigError naming the file, line and field on any problem, including a trace
    or content folder that does not exist. ``model``: a Scenario subclass to validate with
    (live mode's adds a ``live:`` section).
    """
    path = Path(path)
    data, root = read_yaml(path, "scenario")
    try:
        scenario = (model or Scenario).model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc, root, data, model)) from None

    lines = _LineMap(root)
    if isinstance(scenario.trace, FileTrace):
        if resolve_path(scenario.trace.path, path) is None:
            raise ConfigError(
                located(path, lines.line_of(("trace", "path")),
                        f"trace.path: file {scenario.trace.path!r} not found (looked next to the "
                        f"scenario and in {Path.cwd()}); fix the path or generate the trace")
            )
        if scenario.trace.kind == "csv" and scenario.trace.csv_unit is None:
            raise ConfigError(
                located(path, lines.line_of(("trace",)),
                        "trace.csv_unit: required for csv traces (bps, kbps or mbps)")
            )
    if scenario.content.source == "folder":
        assert scenario.content.path is not None
        if resolve_path(scenario.content.path, path) is None:
            raise ConfigError(
                located(path, lines.line_of(("content", "path")),
                        f"content.path: folder {scenario.content.path!r} not found")
            )
    if scenario.content.source != "generated":
        from diffstream.codecs import codec_class

        for i, arm in enumerate(scenario.arms):
            if hasattr(codec_class(arm.codec), "generate"):
                raise ConfigError(
                    located(path, lines.line_of(("arms", i, "codec")),
                            f"arms[{i}].codec: {arm.codec!r} generates its frames from "
                            f"generation requests; set content: {{source: generated}} (or use "
                            f"a codec that compresses captured images)"))
    if isinstance(scenario.compute.profile, str) and scenario.compute.kind == "profile":
        from diffstream.compute import PROFILES

        if scenario.compute.profile not in PROFILES:
            raise ConfigError(
                located(path, lines.line_of(("compute", "profile")),
                        f"compute.profile: unknown profile {scenario.compute.profile!r}; "
                        f"known: {', '.join(sorted(PROFILES))}, or give per-codec costs inline")
            )
    from diffstream.precheck import check_inputs

    check_inputs(scenario, path, lines)  # content, codec_options, trace: before any worker
    return scenario, path


def scenario_to_yaml(scenario: Scenario) -> str:
    """The fully resolved scenario (defaults filled in), as written to the output folder."""
    return yaml.safe_dump(scenario.model_dump(mode="json"), sort_keys=False)
