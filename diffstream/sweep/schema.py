"""Sweep schema: a grid (traces × arms × link shares × seeds) applied onto a base scenario.

A sweep file is a YAML mapping with a top-level ``sweep:`` key (a scenario never has one,
its schema forbids unknown keys), so ``run_sim.py`` can tell the two apart by peeking.

    name: sweep_lte
    base: lte_trace.yaml            # a scenario file (relative to this file) or an inline mapping
    overrides: {duration_s: 30}     # optional, deep-merged onto the base
    sweep:
      traces:                       # files, folders or globs, each with its format
        - {kind: mahimahi, path: traces/lte_like*.down}
      arms: [...]                   # or codecs: [...] with policies: [...]; default: the base's
      shares: [0.02, 0.03]          # link.share values; default: the base's
      seeds: [1, 2, 3]              # default: the base's seed
    network_only_bytes: null        # fixed-size payloads instead of codecs (0 = the budget)
    report: {oracle: auto, baseline: auto}
    output: {dir: runs/{name}, frames: true, plots: true}

Validation reuses the scenario loader's machinery: pydantic models with ``extra="forbid"``,
errors mapped back to ``file:line`` of the offending key, raised as ``ConfigError`` (exit 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from diffstream.control.policies import PolicySpec
from diffstream.errors import ConfigError, located
from diffstream.plugins import add_search_dirs, mentions_import_path
from diffstream.scenario.schema import ArmSpec, CodecRef, ConstantTrace, MarkovTrace, StepsTrace
from diffstream.scenario.yaml_lines import (
    _all_field_names,
    _fmt_loc,
    _hint,
    _LineMap,
    _models_in,
    read_yaml,
    resolve_path,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TraceFiles(_Strict):
    """Trace files of one format: a file, a folder (its files) or a glob (``**`` recurses).

    The format must be stated because the loaders differ (mahimahi opportunities, Pensieve
    ``t Mbps`` rows, Sabre JSON periods, CSV with a unit); a folder of mixed formats needs
    one entry per format.
    """

    kind: Literal["mahimahi", "pensieve", "sabre", "csv"]
    path: str = Field(description="file, folder or glob; relative to the sweep file, else cwd")
    exclude: list[str] = Field(default_factory=list,
                               description="file-name globs to leave out, e.g. '*.md'")
    csv_unit: Literal["bps", "kbps", "mbps"] | None = None
    scale: float = Field(1.0, gt=0)
    offset_s: float = Field(0.0, ge=0)
    optional: bool = Field(False, description="a path that matches no file is skipped with a "
                           "note instead of failing (data that may be absent, e.g. ../shared)")

    @model_validator(mode="after")
    def _csv_needs_unit(self) -> TraceFiles:
        if self.kind == "csv" and self.csv_unit is None:
            raise ValueError("csv traces need 'csv_unit' (bps, kbps or mbps)")
        return self


SweepTraceSpec = Annotated[
    TraceFiles | ConstantTrace | StepsTrace | MarkovTrace, Field(discriminator="kind")
]

Share = Annotated[float, Field(gt=0, le=1)]


class Grid(_Strict):
    """The axes of the sweep; an axis left out takes the base scenario's single value."""

    traces: list[SweepTraceSpec] | None = Field(None, min_length=1)
    arms: list[ArmSpec] | None = Field(None, min_length=1)
    codecs: list[CodecRef] | None = Field(None, min_length=1)
    policies: list[PolicySpec] | None = Field(None, min_length=1)
    shares: list[Share] | None = Field(None, min_length=1)
    seeds: list[int] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Grid:
        if self.arms is not None and (self.codecs is not None or self.policies is not None):
            raise ValueError("give either 'arms' or 'codecs' with 'policies', not both")
        if (self.codecs is None) != (self.policies is None):
            raise ValueError("'codecs' and 'policies' go together (their product is the arms)")
        for axis in ("shares", "seeds"):
            values = getattr(self, axis)
            if values is not None and len(set(values)) != len(values):
                raise ValueError(f"'{axis}' has repeated values: {values}")
        labels = [a.label for a in self.arm_specs() or []]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(f"arm names must be unique; repeated: {dupes} (set 'name:' on "
                             "the arms, or list them under 'arms' instead of codecs×policies)")
        return self

    def arm_specs(self) -> list[ArmSpec] | None:
        """The arms this grid asks for (None: the base scenario's)."""
        if self.arms is not None:
            return list(self.arms)
        if self.codecs is not None and self.policies is not None:
            return [ArmSpec(codec=c, policy=p) for c in self.codecs for p in self.policies]
        return None


class ReportSpec(_Strict):
    """Which arms the aggregate compares against (see ``aggregate.py`` for the definitions).

    ``oracle``: an arm label, ``none``, or ``auto`` (for each arm the oracle-policy arm of the
    same codec, else the sweep's only oracle-policy arm). ``baseline``: an arm label,
    ``none`` (QoE 0), or ``auto`` (the fixed-policy arm of the same codec, else the only one).
    """

    oracle: str = "auto"
    baseline: str = "auto"


class SweepOutput(_Strict):
    dir: str = Field("runs/{name}", description="'{name}' is replaced by the sweep name")
    frames: bool = Field(True, description="keep every run's frame log (frames/<id>.jsonl)")
    plots: bool = True


class Sweep(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    base: str | dict[str, Any] = Field(description="scenario file, or an inline scenario")
    overrides: dict[str, Any] = Field(default_factory=dict,
                                      description="deep-merged onto the base scenario")
    sweep: Grid
    network_only_bytes: int | None = Field(
        None, ge=0, description="fixed-size payloads instead of codecs (0: exactly the budget)")
    report: ReportSpec = ReportSpec()
    output: SweepOutput = SweepOutput()


# --------------------------------------------------------------------------- loading
def is_sweep_file(path: str | Path) -> bool:
    """True when ``path`` is a YAML mapping with a top-level ``sweep`` key.

    Anything unreadable returns False so the scenario loader reports it in its usual way.
    """
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "sweep" in data



def _names_at(model: type[BaseModel], loc: tuple[Any, ...]) -> set[str]:
    """Field names of the model(s) holding ``loc``'s last key, for "did you mean" hints that
    suggest a sibling key rather than any key of the schema."""
    models: set[Any] = {model}
    for key in loc[:-1]:
        inner = {sub for m in models if isinstance(key, str) and key in m.model_fields
                 for sub in _models_in(m.model_fields[key].annotation)}
        if inner:
            models = inner  # list indices and union tags keep the candidates as they are
    return {name for m in models for name in m.model_fields}


def format_errors(path: Path, errors: list[Any], root: yaml.Node | None, data: Any,
                  model: type[BaseModel], what: str, prefix: tuple[Any, ...] = ()) -> str:
    """``file:line: field.path: message (hint)`` for every error, under a one-line head.

    ``prefix`` locates ``data`` inside the file (an inline base scenario sits under ``base``).
    """
    lines = _LineMap(root)
    msgs = []
    for e in errors:
        loc = tuple(e.get("loc", ()))
        line_loc = loc + ("kind",) if e.get("type") == "union_tag_invalid" else loc
        hint = _hint(e, _names_at(model, loc) or _all_field_names(model))
        field = _fmt_loc(loc, data)
        if prefix:
            field = ".".join(str(p) for p in prefix) + ("." + field if loc else "")
        text = f"{field}: {e.get('msg', 'invalid')}" + (f" ({hint})" if hint else "")
        msgs.append(located(path, lines.line_of(prefix + line_loc), text))
    n = len(msgs)
    head = f"{path}: {what} has {n} error{'s' if n > 1 else ''}; see docs/sweeps.md"
    return "\n".join([head, *msgs])


def load_sweep(path: str | Path) -> tuple[Sweep, Path, dict[str, Any], yaml.Node | None]:
    """Parse and validate a sweep file: (model, path, raw mapping, node tree).

    The raw mapping and node tree let the planner point later errors (in the base scenario,
    the overrides or a trace glob) at their line.
    """
    path = Path(path)
    data, root = read_yaml(path, "sweep")
    _plugin_dirs(data, path)
    try:
        sweep = Sweep.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(path, exc.errors(), root, data, Sweep, "sweep")) from None
    return sweep, path, data, root


def _plugin_dirs(data: dict[str, Any], path: Path) -> None:
    """Plugins named by import path are also looked for next to the sweep file, next to its
    base scenario and in the cwd (``scenario.load`` does the same for a scenario)."""
    base = data.get("base")
    base_path = resolve_path(base, path) if isinstance(base, str) else None
    base_data: Any = None
    if base_path is not None:
        try:
            base_data = read_yaml(base_path, "scenario")[0]
        except ConfigError:
            base_data = None  # the planner reports an unreadable base with its line
    if mentions_import_path(data) or mentions_import_path(base_data):
        add_search_dirs([path.parent, *([base_path.parent] if base_path else []), Path.cwd()])


def sweep_to_yaml(sweep: Sweep) -> str:
    """The validated sweep with every default filled in (written to the output folder)."""
    return yaml.safe_dump(sweep.model_dump(mode="json"), sort_keys=False)
