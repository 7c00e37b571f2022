"""How many "lost" records a gap in the sequence numbers may cost the receiver.

A frame whose seq jumps ahead of the last one makes the receiver record every seq in between
as lost (a frame record each: about 1 kB on disk, and a quality score for the first
``max_scored_gap_s``). Without a bound one message could buy ``max_gap_s x fps`` records
(9000 at 15 fps), again and again. A real stream cannot lose frames faster than it produces
them, fps per second of wall time, so the records a gap may cost come from a token bucket:

- it fills at ``slack x fps`` tokens per second (slack 1.5 covers clock and scheduling
  jitter) up to ``max_gap_s x fps`` (the longest gap the receiver accepts at all);
- it starts with a small burst, plus, for a restarted receiver continuing its log, the
  tokens the time since the log was last written would have brought (the frames the
  receiver missed while it was down are real losses);
- one record costs one token. Frames of a gap that the bucket cannot pay for are not
  written one by one but as a single range line in ``gaps.jsonl`` (and counted as
  ``gap_unrecorded``); the sender's log still has a record for each.

So one message costs at most the frames the stream could have produced since the last
recorded loss, and a hostile sender gets no more records per second than a real stream.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

GAPS_NAME = "gaps.jsonl"
SLACK = 1.5
BURST_S = 2.0  # seconds of frames a fresh stream may lose at once before the bucket fills
MIN_BURST = 16


class GapBudget:
    def __init__(self, fps: float, cap: int, *, idle_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = SLACK * fps
        self.cap = float(max(1, cap))
        self.clock = clock
        burst = max(MIN_BURST, math.ceil(BURST_S * fps))
        self.tokens = min(self.cap, burst + max(0.0, idle_s) * self.rate)
        self.last = clock()

    def take(self, n: int) -> int:
        """Spend up to ``n`` tokens; returns how many records may be written."""
        now = self.clock()
        self.tokens = min(self.cap, self.tokens + (now - self.last) * self.rate)
        self.last = now
        k = max(0, min(n, int(self.tokens)))
        self.tokens -= k
        return k


def log_idle_s(path: Path) -> float:
    """Seconds since ``path`` was last written (0 when it does not exist)."""
    try:
        return max(0.0, time.time() - path.stat().st_mtime)
    except OSError:
        return 0.0


def append_gap(folder: Path, first: int, last: int, why: str) -> None:
    """One line for the seqs ``first..last`` (inclusive) that got no record of their own."""
    line = {"first": first, "last": last, "frames": last - first + 1, "why": why[:200],
            "at": time.time()}
    with (folder / GAPS_NAME).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")


def read_gaps(folder: Path) -> list[tuple[int, int]]:
    """(first, last) of every range in ``gaps.jsonl``; unreadable lines are skipped."""
    out: list[tuple[int, int]] = []
    path = folder / GAPS_NAME
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            data = json.loads(line)
            out.append((int(data["first"]), int(data["last"])))
        except (ValueError, KeyError, TypeError):
            continue
    return out
