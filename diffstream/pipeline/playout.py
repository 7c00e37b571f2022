"""When does the viewer see each frame? Pure models shared by the receiver and the sender.

Interactive (video call / cloud rendering): a frame is shown only if it is ready (fully
arrived and decoded) by its deadline, capture + target latency; otherwise its slot keeps the
last shown image (a freeze, counted by WebRTC's rule in metrics.qoe).

Playback (streaming with a playout buffer, Pensieve/Sabre semantics): playback starts once
``startup`` frames are ready; frame k is due one frame interval after frame k-1 played; if
it is not ready then, playback stalls until it is (rebuffering), and everything after shifts.
A frame that never arrives plays as a repeat of the last image, without stalling (the
receiver detects the gap when the next frame arrives; there is no retransmission). A frame
that arrived but cannot be shown (the sender skipped it, or it failed to decode) still
holds its slot in the timeline: it counts as buffered and stalls if late, then plays as a
repeat of the last image.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Slot:
    shown: bool
    display_s: float | None
    stall_s: float  # rebuffer time charged before this frame (playback)


class InteractivePlayout:
    def __init__(self) -> None:
        self._last_display = -math.inf

    def on_frame(self, ready_s: float | None, deadline_s: float) -> Slot:
        if ready_s is None or ready_s > deadline_s + 1e-12:
            return Slot(False, None, 0.0)
        display = max(ready_s, self._last_display)  # frames render in order
        self._last_display = display
        return Slot(True, display, 0.0)


class PlaybackBuffer:
    """Playout buffer fed frames in sequence order with their ready times (None = lost)."""

    def __init__(self, fps: float, startup_s: float) -> None:
        self.interval = 1.0 / fps
        self.startup_frames = max(1, math.ceil(startup_s * fps - 1e-9))
        self._pending: list[float | None] = []  # frames seen before playback started
        self._next_due: float | None = None  # play time of the next frame once started
        # (ready, display) of recent frames, newest last
        self._window: deque[tuple[float, float]] = deque(maxlen=4096)

    @property
    def started(self) -> bool:
        return self._next_due is not None

    def on_frame(self, ready_s: float | None, showable: bool = True) -> list[Slot]:
        """Feed the next frame; returns the slots decided by it (startup frames are decided
        together when playback starts, so the list may hold several or none). ``ready_s`` is
        when it arrived and decoded (None: never arrived); ``showable=False`` for a frame that
        arrived but has no image (skipped by the sender, undecodable)."""
        if self._next_due is None:
            self._pending.append((ready_s, showable))
            if len(self._pending) < self.startup_frames:
                return []
            readies = [r for r, _ in self._pending if r is not None]
            start = max(readies) if readies else 0.0
            self._next_due = start
            pending, self._pending = self._pending, []
            return [self._play(r, ok) for r, ok in pending]
        return [self._play(ready_s, showable)]

    def flush(self) -> list[Slot]:
        """End of stream before playback started: play what there is."""
        if self._next_due is not None or not self._pending:
            return []
        readies = [r for r, _ in self._pending if r is not None]
        self._next_due = max(readies) if readies else 0.0
        pending, self._pending = self._pending, []
        return [self._play(r, ok) for r, ok in pending]

    def _play(self, ready_s: float | None, showable: bool = True) -> Slot:
        assert self._next_due is not None
        due = self._next_due
        if ready_s is None:
            self._next_due = due + self.interval
            return Slot(False, None, 0.0)
        stall = max(0.0, ready_s - due)
        display = due + stall
        self._next_due = display + self.interval
        self._window.append((ready_s, display))
        return Slot(showable, display if showable else None, stall)

    def level_s(self, t: float) -> float:
        """Seconds of ready-but-unplayed video at time t (the buffer a receiver reports).

        Recent frames are scanned newest first; the scan stops at the first frame that
        finished playing before t, so the cost is the buffer's length in frames."""
        if self._next_due is None:
            return sum(1 for r, _ in self._pending if r is not None and r <= t) * self.interval
        level = 0.0
        for ready, display in reversed(self._window):
            if display + self.interval <= t:
                break
            if ready <= t:
                level += min(self.interval, display + self.interval - max(t, display))
        return max(0.0, level)
