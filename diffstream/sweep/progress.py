"""Sweep progress: a rich bar (runs done / running / failed, elapsed, ETA) on a terminal,
plain lines otherwise (CI, pipes, ``--no-dashboard``)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


class SweepProgress:
    """Counts runs and shows them; ``done`` starts at the runs a resume skipped."""

    def __init__(self, name: str, total: int, *, skipped: int, live: bool, console: Console,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name, self.total = name, total
        self.done, self.failed, self.running = skipped, 0, 0
        self._skipped = skipped
        self.console = console
        self.live = live and console.is_terminal
        self._clock = clock
        self._t0 = clock()
        self._every = 1 if total <= 100 else max(1, total // 50)
        self._progress: Progress | None = None
        if self.live:
            self._progress = Progress(
                TextColumn(f"[bold]{escape(name)}"), BarColumn(bar_width=None),
                MofNCompleteColumn(), TextColumn("runs"),
                TextColumn("[cyan]{task.fields[running]} running"),
                TextColumn("[red]{task.fields[failed]} failed"),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                console=console, expand=True)
            self._task = self._progress.add_task(name, total=total, completed=skipped,
                                                 running=0, failed=0)

    def __enter__(self) -> SweepProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()

    def eta_s(self) -> float:
        ran = self.done + self.failed - self._skipped
        left = self.total - self.done - self.failed
        if ran <= 0:
            return math.inf
        return (self._clock() - self._t0) / ran * left

    def _refresh(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done + self.failed,
                                  running=self.running, failed=self.failed)

    def print(self, text: str) -> None:
        """A line above the bar (or a plain line)."""
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def started(self, n: int = 1) -> None:
        self.running += n
        self._refresh()

    def finished(self, params: dict[str, Any], entry: dict[str, Any], *, final: bool,
                 retry: bool) -> None:
        """Account one attempt. ``final``: the run will not be tried again (ok or given up)."""
        self.running -= 1
        ok = entry["status"] == "ok"
        if ok:
            self.done += 1
        elif final:
            self.failed += 1
        self._refresh()
        where = (f"{params['arm']} on {params['trace']} share {params['share']:g} "
                 f"seed {params['seed']}")
        if not ok:
            what = "retrying" if retry else "FAILED"
            self.print(f"[{self.name}] run {entry['id']} ({where}) {what}: "
                       f"{entry.get('error', '')}")
        n = self.done + self.failed
        if not self.live and ok and (n % self._every == 0 or n == self.total):
            qoe = (entry.get("summary") or {}).get("qoe")
            qtxt = f"QoE {qoe:.2f}" if isinstance(qoe, float) else "QoE –"
            self.print(f"[{self.name}] {n}/{self.total} done · {self.running} running · "
                       f"{self.failed} failed · {where}: {qtxt} ({entry.get('wall_s') or 0:.1f} s)"
                       f" · elapsed {_hms(self._clock() - self._t0)} · ETA {_hms(self.eta_s())}")

    def requeued(self) -> None:
        """An in-flight run went back to the queue without counting as an attempt."""
        self.running -= 1
        self._refresh()
