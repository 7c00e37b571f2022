"""Per-session sequence window: tells fresh frames from replayed and out-of-order ones.

The receiver keeps, per sender session, the highest frame seq accepted and a bitmap of the
``size`` seqs below it (the IPsec/DTLS anti-replay window, RFC 4303 section 3.4.3). A frame

- above the highest is fresh (``"new"``); a jump larger than ``max_jump`` is refused
  (``"too_far"``) so a corrupt or hostile seq cannot make the receiver account for billions
  of missing frames; the sender re-synchronises big jumps explicitly (WELCOME);
- at or below the highest and already accepted is ``"replayed"``; so is anything older than
  the window, whose fate can no longer be told apart;
- below the highest but never accepted is ``"out_of_order"``: it was already written off as
  lost when a later frame arrived, and the log keeps that decision.

Memory is O(size) bits per session and the receiver keeps one session at a time.
"""

from __future__ import annotations

from typing import Literal

Verdict = Literal["new", "replayed", "out_of_order", "too_far"]


class SeqWindow:
    def __init__(self, size: int = 1024, max_jump: int = 2**32) -> None:
        if size < 1 or max_jump < 1:
            raise ValueError("size and max_jump must be >= 1")
        self.size = size
        self.max_jump = max_jump
        self.highest: int | None = None
        self._seen = 0  # bit i set: seq (highest - i) was accepted

    def check(self, seq: int) -> Verdict:
        """Classify ``seq`` without changing the window."""
        if self.highest is None:
            return "new"
        if seq > self.highest:
            return "too_far" if seq - self.highest > self.max_jump else "new"
        back = self.highest - seq
        if back >= self.size or (self._seen >> back) & 1:
            return "replayed"
        return "out_of_order"

    def accept(self, seq: int) -> None:
        """Mark ``seq`` accepted (call only after ``check`` said "new", or to re-sync)."""
        if self.highest is None or seq > self.highest:
            shift = seq - self.highest if self.highest is not None else 0
            self._seen = ((self._seen << shift) | 1) if shift < self.size else 1
            self._seen &= (1 << self.size) - 1
            self.highest = seq
        else:
            self._seen |= 1 << (self.highest - seq)

    def resync(self, next_seq: int) -> None:
        """Expect ``next_seq`` next (an authenticated WELCOME said so): forget the window."""
        self.highest = next_seq - 1 if next_seq > 0 else None
        self._seen = 0
