"""Loading a scenario file: YAML -> validated ``Scenario`` with file:line errors, the checks
that need more than the schema (``scenario.precheck``), and the resolved YAML written with
every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from diffstream.errors import ConfigError, located
from diffstream.plugins import add_search_dirs, mentions_import_path
from diffstream.scenario.schema import FileTrace, Scenario
from diffstream.scenario.yaml_lines import (
    _LineMap,
    format_validation_error,
    read_yaml,
    resolve_path,
)


def load_scenario(path: str | Path, model: type[Scenario] | None = None) -> tuple[Scenario, Path]:
    """Parse and validate a scenario file. Returns the model and the scenario's path.

    Raises ConfigError naming the file, line and field on any problem, including a trace
    or content folder that does not exist. ``model``: a Scenario subclass to validate with
    (live mode's adds a ``live:`` section).
    """
    path = Path(path)
    data, root = read_yaml(path, "scenario")
    if mentions_import_path(data):  # plugins next to the scenario, or in the cwd
        add_search_dirs([path.parent, Path.cwd()])
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
    _check_capabilities(scenario, path, lines)
    if scenario.content.source == "generated":
        _check_generator(scenario, path, lines)
    from diffstream.scenario.precheck import check_inputs

    check_inputs(scenario, path, lines)  # content, codec_options, trace: before any worker
    problem = compute_profile_problem(scenario)  # after the options checks: costs read them
    if problem:
        raise ConfigError(located(path, lines.line_of(("compute", "profile")), problem))
    return scenario, path


def _check_capabilities(scenario: Scenario, path: Path, lines: _LineMap) -> None:
    """A generative codec needs generated content; a codec whose declaration promises
    methods it lacks is refused here, not inside a worker."""
    from diffstream.codecs import codec_class
    from diffstream.codecs.base import capabilities_of

    for i, arm in enumerate(scenario.arms):
        where = located(path, lines.line_of(("arms", i, "codec")), f"arms[{i}].codec")
        try:
            caps = capabilities_of(codec_class(arm.codec))
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if caps.generative and scenario.content.source != "generated":
            raise ConfigError(
                f"{where}: {arm.codec!r} generates its frames from generation requests; set "
                f"content: {{source: generated}} (or use a codec that compresses captured "
                f"images)")


def known_profiles(scenario: Scenario) -> set[str]:
    """Profile names the scenario's compute spec may use: the central table's and those
    the arms' codecs declare (``compute_costs`` / ``costs_for``)."""
    from diffstream.codecs import codec_class
    from diffstream.codecs.base import declared_costs
    from diffstream.pipeline.compute import PROFILES

    names = set(PROFILES)
    for arm in scenario.arms:
        try:
            names |= set(declared_costs(codec_class(arm.codec), arm.codec_options))
        except (KeyError, ValueError):
            continue  # bad options (an unknown inner codec): the options checks say so
    return names


def compute_profile_problem(scenario: Scenario) -> str | None:
    """The error for ``compute: {profile: NAME}`` when no table and no arm's codec knows
    NAME; None when it is fine."""
    spec = scenario.compute
    if spec.kind != "profile" or not isinstance(spec.profile, str):
        return None
    known = known_profiles(scenario)
    if spec.profile in known:
        return None
    return (f"compute.profile: unknown profile {spec.profile!r}; known to this scenario's "
            f"codecs: {', '.join(sorted(known))}, or give per-codec costs inline")


def scenario_to_yaml(scenario: Scenario) -> str:
    """The fully resolved scenario (defaults filled in), as written to the output folder."""
    return yaml.safe_dump(scenario.model_dump(mode="json"), sort_keys=False)


def _check_generator(scenario: Scenario, path: Path, lines: Any) -> None:
    """Generated content: every generative arm must sample the model whose full-step sample
    is the reference (``content.model``), else arms are scored against images they could not
    have produced (paper 000 compares each method on one model)."""
    from diffstream.codecs import codec_class
    from diffstream.codecs.base import capabilities_of
    from diffstream.scenario.precheck import codec_parameters

    c = scenario.content
    model = None
    if c.model is not None:
        found = resolve_path(c.model, path)
        if found is None:
            raise ConfigError(located(path, lines.line_of(("content", "model")),
                                      f"content.model: folder {c.model!r} not found (relative "
                                      "paths start at the scenario's folder, then the cwd)"))
        model = found.resolve()
    for i, arm in enumerate(scenario.arms):
        cls = codec_class(arm.codec)
        if not capabilities_of(cls).generative:
            continue
        params = codec_parameters(cls) or {}
        ldm = arm.codec_options.get("ldm")
        where = located(path, lines.line_of(("arms", i, "codec_options")) or
                        lines.line_of(("arms", i, "codec")), f"arms[{i}]")
        if "ldm" not in params:
            if model is not None:
                raise ConfigError(f"{where}: {arm.codec!r} generates with the shipped pixel "
                                  f"DDPM only, but content.model is {c.model!r}; drop "
                                  "content.model or this arm")
            continue
        mine = None if ldm is None else Path(str(ldm)).expanduser().resolve()
        if mine != model:
            raise ConfigError(
                f"{where}.codec_options.ldm: this arm samples "
                f"{'the shipped pixel DDPM' if mine is None else str(mine)} but the content's "
                f"reference comes from {'the shipped pixel DDPM' if model is None else model}; "
                f"set content.model to the arm's ldm folder (and content.model_steps to its "
                f"steps)")
        steps = int(arm.codec_options.get("steps", c.model_steps if model else 100))
        if model is not None and steps != c.model_steps:
            raise ConfigError(f"{where}.codec_options.steps: {steps} differs from "
                              f"content.model_steps {c.model_steps}: the reference is the "
                              "generator's full run, so they must match")
