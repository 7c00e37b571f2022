"""Progress of an evaluation: a rich bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import time
from types import TracebackType

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


class EvalProgress:
    """Counts encode/decode calls; ``stage`` lines (a codec x target done) are printed in
    both modes, so a log shows what was sent."""

    def __init__(self, total: int, *, console: Console, live: bool) -> None:
        self.total, self.done = total, 0
        self.console = console
        self._t0 = time.monotonic()
        self._progress: Progress | None = None
        if live and console.is_terminal:
            self._progress = Progress(
                TextColumn("[bold]evaluate"), TextColumn("{task.description}"),
                BarColumn(bar_width=None), MofNCompleteColumn(), TextColumn("crops"),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                console=console, expand=True)
            self._task = self._progress.add_task("", total=total)

    def __enter__(self) -> EvalProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()

    def tick(self, what: str) -> None:
        self.done += 1
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done, description=escape(what))

    def stage(self, text: str) -> None:
        elapsed = time.monotonic() - self._t0
        line = f"[{self.done}/{self.total} {elapsed:.0f}s] {text}"
        if self._progress is not None:
            self._progress.console.print(escape(line), highlight=False)
        else:
            self.console.print(escape(line), highlight=False, soft_wrap=True)
