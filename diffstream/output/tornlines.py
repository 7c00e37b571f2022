"""Cut a torn last line off a line-oriented log before appending to it.

A process killed in the middle of writing a record leaves a line without its newline. The
next writer would append its first record onto that fragment, making one corrupt line in the
middle of the file, which ``read_frames_jsonl`` refuses. So a log opened for appending is
first checked: when it does not end with a newline, everything after the last newline is
cut away (and returned, for the caller to report).
"""

from __future__ import annotations

import os
from pathlib import Path

_CHUNK = 64 * 1024


def repair_torn_tail(path: Path) -> bytes:
    """Remove a trailing partial line from ``path``; returns what was cut (b"" if none)."""
    try:
        fh = open(path, "r+b")  # noqa: SIM115 - closed below, truncate needs the handle
    except FileNotFoundError:
        return b""
    with fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return b""
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return b""
        end = size  # scan back for the last newline, a chunk at a time
        while end > 0:
            start = max(0, end - _CHUNK)
            fh.seek(start)
            nl = fh.read(end - start).rfind(b"\n")
            if nl >= 0:
                cut = start + nl + 1
                break
            end = start
        else:
            cut = 0
        fh.seek(cut)
        torn = fh.read()
        fh.truncate(cut)
        return torn
