"""Name -> codec class registry, so a scenario can say ``codec: webp``.

Codecs register with the ``@register_codec`` decorator in their module; ``create_codec``
imports the modules listed in ``_BUILTIN_MODULES`` lazily so that heavy codecs (torch models)
cost nothing until a scenario asks for them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from diffstream.codecs.base import Codec

_REGISTRY: dict[str, type] = {}

# name -> module that registers it. New codecs add one line here (or register themselves
# from a plugin module imported by the user's code).
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


def register_codec(name: str) -> Callable[[type], type]:
    def wrap(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"codec name {name!r} registered twice")
        cls.name = name  # type: ignore[attr-defined]
        _REGISTRY[name] = cls
        return cls

    return wrap


def available_codecs() -> list[str]:
    return sorted(set(_REGISTRY) | set(_BUILTIN_MODULES))


def builtin_codec_names() -> list[str]:
    """The codecs shipped with diffstream (not ones registered by plugins or tests)."""
    return sorted(_BUILTIN_MODULES)


def codec_class(name: str) -> type:
    if name not in _REGISTRY and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown codec {name!r}; available: {', '.join(available_codecs())}"
        ) from None


def create_codec(name: str, **options: Any) -> Codec:
    """Instantiate a registered codec with its scenario options."""
    return codec_class(name)(**options)
