"""SIGTERM ends a run the way Ctrl-C does.

Python turns SIGINT into ``KeyboardInterrupt``, so every ``finally`` runs: the workers are
told to exit (or killed), their temporary socket folder is removed, finished arms stay in
``frames.jsonl``. SIGTERM (``kill``, a job scheduler, ``timeout``) used to kill the process
outright and leave all of that behind. ``sigterm_as_interrupt`` raises ``Terminated``, a
``KeyboardInterrupt``, instead; the command then exits with 143 (128 + SIGTERM).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

EXIT_TERMINATED = 128 + signal.SIGTERM  # 143


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when SIGTERM arrives."""


class _State:
    received = False


def terminated() -> bool:
    """True once SIGTERM arrived inside ``sigterm_as_interrupt``."""
    return _State.received


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises ``Terminated`` (once: a second one during the cleanup is
    ignored, so the cleanup finishes). Outside the main thread this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if _State.received:
            return
        _State.received = True
        raise Terminated()

    _State.received = False
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
