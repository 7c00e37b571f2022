"""Live dashboards: the simulator's dashboard plus a connection panel, on both machines.

The frame view is ``diffstream.output.dashboard.sim.Dashboard`` unchanged (capacity = the
shaping trace when shaping is on; estimate = the sender's measured-throughput estimate;
budget; queue; receiver-side PSNR; latency against the deadline; counters and the last
frames). Live adds a panel of what only a real network has: peer and reconnects, handshake
failures (wrong keys), measured goodput, clock offset with its error bound, RTT, and
dropped messages by reason.

Without a TTY it prints one plain status line every ``every_s`` seconds instead.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table

from diffstream.output.dashboard.sim import Dashboard, format_bps
from diffstream.pipeline.records import FrameRecord

Status = Callable[[], dict[str, str]]


class Goodput:
    """Bytes delivered over the last ``window_s`` seconds of wall time (measured rate)."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._events: deque[tuple[float, int]] = deque()
        self._sum = 0

    def add(self, nbytes: int, now: float | None = None) -> None:
        t = time.monotonic() if now is None else now
        self._events.append((t, nbytes))
        self._sum += nbytes
        self._trim(t)

    def _trim(self, now: float) -> None:
        while self._events and now - self._events[0][0] > self.window_s:
            self._sum -= self._events.popleft()[1]

    def bps(self, now: float | None = None) -> float:
        t = time.monotonic() if now is None else now
        self._trim(t)
        return self._sum * 8.0 / self.window_s


class LiveDashboard(Dashboard):
    """``keep``: display times and latencies kept for the freeze count and p95 (a stream may
    run for days; beyond ``keep`` frames both describe the recent ``keep`` frames)."""

    time_label = "stream time"

    def __init__(self, title: str, arm: str, frames: int, *, live: bool, status: Status,
                 every_s: float = 5.0, keep: int = 18_000, **kwargs: object) -> None:
        self.status = status  # before the base class: its Live view renders at once
        self.every_s = every_s
        self.keep = keep
        super().__init__(title, [arm], frames, live=live, **kwargs)  # type: ignore[arg-type]
        self._next_line = time.monotonic() + every_s
        self.start_arm(arm)

    def on_frame(self, record: FrameRecord) -> None:
        """Account one frame; plain mode prints on a timer, not at 10 % steps (a live stream
        may run for hours)."""
        with self._lock:
            state = self._states[record.arm] if record.arm in self._states else None
            if state is None:
                return
            state.add(record)
            if len(state.display) > 2 * self.keep:  # bounded memory: forget the oldest
                del state.display[: -self.keep]
                del state.latencies_ms[: -self.keep]
                state.first_capture = state.display[0] - (state.lag_s or 0.0)
                state._freeze_cache = (-1, (0, 0.0))
            self._progress.advance(self._task)
        self.tick()

    def tick(self, force: bool = False) -> None:
        """Plain mode: print the status line when it is due (call it from the event loop)."""
        if self.live:
            return
        now = time.monotonic()
        if force or now >= self._next_line:
            self._next_line = now + self.every_s
            self._line(self.status_line())

    def status_line(self) -> str:
        s = self._current
        st = self.status()
        parts = [f"[{self.scenario}]"]
        if s is not None:
            count, secs = s.freezes()
            parts.append(f"frames {s.done}/{self.frames_per_arm}")
            parts.append(f"shown {s.shown}")
            psnr = s.mean_psnr()
            parts.append("PSNR " + (f"{psnr:.2f} dB" if math.isfinite(psnr) else "–"))
            p95 = s.p95_ms()
            parts.append("p95 " + (f"{p95:.0f} ms" if math.isfinite(p95) else "–"))
            parts.append(f"freezes {count} ({secs:.2f} s)")
            if s.last:
                parts.append(f"budget {format_bps(s.last[-1].budget_bits / s.frame_interval_s)}")
        parts += [f"{k} {v}" for k, v in st.items()]
        return "  ".join(parts)

    def _render_locked(self) -> RenderableType:
        base = super()._render_locked()
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        for key, value in self.status().items():
            grid.add_row(key, value)
        return Group(Panel(grid, title="live", title_align="left", expand=False), base)
