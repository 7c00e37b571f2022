"""Files of one live stream, on each side: ``OUT/<stream id>/``.

- ``frames.jsonl``: the simulator's per-frame log (``FrameRecord``, one line per frame, in
  seq order, flushed per line), so ``diffstream.output.report`` reads it unchanged.
- ``stream.json``: stream id, name, time base and whether the stream finished; it lets a
  restarted process continue the same stream and log.
- ``journal.jsonl`` (sender only): a write-ahead line per frame *before* it is sent, so after
  a crash the restarted sender knows every frame the old one put on the wire and can settle
  each one (from the receiver's reports, or as lost). Compacted as frames settle.
- ``status.json``: counters, clock offset and connection state, rewritten every few seconds
  and at the end (for scripts and tests; the dashboard shows the same numbers).
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from diffstream.output.report import FRAMES_NAME, append_frames_jsonl
from diffstream.output.tornlines import repair_torn_tail
from diffstream.pipeline.records import FrameRecord

log = logging.getLogger("diffstream.live.logs")

STREAM_NAME = "stream.json"
JOURNAL_NAME = "journal.jsonl"
STATUS_NAME = "status.json"
# FrameRecord fields typed plain float: null in the log means NaN there (as report.py reads).
_FLOAT_FIELDS = frozenset(f.name for f in fields(FrameRecord) if f.type in ("float", float))


def new_stream_id() -> str:
    """Sortable and readable: start time plus 24 random bits."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, allow_nan=False, default=_nan_free),
                   encoding="utf-8")
    os.replace(tmp, path)


def _nan_free(value: Any) -> Any:
    return str(value)


def clean_json(value: Any) -> Any:
    """NaN/inf -> None, recursively, for strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value


# --------------------------------------------------------------------------- stream state


@dataclass
class StreamState:
    stream_id: str
    name: str
    arm: str
    epoch_wall: float  # time.time() at stream time 0
    epoch_mono: float  # time.monotonic() at stream time 0 (this machine, this boot)
    finished: bool = False

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / STREAM_NAME, self.__dict__)

    @classmethod
    def load(cls, folder: Path) -> StreamState | None:
        try:
            data = json.loads((folder / STREAM_NAME).read_text(encoding="utf-8"))
            return cls(**{k: data[k] for k in cls.__dataclass_fields__})
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def mono_epoch_now(self) -> float:
        """The stream's epoch on this process's monotonic clock. Same boot: the stored one;
        after a reboot (the two clocks disagree by > 1 s) it is re-derived from wall time."""
        wall_age = time.time() - self.epoch_wall
        mono_age = time.monotonic() - self.epoch_mono
        if abs(wall_age - mono_age) > 1.0:
            return time.monotonic() - wall_age
        return self.epoch_mono


def latest_unfinished(base: Path, name: str) -> Path | None:
    """The most recent stream folder under ``base`` for scenario ``name`` not finished."""
    best: tuple[str, Path] | None = None
    for folder in base.glob("*/"):
        st = StreamState.load(folder)
        if st is not None and st.name == name and not st.finished:
            if best is None or st.stream_id > best[0]:
                best = (st.stream_id, folder)
    return best[1] if best else None


# --------------------------------------------------------------------------- frame log


def _repair(path: Path) -> bytes:
    """Cut a torn last line (see ``tornlines``) and say so in the log."""
    torn = repair_torn_tail(path)
    if torn:
        log.warning("%s: cut a torn last line of %d bytes (a crash mid-write): %.80r",
                    path, len(torn), torn)
    return torn


class FrameLog:
    """``frames.jsonl`` written in seq order, each line flushed as it is written."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / FRAMES_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.torn = _repair(self.path)  # a crash mid-line: never append onto the fragment
        self.path.touch()
        self.written = 0

    def append(self, record: FrameRecord) -> None:
        append_frames_jsonl(self.path, [record])
        self.written += 1


def read_tail(path: Path, n: int) -> list[FrameRecord]:
    """The last ``n`` records of a frame log without reading the whole file; a torn last
    line (a crash mid-write) is skipped."""
    if not path.is_file():
        return []
    size = path.stat().st_size
    chunk = max(4096, n * 2048)
    with path.open("rb") as fh:
        start = max(0, size - chunk)
        fh.seek(start)
        raw = fh.read().decode("utf-8", errors="replace")
    lines = raw.splitlines()
    if start > 0 and lines:
        lines = lines[1:]  # probably cut in the middle
    out: list[FrameRecord] = []
    for line in lines[-(n + 1):]:  # one spare: the last line may be torn
        try:
            data = json.loads(line)
            for name in _FLOAT_FIELDS:
                if name in data and data[name] is None:
                    data[name] = math.nan
            out.append(FrameRecord.from_dict(data))
        except (ValueError, TypeError):
            continue
    return out[-n:]


# --------------------------------------------------------------------------- journal


class Journal:
    """Sender's write-ahead log of frames on the wire that have no final record yet."""

    def __init__(self, folder: Path, compact_every: int = 2000) -> None:
        self.path = folder / JOURNAL_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.torn = _repair(self.path)
        self._fh = self.path.open("a", encoding="utf-8")
        self._lines = 0
        self.compact_every = compact_every

    def add(self, seq: int, info: dict[str, Any]) -> None:
        self._fh.write(json.dumps(clean_json({"seq": seq, **info}), allow_nan=False) + "\n")
        self._fh.flush()
        self._lines += 1

    def maybe_compact(self, pending: Iterable[tuple[int, dict[str, Any]]]) -> None:
        """Rewrite the journal with only ``pending`` once it has grown long."""
        if self._lines < self.compact_every:
            return
        self._fh.close()
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            n = 0
            for seq, info in pending:
                fh.write(json.dumps(clean_json({"seq": seq, **info}), allow_nan=False) + "\n")
                n += 1
        os.replace(tmp, self.path)
        self._fh = self.path.open("a", encoding="utf-8")
        self._lines = n

    def close(self) -> None:
        self._fh.close()

    @staticmethod
    def read(folder: Path) -> dict[int, dict[str, Any]]:
        """seq -> info of every journaled frame (a torn last line is skipped)."""
        out: dict[int, dict[str, Any]] = {}
        path = folder / JOURNAL_NAME
        if not path.is_file():
            return out
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                data = json.loads(line)
                seq = int(data.pop("seq"))
            except (ValueError, KeyError, TypeError):
                continue
            out[seq] = data
        return out
