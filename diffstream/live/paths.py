"""Where a live stream's files go: always under this side's own base folder.

A stream id and a scenario name come from the peer (the sender's WELCOME), so neither may
carry a path: both are checked against a fixed alphabet and length, and the folder built
from them is checked to lie inside the base before anything is written there. The base
itself is this side's own choice (``--out``, or ``runs/<name>/<side>`` under the cwd); the
peer's ``output.dir`` is never used.
"""

from __future__ import annotations

import re
from pathlib import Path

# letters, digits and ``_.-``, not starting with a dot (no ``.``/``..``, no hidden files)
ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
ID_RULE = "1-64 letters, digits or '_.-', not starting with '.' or '-'"


def is_safe_id(value: object) -> bool:
    return isinstance(value, str) and ID_RE.fullmatch(value) is not None


def check_id(value: object) -> str:
    """A stream id or name usable as one path component; ValueError otherwise."""
    if not is_safe_id(value):
        raise ValueError(f"must be {ID_RULE}")
    assert isinstance(value, str)
    return value


def default_base(name: str, side: str) -> Path:
    """``runs/<name>/<side>`` under the cwd; a name that is not a safe id becomes ``live``."""
    return Path("runs") / (name if is_safe_id(name) else "live") / side


def stream_folder(base: Path, stream_id: str) -> Path:
    """``base/<stream_id>``, refusing any id that would leave ``base``."""
    check_id(stream_id)
    folder = base / stream_id
    root = base.resolve()
    if root not in folder.resolve().parents:  # a symlink planted in base, say
        raise ValueError(f"stream folder {folder} is not inside {base}")
    return folder
