"""Loading user code that a scenario names: codecs and policies from outside diffstream.

A scenario refers to a plugin in one of two ways (docs/plugins.md):

- an import path, ``"package.module:ClassName"``, found on ``sys.path`` (plus the scenario's
  folder and the current directory, see ``add_search_dirs``);
- a name that an installed distribution registers under an entry-point group
  (``diffstream.codecs``, ``diffstream.policies``), whose value is ``module:ClassName``.

Every failure (no such module, no such class, an import that raises) is a ``PluginError``
whose message says what went wrong, where (the plugin's file:line when its import raised)
and what to try. The codec and policy rooms check the class against their contract.

``child_pythonpath`` is the other half: worker processes (the simulator's codec workers,
sweep pool processes, Ray workers) must import what the coordinator could, so they are
started with the coordinator's own non-standard ``sys.path`` entries in ``PYTHONPATH``.

This module is in layer 0 with ``errors.py``: it imports nothing from diffstream, so both
``control/`` and ``codecs/`` use it.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import inspect
import os
import re
import site
import sys
import sysconfig
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

CODECS_GROUP = "diffstream.codecs"
POLICIES_GROUP = "diffstream.policies"

_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_IMPORT_PATH = re.compile(rf"^({_DOTTED}):({_DOTTED})$")

# top-level module name -> module, for every import-path plugin loaded in this process (what
# a Ray cluster's workers need shipped; installed distributions are the nodes' business)
_LOADED_TOP: dict[str, ModuleType] = {}


class PluginError(ValueError):
    """A plugin reference that cannot be used; ``str()`` is the message and its hint."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message, self.hint = message, hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


@dataclass(frozen=True)
class Loaded:
    """A loaded plugin object and where it came from (for listings and messages)."""

    obj: Any
    origin: str  # "import path" or "distribution NAME VERSION"


def is_import_path(ref: str) -> bool:
    """True for ``module:attr`` references (built-in and entry-point names have no colon)."""
    return ":" in ref


# --------------------------------------------------------------------------- entry points
@functools.cache
def entry_points_in(group: str) -> dict[str, importlib.metadata.EntryPoint]:
    """name -> entry point for one group, over every distribution on ``sys.path`` (the first
    distribution wins a name two of them register). Cached: scanning metadata costs ms;
    ``forget_entry_points()`` rescans after installing something in-process."""
    out: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=group):
        out.setdefault(ep.name, ep)
    return out


def forget_entry_points() -> None:
    entry_points_in.cache_clear()
    importlib.invalidate_caches()


def distribution_of(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "an installed distribution"
    return f"{dist.metadata['Name']} {dist.version}"


# --------------------------------------------------------------------------- loading
def load_import_path(ref: str) -> Loaded:
    """The object ``module:attr`` names (``attr`` may be dotted: ``Outer.Inner``)."""
    m = _IMPORT_PATH.match(ref)
    if m is None:
        raise PluginError(f"{ref!r} is not an import path",
                          "write 'package.module:ClassName' (dotted module, a colon, the class)")
    module_name, attr = m.groups()
    module = _import(module_name, ref)
    _LOADED_TOP.setdefault(module_name.split(".")[0], sys.modules[module_name.split(".")[0]])
    return Loaded(_attribute(module, attr, ref), "import path")


def load_entry_point(ep: importlib.metadata.EntryPoint) -> Loaded:
    """Load an entry point, with the same messages as an import path plus its origin."""
    origin = f"distribution {distribution_of(ep)}"
    try:
        loaded = load_import_path(ep.value.replace(" ", ""))
    except PluginError as exc:
        raise PluginError(f"entry point {ep.name!r} = {ep.value!r} of {origin} ({ep.group}): "
                          f"{exc.message}", exc.hint) from None
    return Loaded(loaded.obj, origin)


def _import(module_name: str, ref: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise PluginError(
                f"cannot import {module_name!r} (from {ref!r}): no module named {missing!r}",
                f"is the module on PYTHONPATH? Looked in {search_description()}") from None
        raise PluginError(f"importing {module_name!r} failed: {exc} ({_where(exc)})",
                          "install what the plugin imports, or fix the import") from None
    except (Exception, SystemExit) as exc:  # the plugin's own code raised while importing
        raise PluginError(f"importing {module_name!r} raised {type(exc).__name__}: {exc} "
                          f"({_where(exc)})", "fix the plugin module") from None


def _where(exc: BaseException) -> str:
    """``file:line`` of the failure: the syntax error's line, else the deepest frame in the
    user's own code (not in an installed library that the plugin called), else the deepest."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"at {exc.filename}:{exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith("<frozen")]
    own = [f for f in frames if not _is_installed(f.filename)]
    frame = (own or frames or [None])[-1]
    return f"at {frame.filename}:{frame.lineno}" if frame is not None else "no traceback"


def _attribute(module: ModuleType, attr: str, ref: str) -> Any:
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            where = getattr(module, "__file__", None) or module.__name__
            classes = sorted(n for n, c in vars(module).items() if inspect.isclass(c)
                             and getattr(c, "__module__", None) == module.__name__)
            defined = (f"it defines {', '.join(classes)}" if classes
                       else "it defines no class")
            raise PluginError(f"module {module.__name__!r} ({where}) has no {part!r} "
                              f"(from {ref!r})", defined) from None
    return obj


def describe_object(obj: Any) -> str:
    """'a function', 'a module', 'an instance of Foo': for contract errors."""
    if inspect.ismodule(obj):
        return "a module"
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return "a function"
    return f"an instance of {type(obj).__name__}"


# --------------------------------------------------------------------------- search path
def add_search_dirs(dirs: Iterable[str | Path]) -> None:
    """Append folders to ``sys.path`` (and so to every worker's PYTHONPATH).

    The scenario's folder and the current directory, so ``codec: "mycodec:MyCodec"`` finds
    ``mycodec.py`` next to the scenario. Appended, not prepended: a file there never shadows
    a module the coordinator already imports from elsewhere (diffstream itself included).
    """
    for d in dirs:
        p = str(Path(d).resolve())
        if p not in sys.path and Path(p).is_dir():
            sys.path.append(p)


def mentions_import_path(data: Any) -> bool:
    """Whether a raw scenario or sweep mapping names a plugin by import path."""
    return bool(import_path_references(data))


def import_path_references(data: Any) -> list[str]:
    """The plugin import paths a raw scenario or sweep mapping names: ``codec`` or ``kind``
    values, and ``codecs`` items, with a colon (no other field of either schema holds a
    colon in those keys), in document order without repeats."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("codec", "kind") and isinstance(v, str) and is_import_path(v):
                    found.append(v)
                elif k == "codecs" and isinstance(v, list):
                    found.extend(x for x in v if isinstance(x, str) and is_import_path(x))
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(data)
    return list(dict.fromkeys(found))


@functools.cache
def _installed_dirs() -> tuple[str, ...]:
    """Folders every interpreter of this environment has on ``sys.path`` by itself."""
    paths = sysconfig.get_paths()
    dirs = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    dirs.update(site.getsitepackages())
    user = site.getusersitepackages()
    if isinstance(user, str):
        dirs.add(user)
    return tuple(sorted(os.path.realpath(d) for d in dirs))


def _is_installed(path: str) -> bool:
    real = os.path.realpath(path)
    return any(real == d or real.startswith(d + os.sep) for d in _installed_dirs())


def user_path() -> list[str]:
    """This process's ``sys.path`` entries that a fresh interpreter would not have: the
    script's folder, PYTHONPATH, the search dirs added above ('' is the cwd)."""
    out: list[str] = []
    for entry in sys.path:
        p = os.path.abspath(entry or os.getcwd())
        if p not in out and os.path.exists(p) and not _is_installed(p):
            out.append(p)
    return out


def child_pythonpath() -> str:
    """PYTHONPATH for a worker process, so it imports what this process can (in order)."""
    return os.pathsep.join(user_path())


def search_description() -> str:
    dirs = user_path()
    shown = ", ".join(dirs[:6]) + (f" and {len(dirs) - 6} more" if len(dirs) > 6 else "")
    return f"{shown} and the installed packages" if dirs else "the installed packages"


def shipped_modules() -> list[str]:
    """Files or package folders of the import-path plugins loaded in this process that are
    not installed packages: what a Ray cluster's workers need shipped (``py_modules``)."""
    out = []
    for name, module in sorted(_LOADED_TOP.items()):
        if name == "diffstream":
            continue
        paths = list(getattr(module, "__path__", None) or [])
        where = paths[0] if len(paths) == 1 else getattr(module, "__file__", None)
        if where and not _is_installed(where):
            out.append(str(where))
    return out
