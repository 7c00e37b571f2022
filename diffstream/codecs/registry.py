"""Codec references -> codec classes, so a scenario can say ``codec: webp``.

A reference is one of (docs/plugins.md):

- a built-in name (``jpeg``, ``gic``, ...): the modules in ``_BUILTIN_MODULES`` register
  their classes with ``@register_codec`` and are imported lazily, so heavy codecs (torch
  models) cost nothing until a scenario asks for them;
- a name registered in this process with ``@register_codec`` (tests, notebooks);
- an import path, ``"package.module:ClassName"``;
- a name an installed distribution registers under the entry-point group
  ``diffstream.codecs`` (value ``module:ClassName``).

``codec_class`` / ``create_codec`` accept all four, in every process (the simulator's codec
workers, live sender and receiver, sweep workers), so nothing else needs to know which kind a
scenario used. A plugin class is checked against the contract when it is resolved; its
options are validated by its ``Options`` pydantic model when it declares one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from diffstream.codecs.base import Codec
from diffstream.plugins import (
    CODECS_GROUP,
    Loaded,
    PluginError,
    describe_object,
    entry_points_in,
    is_import_path,
    load_entry_point,
    load_import_path,
)

_REGISTRY: dict[str, type] = {}
_PLUGINS: dict[str, Loaded] = {}  # import paths and entry-point names resolved so far

# name -> module that registers it: the codecs shipped with diffstream. A codec from
# elsewhere needs no line here: scenarios name it by import path or entry point.
_BUILTIN_MODULES: dict[str, str] = {
    "jpeg": "diffstream.codecs.classic.pillow",
    "webp": "diffstream.codecs.classic.pillow",
    "gic": "diffstream.codecs.gic.codec",
    "lic": "diffstream.codecs.gic.codec",
    "diffc": "diffstream.codecs.diffc",
    "badiff": "diffstream.codecs.badiff.codec",
    "cascade": "diffstream.codecs.badiff.baselines",
    "cascade-jpeg": "diffstream.codecs.badiff.baselines",
    "cascade-webp": "diffstream.codecs.badiff.baselines",
    "cascade-lic": "diffstream.codecs.badiff.baselines",
    "earlystop-lic": "diffstream.codecs.badiff.baselines",
    "dpmsolver-lic": "diffstream.codecs.badiff.baselines",
    "pndm-lic": "diffstream.codecs.badiff.baselines",
}

# What a class must have to be used as a codec (base.Codec); checked on resolution.
CONTRACT_METHODS = ("encode", "decode", "min_bits")


class UnknownCodecError(PluginError, KeyError):
    """A codec reference that does not resolve (a KeyError, as the registry always raised)."""


def register_codec(name: str) -> Callable[[type], type]:
    def wrap(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"codec name {name!r} registered twice")
        cls.name = name  # type: ignore[attr-defined]
        _REGISTRY[name] = cls
        return cls

    return wrap


def builtin_codec_names() -> list[str]:
    """The codecs shipped with diffstream (not ones registered by plugins or tests)."""
    return sorted(_BUILTIN_MODULES)


def entry_point_codec_names() -> list[str]:
    """Codec names installed distributions register (``diffstream.codecs`` entry points);
    a built-in name wins over an entry point of the same name."""
    return sorted(n for n in entry_points_in(CODECS_GROUP) if n not in _BUILTIN_MODULES)


def available_codecs() -> list[str]:
    """Every codec name a scenario may use (import paths aside)."""
    return sorted(set(_REGISTRY) | set(_BUILTIN_MODULES) | set(entry_point_codec_names()))


def is_known_name(ref: str) -> bool:
    """A built-in or registered name: valid without importing anything."""
    return ref in _REGISTRY or ref in _BUILTIN_MODULES


def codec_class(ref: str) -> type:
    """The class a codec reference names; raises ``UnknownCodecError`` (a KeyError) for a
    reference that does not resolve or a class that breaks the contract."""
    if ref not in _REGISTRY and ref in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[ref])
    if ref in _REGISTRY:
        return _REGISTRY[ref]
    return resolve_plugin(ref).obj


def resolve_plugin(ref: str) -> Loaded:
    """A plugin codec (import path or entry-point name) and where it came from."""
    if ref in _PLUGINS:
        return _PLUGINS[ref]
    try:
        if is_import_path(ref):
            loaded = load_import_path(ref)
        elif ref in entry_points_in(CODECS_GROUP):
            loaded = load_entry_point(entry_points_in(CODECS_GROUP)[ref])
        else:
            raise PluginError(
                f"unknown codec {ref!r}; available: {', '.join(available_codecs())}",
                "or name a codec class by import path, 'package.module:ClassName'")
        check_codec_class(loaded.obj, ref)
    except PluginError as exc:
        raise UnknownCodecError(exc.message, exc.hint) from None
    if not isinstance(getattr(loaded.obj, "name", None), str):
        loaded.obj.name = ref  # what @register_codec gives a class (the Codec protocol's name)
    _PLUGINS[ref] = loaded
    return loaded


def codec_origin(ref: str) -> str:
    """'built-in', 'registered in this process', 'import path' or 'distribution NAME VER'."""
    if ref in _BUILTIN_MODULES:
        return "built-in"
    if ref in _REGISTRY:
        return "registered in this process"
    return resolve_plugin(ref).origin


def check_codec_class(obj: Any, ref: str) -> None:
    """The contract check: a class with callable encode, decode and min_bits, whose
    capabilities (``capabilities = Capabilities(...)``, or the older ``progressive`` flag and
    ``generate`` method) come with the methods they need (``capabilities_of``)."""
    from diffstream.codecs.base import capabilities_of

    if not isinstance(obj, type):
        raise PluginError(f"{ref!r} is {describe_object(obj)}, not a class",
                          "point the reference at the codec class: 'module:ClassName'")
    missing = [f"{m}()" for m in CONTRACT_METHODS if not callable(getattr(obj, m, None))]
    if missing:
        raise PluginError(
            f"{obj.__module__}.{obj.__qualname__} (from {ref!r}) is not a codec: it lacks "
            f"{', '.join(missing)}",
            "a codec needs encode(image, budget_bits), decode(payload, meta, shape) and "
            "min_bits(shape); see docs/plugins.md")
    try:
        capabilities_of(obj)
    except TypeError as exc:
        raise PluginError(f"{obj.__module__}.{obj.__qualname__} (from {ref!r}): {exc}",
                          "define the missing methods or drop the capability; see "
                          "docs/plugins.md") from None


def codec_options_model(cls: type) -> type[BaseModel] | None:
    """The codec's own options model: a pydantic class attribute ``Options`` (optional)."""
    model = getattr(cls, "Options", None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def codec_kwargs(cls: type, options: dict[str, Any]) -> dict[str, Any]:
    """The constructor's keyword arguments: ``options`` as given, or, for a class with an
    ``Options`` model, every field of the validated model (defaults filled in). Raises
    pydantic's ValidationError (the scenario loader reports it earlier, with its line)."""
    model = codec_options_model(cls)
    if model is None:
        return dict(options)
    validated = model.model_validate(options)
    return {name: getattr(validated, name) for name in type(validated).model_fields}


def create_codec(ref: str, **options: Any) -> Codec:
    """Instantiate a codec from its reference and its scenario options."""
    cls = codec_class(ref)
    return cls(**codec_kwargs(cls, options))
