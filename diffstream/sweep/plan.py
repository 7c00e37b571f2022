"""Expand a sweep into independent runs, each a one-arm scenario with a stable id.

A run is one (trace, arm, link share, seed) cell of the grid applied onto the base
scenario. One arm per run, because arms never interact in a session (each builds its own
link and loss realisation from the same seed), so splitting them changes no result and
gives the scheduler the finest grain.

**Run id.** The first 16 hex digits of the SHA-256 of the run's *identity*: canonical JSON
(sorted keys, no whitespace) of the validated one-arm scenario, the network-only payload
size and a format version. Presentation-only fields (scenario name, description, output)
are left out, and trace files enter by content (``sha256:…``) rather than path, so an id
does not depend on where the checkout lives, on the order of the sweep's lists, or on which
other runs share the sweep; it changes when anything that can change the result does.
"""

from __future__ import annotations

import copy
import glob
import hashlib
import json
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from diffstream.errors import ConfigError, InputError, located
from diffstream.scenario.schema import FileTrace, Scenario
from diffstream.scenario.yaml_lines import _LineMap, read_yaml, resolve_path
from diffstream.sweep.schema import Sweep, TraceFiles, format_errors

#: Bump when the meaning of a run's identity changes (invalidates --resume of old folders).
RUN_ID_VERSION = "diffstream-sweep-run/1"

#: Scenario fields that never reach the identity: they do not change any result.
_PRESENTATION = ("name", "description", "output")


@dataclass(frozen=True)
class TraceEntry:
    """One trace of the grid: the scenario's ``trace`` mapping plus what identifies it."""

    label: str
    spec: dict[str, Any]  # a valid scenario ``trace`` value; file paths absolute
    identity: dict[str, Any]  # spec with the file path replaced by its content hash
    file: Path | None = None
    sha256: str | None = None
    mean_mbps: float | None = None  # whole-file mean capacity (files only)


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker needs to run one cell; picklable, no open handles."""

    id: str
    index: int  # position in the plan (submission order)
    params: dict[str, Any]  # trace, arm, codec, policy, share, seed: the grid coordinates
    scenario: dict[str, Any]  # validated one-arm scenario, JSON-ready
    scenario_dir: str  # the base scenario's folder (relative content paths)
    network_only_bytes: int | None = None
    transport: str = "ipc"
    keep_frames: bool = True
    trace_file: str | None = None  # absolute path of the trace file, for shipping to nodes
    trace_sha256: str | None = None
    # network-only cells: run the full SimPy loop instead of sim.fastpath (same results;
    # for debugging the fast path), so not part of the run's id
    reference_loop: bool = False


@dataclass
class Plan:
    sweep: Sweep
    sweep_path: Path
    runs: list[RunSpec]
    arms: list[str]  # arm labels in sweep order
    traces: list[TraceEntry]
    shares: list[float]
    seeds: list[int]
    qoe_metric: str
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- identity
def grid_text(plan: Plan) -> str:
    """'4 traces × 10 arms × 1 share × 2 seeds = 80 runs'."""
    def n(k: int, word: str) -> str:
        return f"{k} {word}{'' if k == 1 else 's'}"

    return (f"{n(len(plan.traces), 'trace')} × {n(len(plan.arms), 'arm')} × "
            f"{n(len(plan.shares), 'share')} × {n(len(plan.seeds), 'seed')} = "
            f"{n(len(plan.runs), 'run')}")


def canonical_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces, ASCII, NaN refused."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def run_id(identity: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(identity).encode("ascii")).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` onto ``base``: mappings merge recursively, anything else replaces."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


# --------------------------------------------------------------------------- traces
def _glob_files(pattern: str, sweep_path: Path) -> list[Path]:
    """Files matched by a path, folder or glob: the sweep's folder first, then the cwd."""
    for base in (sweep_path.parent, Path.cwd()):
        p = Path(pattern).expanduser()
        full = p if p.is_absolute() else base / p
        if any(ch in pattern for ch in "*?["):
            found = [Path(m) for m in glob.glob(str(full), recursive=True)]
        elif full.is_dir():
            found = list(full.iterdir())
        else:
            found = [full] if full.exists() else []
        files = sorted({f.resolve() for f in found if f.is_file()})
        if files:
            return files
    return []


def _file_entries(spec: TraceFiles, sweep_path: Path, where: tuple[Path, int | None, str]
                  ) -> list[TraceEntry]:
    """The files of one trace entry, parsed now: a wrong path or format fails here, with
    ``where`` = (file, line, field) of the entry, not in every run after minutes."""
    from diffstream.netsim.loaders import load_trace

    efile, eline, efield = where
    files = [f for f in _glob_files(spec.path, sweep_path)
             if not any(fnmatch(f.name, pat) for pat in spec.exclude)]
    if not files and spec.optional:
        return []
    if not files:
        raise ConfigError(located(
            efile, eline, f"{efield}: {spec.path!r} matches no file (looked next to the "
            f"sweep file and in {Path.cwd()}); fix the path or generate the traces"))
    out = []
    for f in files:
        try:
            trace = load_trace(f, spec.kind, csv_unit=spec.csv_unit)
        except InputError as exc:
            raise ConfigError(located(efile, eline, f"{efield} (read as {spec.kind}): "
                                      f"{exc}")) from None
        digest = file_sha256(f)
        body = {"kind": spec.kind, "csv_unit": spec.csv_unit, "scale": spec.scale,
                "offset_s": spec.offset_s}
        label = f.name + (f"x{spec.scale:g}" if spec.scale != 1 else "") + (
            f"+{spec.offset_s:g}s" if spec.offset_s else "")
        out.append(TraceEntry(label=label, spec={**body, "path": str(f)},
                              identity={**body, "path": f"sha256:{digest}"}, file=f,
                              sha256=digest, mean_mbps=trace.mean_bps / 1e6))
    return out


def _synthetic_entry(spec: Any) -> TraceEntry:
    d = spec.model_dump(mode="json")
    if spec.kind == "markov":
        label = f"markov(seed={spec.seed if spec.seed is not None else 'run'})"
    elif spec.kind == "constant":
        label = f"constant({spec.mbps:g}Mbps)"
    else:
        label = "steps(" + ",".join(f"{t:g}:{r:g}" for t, r in spec.steps) + ")"
    return TraceEntry(label=label, spec=d, identity=d)


def _disambiguate(entries: list[TraceEntry]) -> list[TraceEntry]:
    """Unique labels: same-named files from different folders get their parent's name."""
    out, seen = [], set()
    for e in entries:
        label = e.label
        if [x.label for x in entries].count(label) > 1 and e.file is not None:
            label = f"{e.file.parent.name}/{label}"
        n = 2
        while label in seen:
            label, n = f"{e.label}#{n}", n + 1
        seen.add(label)
        out.append(TraceEntry(label, e.spec, e.identity, e.file, e.sha256, e.mean_mbps))
    return out


# --------------------------------------------------------------------------- base
@dataclass
class _Base:
    data: dict[str, Any]  # the base mapping with the overrides merged in
    path: Path  # where base errors are reported (the base file, or the sweep file)
    root: yaml.Node | None
    prefix: tuple[Any, ...]  # loc of the base inside ``path``
    folder: Path  # relative paths in the base start here


def _load_base(sweep: Sweep, sweep_path: Path, sweep_root: yaml.Node | None) -> _Base:
    lines = _LineMap(sweep_root)
    if isinstance(sweep.base, str):
        bpath = resolve_path(sweep.base, sweep_path)
        if bpath is None:
            raise ConfigError(located(sweep_path, lines.line_of(("base",)),
                                      f"base: scenario file {sweep.base!r} not found (looked "
                                      f"next to the sweep file and in {Path.cwd()})"))
        data, root = read_yaml(bpath, "scenario")
        base = _Base(data, bpath, root, (), bpath.parent)
    else:
        base = _Base(dict(sweep.base), sweep_path, sweep_root, ("base",), sweep_path.parent)
    base.data = deep_merge(base.data, sweep.overrides)
    return base


def _base_error(exc: ValidationError, data: dict[str, Any], base: _Base, sweep: Sweep,
                sweep_path: Path, sweep_root: yaml.Node | None) -> ConfigError:
    """Point each error at the override that set the field, else at the base scenario."""
    def in_overrides(loc: tuple[Any, ...]) -> bool:
        node: Any = sweep.overrides
        for key in loc:
            if not isinstance(node, dict) or key not in node:
                return False
            node = node[key]
        return True

    parts = []
    for e in exc.errors():
        loc = tuple(e.get("loc", ()))
        if sweep.overrides and loc and in_overrides(loc[:1]):
            text = format_errors(sweep_path, [e], sweep_root, sweep.overrides, Scenario,
                                 "overrides", prefix=("overrides",))
        else:
            text = format_errors(base.path, [e], base.root, data, Scenario, "base scenario",
                                 prefix=base.prefix)
        parts.append(text.split("\n", 1)[1])
    head = (f"{sweep_path}: the base scenario (with the sweep's values) has {len(parts)} "
            f"error{'s' if len(parts) > 1 else ''}")
    return ConfigError("\n".join([head, *parts]))


def _absolute_content(data: dict[str, Any], base: _Base) -> None:
    content = data.get("content")
    if isinstance(content, dict) and isinstance(content.get("path"), str):
        p = Path(content["path"]).expanduser()
        content["path"] = str(p if p.is_absolute() else (base.folder / p).resolve())


def _base_trace(scenario: Scenario, base: _Base) -> TraceEntry:
    """The base scenario's own trace, when the sweep does not list traces."""
    spec = scenario.trace
    if not isinstance(spec, FileTrace):
        return _synthetic_entry(spec)
    f = resolve_path(spec.path, base.path)
    if f is None:
        raise ConfigError(located(base.path, _LineMap(base.root).line_of(
            base.prefix + ("trace", "path")), f"trace.path: file {spec.path!r} not found"))
    tf = TraceFiles(kind=spec.kind, path=str(f), csv_unit=spec.csv_unit, scale=spec.scale,
                    offset_s=spec.offset_s)
    line = _LineMap(base.root).line_of(base.prefix + ("trace", "path"))
    return _file_entries(tf, base.path, (base.path, line, "trace.path"))[0]


# --------------------------------------------------------------------------- expansion
def expand(sweep: Sweep, sweep_path: Path, sweep_root: yaml.Node | None = None, *,
           arms_filter: list[str] | None = None, network_only_bytes: int | None = None,
           transport: str = "ipc") -> Plan:
    """The sweep's runs in submission order: trace, share, seed, then arm (innermost), so
    the arms of one cell finish together and paired comparisons fill in early.

    ``arms_filter`` and ``network_only_bytes`` are the command line's ``--arms`` and
    ``--network-only`` (the latter overrides the sweep's value when given).
    """
    lines = _LineMap(sweep_root)
    base = _load_base(sweep, sweep_path, sweep_root)
    grid = sweep.sweep
    notes: list[str] = []

    traces: list[TraceEntry] = []
    skipped: list[str] = []
    for i, t in enumerate(grid.traces or []):
        if isinstance(t, TraceFiles):
            where = (sweep_path, lines.line_of(("sweep", "traces", i, "path")),
                     f"sweep.traces[{i}].path")
            found = _file_entries(t, sweep_path, where)
            if not found:
                skipped.append(f"sweep.traces[{i}].path {t.path!r}")
                notes.append(f"skipped sweep.traces[{i}] (optional): {t.path!r} matches no "
                             "file")
            traces += found
        else:
            traces.append(_synthetic_entry(t))
    if grid.traces and not traces:
        raise ConfigError(located(
            sweep_path, lines.line_of(("sweep", "traces")),
            f"sweep.traces: every entry is optional and none matched a file ({'; '.join(skipped)}; "
            f"looked next to the sweep file and in {Path.cwd()}); run from the folder the paths "
            "are relative to, or point them at your own traces"))

    # validate the base once, with the grid's first values standing in for its axes
    probe_data = copy.deepcopy(base.data)
    if traces:
        probe_data["trace"] = traces[0].spec
    arms = grid.arm_specs()
    if arms:
        probe_data["arms"] = [a.model_dump(mode="json") for a in arms]
    try:
        probe = Scenario.model_validate(probe_data)
    except ValidationError as exc:
        raise _base_error(exc, probe_data, base, sweep, sweep_path, sweep_root) from None
    _check_base_files(probe, base)
    if not traces:
        traces = [_base_trace(probe, base)]
    traces = _disambiguate(_dedupe_traces(traces, notes))
    arms = list(probe.arms)
    if arms_filter:
        arms = [a for a in arms if a.label in arms_filter]
        if not arms:
            raise InputError(f"--arms matched none of {[a.label for a in probe.arms]}")
    for key in ("oracle", "baseline"):
        ref = getattr(sweep.report, key)
        if ref not in ("auto", "none") and ref not in [a.label for a in arms]:
            raise ConfigError(located(sweep_path, lines.line_of(("report", key)),
                                      f"report.{key}: {ref!r} is not an arm of this sweep; "
                                      f"arms: {', '.join(a.label for a in arms)}"))
    shares = list(grid.shares or [probe.link.share])
    seeds = list(grid.seeds or [probe.seed])
    payload = network_only_bytes if network_only_bytes is not None else sweep.network_only_bytes

    template = probe.model_dump(mode="json")
    _absolute_content(template, base)
    for key in _PRESENTATION:
        template.pop(key, None)
    content_identity = copy.deepcopy(base.data.get("content"))

    runs: list[RunSpec] = []
    seen: set[str] = set()
    for tr in traces:
        for share in shares:
            for seed in seeds:
                for arm in arms:
                    d = copy.deepcopy(template)
                    d.update(seed=seed, trace=tr.spec,
                             arms=[{**arm.model_dump(mode="json"), "name": arm.label}])
                    d["link"]["share"] = share
                    scenario = Scenario.model_validate({**d, "name": sweep.name})
                    dump = scenario.model_dump(mode="json")
                    ident = {k: copy.deepcopy(v) for k, v in dump.items()
                             if k not in _PRESENTATION}
                    ident["trace"] = tr.identity
                    if content_identity is not None and "path" in ident["content"]:
                        ident["content"]["path"] = content_identity.get("path")
                    rid = run_id({"v": RUN_ID_VERSION, "scenario": ident,
                                  "network_only_bytes": payload})
                    if rid in seen:
                        continue
                    seen.add(rid)
                    params = {"trace": tr.label, "arm": arm.label, "codec": arm.codec,
                              "policy": arm.policy.kind, "share": share, "seed": seed}
                    runs.append(RunSpec(
                        id=rid, index=len(runs), params=params, scenario=dump,
                        scenario_dir=str(base.folder.resolve()), network_only_bytes=payload,
                        transport=transport, keep_frames=sweep.output.frames,
                        trace_file=str(tr.file) if tr.file else None, trace_sha256=tr.sha256))
    return Plan(sweep=sweep, sweep_path=sweep_path, runs=runs, arms=[a.label for a in arms],
                traces=traces, shares=shares, seeds=seeds, qoe_metric=probe.qoe.metric,
                notes=notes)


def _dedupe_traces(entries: list[TraceEntry], notes: list[str]) -> list[TraceEntry]:
    out: list[TraceEntry] = []
    seen: dict[str, str] = {}
    for e in entries:
        key = canonical_json(e.identity)
        if key in seen:
            notes.append(f"trace {e.label} is the same as {seen[key]} (same content and "
                         "settings): run once")
            continue
        seen[key] = e.label
        out.append(e)
    return out


def _check_base_files(scenario: Scenario, base: _Base) -> None:
    """The scenario loader's checks that go beyond the schema, located in the base."""
    lines = _LineMap(base.root)
    if scenario.content.source == "folder" and scenario.content.path:
        p = Path(scenario.content.path).expanduser()
        full = p if p.is_absolute() else base.folder / p
        if not full.is_dir():
            raise ConfigError(located(base.path, lines.line_of(base.prefix + ("content", "path")),
                                      f"content.path: folder {scenario.content.path!r} not "
                                      "found"))
    from diffstream.scenario.load import compute_profile_problem

    problem = compute_profile_problem(scenario)
    if problem:
        raise ConfigError(located(
            base.path, lines.line_of(base.prefix + ("compute", "profile")), problem))


def load_plan(path: str | Path, **kwargs: Any) -> Plan:
    """Load, validate and expand a sweep file (see ``expand`` for the keyword arguments)."""
    from diffstream.sweep.schema import load_sweep

    sweep, spath, _, root = load_sweep(path)
    return expand(sweep, spath, root, **kwargs)
