"""``python -m diffstream codecs [CODEC ...] [--size WxH] [--json]``: every codec a scenario
can name, built-in and installed plugins, with where it comes from, what it can do, its floor
at a frame size and the files it read (weights) when it was built.

Each codec is built with its default options in a forked child process (where ``fork``
exists; the parent only imports the codec modules): the models cached per process (the DDPM
that DiffC and the BADiff baselines share) are then loaded afresh for each row, so every row
lists the files *it* reads, and a codec that crashes or fails to build fills its own row
with the error instead of ending the list.

The weights column is generic: the files opened for reading while the codec was built
(Python's ``open`` audit event, and ``safetensors``' own reader, which does not go through
``open``), minus Python sources and system files. A codec may add to its row with an
optional ``describe() -> dict`` method; a ``weights`` entry there (a mapping or a list of
paths) is listed with the files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from diffstream.codecs.registry import (
    builtin_codec_names,
    codec_class,
    codec_origin,
    entry_point_codec_names,
)
from diffstream.plugins import CODECS_GROUP, distribution_of, entry_points_in

# files a codec build reads that are not its weights
_NOT_WEIGHTS = (".py", ".pyc", ".so", ".pth", ".pyd", ".dylib", ".typed")
_SYSTEM = ("/proc/", "/sys/", "/dev/", "/etc/")


@dataclass
class CodecRow:
    name: str
    origin: str = ""
    progressive: bool | None = None
    generative: bool | None = None
    floor_bits: int | None = None
    floor_bpp: float | None = None
    weights: list[str] = field(default_factory=list)  # "path (size)"
    info: dict[str, Any] = field(default_factory=dict)  # the codec's describe(), if any
    error: str = ""


def codec_capabilities(cls: type) -> dict[str, bool]:
    """What a codec class can do (its declaration, through ``capabilities_of``)."""
    from diffstream.codecs.base import capabilities_of

    caps = capabilities_of(cls)
    return {"progressive": caps.progressive, "generative": caps.generative}


def codec_rows(shape: tuple[int, int], names: list[str] | None = None, *,
               isolate: bool = True) -> list[CodecRow]:
    """One row per codec: ``names`` (any references), or else the built-in codecs, then the
    entry-point plugins (a plugin whose name a built-in codec already uses is listed as
    shadowed)."""
    if names:
        return [_row(name, shape, isolate) for name in names]
    return [_row(name, shape, isolate) for name in default_names()] + shadowed_rows()


def default_names() -> list[str]:
    """The built-in codecs, then the entry-point plugins."""
    return builtin_codec_names() + entry_point_codec_names()


def shadowed_rows() -> list[CodecRow]:
    """Entry points whose name a built-in codec already uses (the built-in wins)."""
    return [CodecRow(name=name, origin=f"distribution {distribution_of(ep)}",
                     error=f"shadowed: the built-in codec {name!r} wins; reach it as "
                           f"{ep.value!r}")
            for name, ep in sorted(entry_points_in(CODECS_GROUP).items())
            if name in builtin_codec_names()]


def _row(name: str, shape: tuple[int, int], isolate: bool) -> CodecRow:
    row = CodecRow(name=name)
    try:
        with warnings.catch_warnings():  # a library's deprecation notice is not the listing
            warnings.simplefilter("ignore")
            cls = codec_class(name)  # imported here, so the children share the imports
        row.origin = codec_origin(name)
    except Exception as exc:  # noqa: BLE001 - a broken plugin gets its row, not a crash
        row.origin = _origin_guess(name)
        row.error = _brief(exc)
        return row
    caps = codec_capabilities(cls)
    row.progressive, row.generative = caps["progressive"], caps["generative"]
    built = _in_child(_build, name, shape) if isolate and hasattr(os, "fork") else _build(
        name, shape)
    row.floor_bits = built.get("floor_bits")
    row.floor_bpp = None if row.floor_bits is None else row.floor_bits / (shape[0] * shape[1])
    row.weights = built.get("weights", [])
    row.info = built.get("info", {})
    row.error = built.get("error", "")
    return row


def _origin_guess(name: str) -> str:
    if name in builtin_codec_names():
        return "built-in"
    ep = entry_points_in(CODECS_GROUP).get(name)
    return f"distribution {distribution_of(ep)}" if ep is not None else ""


def _build(name: str, shape: tuple[int, int]) -> dict[str, Any]:
    """Build the codec with its default options, recording the files it reads."""
    from diffstream.codecs.registry import create_codec

    out: dict[str, Any] = {}
    with _FileProbe() as probe, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            codec = create_codec(name)
        except Exception as exc:  # noqa: BLE001
            out["error"] = f"cannot build it with its default options: {_brief(exc)}"
            codec = None
        if codec is not None:
            try:  # inside the probe: a floor may load a model too
                out["floor_bits"] = int(codec.min_bits(shape))
            except Exception as exc:  # noqa: BLE001 - e.g. a shape the codec cannot code
                out["error"] = f"min_bits{shape}: {_brief(exc)}"
    out["weights"] = [_sized(p) for p in probe.files]
    if codec is None:
        return out
    describe = getattr(codec, "describe", None)
    if callable(describe):
        try:
            info = dict(describe())
        except Exception as exc:  # noqa: BLE001
            info = {"describe() failed": _brief(exc)}
        extra = info.pop("weights", None)
        paths = list(extra.values()) if isinstance(extra, dict) else list(extra or [])
        out["weights"] += [_sized(str(p)) for p in paths if _sized(str(p)) not in out["weights"]]
        out["info"] = {k: str(v) for k, v in info.items()}
    return out


def _sized(path: str) -> str:
    try:
        size = os.path.getsize(path)
    except OSError:
        return path
    return f"{path} ({size / 1e6:.1f} MB)" if size >= 1e5 else f"{path} ({size / 1e3:.1f} kB)"


def _brief(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


class _FileProbe:
    """The files opened for reading inside the ``with`` block (this process only)."""

    _active: _FileProbe | None = None
    _hooked = False

    def __init__(self) -> None:
        self.files: list[str] = []
        self._undo: list[Callable[[], None]] = []

    def __enter__(self) -> _FileProbe:
        if not _FileProbe._hooked:  # audit hooks cannot be removed: one, switched by _active
            sys.addaudithook(_FileProbe._audit)
            _FileProbe._hooked = True
        _FileProbe._active = self
        self._wrap_safetensors()
        return self

    def __exit__(self, *exc: object) -> None:
        _FileProbe._active = None
        for undo in self._undo:
            undo()

    @staticmethod
    def _audit(event: str, args: tuple[Any, ...]) -> None:
        probe = _FileProbe._active
        if probe is None or event != "open" or not args:
            return
        path, mode = args[0], args[1] if len(args) > 1 else "r"
        if isinstance(path, (str, bytes, os.PathLike)) and (mode is None or "r" in str(mode)):
            probe.saw(os.fsdecode(path))

    def saw(self, path: str) -> None:
        full = Path(path).resolve()
        packaging = any(p.endswith((".dist-info", ".egg-info")) or p == "__pycache__"
                        for p in full.parts)  # importlib.metadata scans, bytecode
        text = str(full)
        if (text not in self.files and not packaging and not text.endswith(_NOT_WEIGHTS)
                and not text.startswith(_SYSTEM) and full.is_file()):
            self.files.append(text)

    def _wrap_safetensors(self) -> None:
        """safetensors reads files in Rust (no ``open`` event): wrap its ``safe_open``."""
        try:
            import safetensors  # noqa: F401 - its submodules hold their own safe_open
        except ImportError:
            return
        for name, module in list(sys.modules.items()):
            original = getattr(module, "safe_open", None)
            if not (name == "safetensors" or name.startswith("safetensors.")) or original is None:
                continue

            def wrapped(filename: Any, *a: Any, _orig: Any = original, **k: Any) -> Any:
                self.saw(os.fsdecode(filename))
                return _orig(filename, *a, **k)

            module.safe_open = wrapped  # type: ignore[attr-defined]
            self._undo.append(lambda m=module, o=original: setattr(m, "safe_open", o))


def _in_child(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``fn(*args)`` in a forked child (fresh per-process caches, crashes contained)."""
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: run, send the JSON result, leave without cleanup handlers
        os.close(read_fd)
        code = 0
        try:
            data = json.dumps(fn(*args)).encode()
        except BaseException:  # noqa: BLE001 - anything becomes the row's error
            data = json.dumps({"error": traceback.format_exc(limit=1).strip()}).encode()
            code = 1
        with os.fdopen(write_fd, "wb") as fh:
            fh.write(data)
        os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as fh:
        data = fh.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        return {"error": f"building it killed the process ({_status_text(status)})"}
    return json.loads(data)


def _status_text(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


# --------------------------------------------------------------------------- command line
def parse_size(text: str) -> tuple[int, int]:
    """'128x96' -> (height, width) = (96, 128)."""
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size: expected WxH, e.g. 64x64, not {text!r}"
                                         ) from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"--size: sides must be positive, not {text!r}")
    return h, w


def render(rows: list[CodecRow], shape: tuple[int, int]) -> Any:
    from rich.table import Table

    h, w = shape
    table = Table(title=f"codecs (floor at {w}x{h})", show_lines=True)
    for col in ("codec", "from", "progressive", "generative", "floor bits", "floor bpp",
                "weights read / notes"):
        table.add_column(col, overflow="fold")

    def yes(x: bool | None) -> str:
        return "" if x is None else ("yes" if x else "no")

    for r in rows:
        notes = list(r.weights) or (["none"] if not r.error else [])
        notes += [f"{k}: {v}" for k, v in r.info.items()]
        if r.error:
            notes.append(f"[red]{r.error}[/]")
        table.add_row(r.name, r.origin, yes(r.progressive), yes(r.generative),
                      "" if r.floor_bits is None else str(r.floor_bits),
                      "" if r.floor_bpp is None else f"{r.floor_bpp:.3f}", "\n".join(notes))
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m diffstream codecs",
        description="List every codec (built-in and installed plugins): origin, "
                    "capabilities, floor at a frame size and the weights it loads.")
    p.add_argument("codecs", nargs="*", metavar="CODEC",
                   help="codec references to list (default: every built-in and installed one)")
    p.add_argument("--size", type=parse_size, default=(64, 64), metavar="WxH",
                   help="frame size for the floor (default 64x64)")
    p.add_argument("--json", action="store_true", help="one JSON object per codec instead")
    args = p.parse_args(argv)
    rows = codec_rows(args.size, args.codecs)
    if args.json:
        for r in rows:
            print(json.dumps(asdict(r)))
        return 0
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=int(os.environ.get("COLUMNS", "160")))
    console.print(render(rows, args.size))
    return 0
