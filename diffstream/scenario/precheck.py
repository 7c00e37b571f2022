"""Checks of a scenario's inputs that the schema cannot make, done before any worker starts.

Before these, an empty content folder, a file that is not an image, an unknown scikit-image
photo or an unknown ``codec_options`` key surfaced only inside a worker process, 7-13 s and
a gigabyte of model loading later, as exit 1 without a line number. Each is now a
``ConfigError`` (exit 2) naming the scenario file, the line and the field:

- content: scikit-image photo names against the offline list; a folder is opened the way
  the workers open it (every image's header is parsed);
- ``codec_options``: validated by the codec's ``Options`` pydantic model when it declares
  one (plugins, docs/plugins.md), else against the codec's own constructor (its keyword parameters,
  following ``**options`` up the class hierarchy and into an inner codec, and their type
  hints where they resolve), so an unknown key or a value of the wrong type is caught with
  the codec's list of options, without building the codec (which may load weights); then
  the codec's ``check_options(options)`` classmethod, when it has one, checks the files
  the options name (a pretrained-model folder without unet/, a wrong config);
- synthetic traces are built (cheap), so an impossible one fails here, not at run time.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from diffstream.errors import ConfigError, DiffstreamError, located


def check_inputs(scenario: Any, path: Path, lines: Any) -> None:
    """Raise ConfigError for the first input problem; ``lines``: config._LineMap."""
    _check_content(scenario, path, lines)
    for i, arm in enumerate(scenario.arms):
        _check_codec_options(i, arm.codec, arm.codec_options, path, lines)
    _check_trace(scenario, path, lines)


def line_in(path: Path, loc: tuple[Any, ...]) -> int | None:
    """The line of ``loc`` in the YAML file ``path`` (None when it cannot be read)."""
    from diffstream.scenario.yaml_lines import _LineMap, read_yaml

    try:
        return _LineMap(read_yaml(path, "scenario")[1]).line_of(loc)
    except (DiffstreamError, OSError):
        return None


# --------------------------------------------------------------------------- content
def _check_content(scenario: Any, path: Path, lines: Any) -> None:
    from diffstream.content.sources import SKIMAGE_OFFLINE, FolderSequence
    from diffstream.scenario.yaml_lines import resolve_path

    c = scenario.content
    if c.source == "skimage" and c.photos is not None:
        if not c.photos:
            raise ConfigError(located(path, lines.line_of(("content", "photos")),
                                      "content.photos: empty; list photo names or remove it"))
        for j, name in enumerate(c.photos):
            if name not in SKIMAGE_OFFLINE:
                raise ConfigError(located(
                    path, lines.line_of(("content", "photos", j)),
                    f"content.photos[{j}]: unknown scikit-image photo {name!r} (or one that "
                    f"needs a download); choose from {', '.join(sorted(SKIMAGE_OFFLINE))}"))
    if c.source == "folder" and c.path:
        folder = resolve_path(c.path, path)
        line = lines.line_of(("content", "path"))
        if folder is None:
            return  # load_scenario reports a missing folder itself
        try:
            FolderSequence(folder, scenario.frame.width, scenario.frame.height)
        except DiffstreamError as exc:
            raise ConfigError(located(path, line, f"content.path: {exc}")) from None


# --------------------------------------------------------------------------- codec options
def codec_parameters(cls: type) -> dict[str, tuple[Any, Any]] | None:
    """Keyword options a codec class's constructor accepts: name -> (function, parameter).

    ``**options`` is followed up the MRO; a class with ``inner_name`` that forwards to an
    inner codec (the BADiff baselines) gets that codec's options. None: cannot tell (a
    ``**options`` that goes somewhere else), so any key is accepted.
    """
    from diffstream.codecs import codec_class

    out: dict[str, tuple[Any, Any]] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is object:
            break
        var_kw = False
        for name, p in list(inspect.signature(init).parameters.items())[1:]:
            if p.kind is p.VAR_KEYWORD:
                var_kw = True
            elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                out.setdefault(name, (init, p))
        if not var_kw:
            return out
    inner = getattr(cls, "inner_name", None)
    if isinstance(inner, str) and inner != getattr(cls, "name", None):
        inner_params = codec_parameters(codec_class(inner))
        return None if inner_params is None else {**inner_params, **out}
    return None


def _check_codec_options(i: int, codec: str, options: dict[str, Any], path: Path,
                         lines: Any, at: tuple[str, ...] = ("codec_options",)) -> None:
    """``at``: where ``options`` sit under ``arms[i]`` (deeper for a composed codec's inner
    codec, which its class names through ``inner_codec(options)``)."""
    from diffstream.codecs.registry import codec_class, codec_options_model

    cls = codec_class(codec)
    model = codec_options_model(cls)
    if model is not None:  # a plugin's own options model (docs/plugins.md)
        _check_options_model(i, codec, model, options, path, lines)
        return
    if not options:
        return
    params = codec_parameters(cls)
    if params is None:
        return
    for key, value in options.items():
        field = ".".join((f"arms[{i}]", *at, key))
        where = located(path, lines.line_of(("arms", i, *at, key)), field)
        if key not in params:
            known = ", ".join(sorted(params)) or "none"
            raise ConfigError(f"{where}: {codec!r} has no option {key!r}; its options: {known}")
        func, param = params[key]
        hint = _hint(func, key)
        if hint is None:
            continue
        try:
            TypeAdapter(hint).validate_python(value)
        except ValidationError as exc:
            first = exc.errors()[0].get("msg", "invalid")
            raise ConfigError(f"{where}: {first} (expected {_describe(hint)})") from None
    # the codec's own check of the files its options name (pretrained-model folders), still
    # without loading weights: ``check_options(options)`` raises ConfigError / ValueError
    check = getattr(codec_class(codec), "check_options", None)
    if callable(check):
        try:
            check(dict(options))
        except (ConfigError, ValueError, OSError) as exc:
            where = located(path, lines.line_of(("arms", i, *at)),
                            ".".join((f"arms[{i}]", *at)))
            raise ConfigError(f"{where}: {exc}") from None
    _check_inner_codec(i, codec_class(codec), options, path, lines, at)


def _check_options_model(i: int, codec: str, model: Any, options: dict[str, Any],
                         path: Path, lines: Any) -> None:
    """Options validated by the codec's ``Options`` pydantic model; an unknown key is an
    error even when the model allows extras (a typo must not pass silently)."""
    known = ", ".join(sorted(model.model_fields)) or "none"
    for key in options:
        if key not in model.model_fields:
            where = located(path, lines.line_of(("arms", i, "codec_options", key)),
                            f"arms[{i}].codec_options.{key}")
            raise ConfigError(f"{where}: {codec!r} has no option {key!r}; its options: {known}")
    try:
        model.model_validate(options)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err.get("loc", ()))
        field = ".".join(str(p) for p in loc)
        where = located(path, lines.line_of(("arms", i, "codec_options", *loc)),
                        f"arms[{i}].codec_options" + (f".{field}" if field else ""))
        raise ConfigError(f"{where}: {err.get('msg', 'invalid')} ({codec!r} options: "
                          f"{known})") from None


def _check_inner_codec(i: int, cls: type, options: dict[str, Any], path: Path, lines: Any,
                       at: tuple[str, ...]) -> None:
    """A composed codec (``codec: cascade``): its inner codec must exist, and the inner
    options are checked against the inner codec."""
    from diffstream.codecs import codec_class

    hook = getattr(cls, "inner_codec", None)
    inner = hook(options) if callable(hook) else None
    if inner is None:
        return
    name, inner_options = inner
    try:
        codec_class(name)
    except KeyError as exc:
        field = ".".join((f"arms[{i}]", *at, "codec"))
        raise ConfigError(f"{located(path, lines.line_of(('arms', i, *at, 'codec')), field)}: "
                          f"{exc.args[0]}") from None
    _check_codec_options(i, name, inner_options, path, lines, (*at, "codec_options"))


def _hint(func: Any, name: str) -> Any | None:
    try:
        hint = typing.get_type_hints(func).get(name)
    except Exception:  # an annotation that does not resolve: no type check, keys only
        return None
    return None if hint is Any else hint


def _describe(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


# --------------------------------------------------------------------------- trace
def _check_trace(scenario: Any, path: Path, lines: Any) -> None:
    if scenario.trace.kind not in ("constant", "steps"):
        return  # files: the loaders raise TraceFormatError with the file's own line
    from diffstream.scenario.build import build_trace

    try:
        build_trace(scenario, path)
    except ValueError as exc:
        raise ConfigError(located(path, lines.line_of(("trace",)), f"trace: {exc}")) from None
