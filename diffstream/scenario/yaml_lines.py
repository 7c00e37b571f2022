"""YAML with line numbers: reading a scenario-like file (bounded aliases), mapping a
validation error's field path back to its file line, and resolving relative paths.

Shared by scenarios, sweeps and the checks made before any worker starts
(``scenario.precheck``), so errors say ``file:line: field: hint`` everywhere.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from diffstream.errors import ConfigError, located
from diffstream.metrics.qoe_presets import DEFAULT_PRESET
from diffstream.scenario.yamlguard import check_expansion


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


def _is_tag(node: dict[str, Any], key: Any) -> bool:
    """Is ``key`` the union tag pydantic put in a loc for this mapping? Unions are told apart
    by ``kind``, or by ``qoe``'s ``preset`` (``diffstream`` when the mapping has none)."""
    return node.get("kind") == key or node.get("preset", DEFAULT_PRESET) == key


def _fmt_loc(loc: tuple[Any, ...], data: Any) -> str:
    """'arms[2].policy.window', skipping discriminator tags that are not in the data."""
    out = ""
    node = data
    tagged: set[int] = set()
    for key in loc:
        if isinstance(node, dict) and _is_tag(node, key) and id(node) not in tagged:
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
            if _is_tag(node, key):
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
        if last in known:  # e.g. switch_weight under qoe: {preset: puffer}
            return "valid elsewhere (another section, kind or preset), not here; remove or move it"
        close = difflib.get_close_matches(last, sorted(known), n=1)
        return f"unknown key; did you mean {close[0]!r}?" if close else "unknown key; remove it"
    if kind == "missing":
        return "required; add it"
    return ""


def format_validation_error(path: Path, err: ValidationError, root: yaml.Node | None,
                            data: Any, model: type[BaseModel] | None = None) -> str:
    lines = _LineMap(root)
    if model is None:
        from diffstream.scenario.schema import Scenario

        model = Scenario
    known = _all_field_names(model)
    msgs = []
    for e in err.errors():
        loc = tuple(e.get("loc", ()))
        msg = e.get("msg", "invalid")
        if e.get("type") == "union_tag_invalid":  # name the tag key: 'qoe.preset', 'trace.kind'
            loc = loc + (str((e.get("ctx") or {}).get("discriminator", "kind")).strip("'"),)
        hint = _hint(e, known)
        text = f"{_fmt_loc(loc, data)}: {msg}" + (f" ({hint})" if hint else "")
        msgs.append(located(path, lines.line_of(loc), text))
    n = len(msgs)
    head = f"{path}: scenario has {n} error{'s' if n > 1 else ''}; see the README's Scenario schema"
    return "\n".join([head, *msgs])


def resolve_path(raw: str, scenario_path: Path) -> Path | None:
    """Relative paths: the scenario's folder first, then the current directory."""
    return resolve_in(raw, scenario_path.parent)


def resolve_in(raw: str, folder: Path) -> Path | None:
    """``raw`` if absolute, else under ``folder``, else under the cwd; None if not there."""
    p = Path(raw).expanduser()
    if p.is_absolute():
        return p if p.exists() else None
    for base in (folder, Path.cwd()):
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


