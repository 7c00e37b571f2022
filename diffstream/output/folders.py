"""Output folders: checked before a run starts, and never clobbered by accident.

The choice (issue 17, item 5): a run refuses an output folder that already holds anything,
unless ``--overwrite`` is given, and checks this (with every other input) before it writes a
byte. Without ``--overwrite`` a run therefore always writes into a fresh folder, directly, so
the documented crash safety holds where the user looks: ``frames.jsonl`` gains each arm as it
finishes. With ``--overwrite`` the run writes into a hidden staging folder next to the old
one and swaps it in only when it has finished: a run that fails or is interrupted leaves the
old results as they were (its own finished arms stay in the staging folder, and it says so).
Refusing rather than silently picking another name keeps the output path predictable for
scripts; the message names both ways out.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from diffstream.errors import InputError


def check_writable_dir(path: Path, option: str = "--out") -> Path:
    """``path`` can be (or become) a folder we write into; InputError naming ``option``
    otherwise (a file, below a file, a read-only or pseudo file system such as /proc)."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise InputError(f"{option} {path}: is a file, not a folder; give a folder path")
    anc = p.absolute()
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise InputError(f"{option} {path}: {anc} is a file, so no folder can be made below "
                         "it; give a folder path")
    try:  # the only reliable test on /proc, /sys, read-only mounts: try it (leaves nothing)
        os.rmdir(tempfile.mkdtemp(prefix=".diffstream-probe-", dir=anc))
    except OSError as exc:
        raise InputError(f"{option} {path}: cannot create folders in {anc} "
                         f"({exc.strerror or exc}); choose a writable folder") from None
    return p


def is_empty_dir(path: Path) -> bool:
    return path.is_dir() and next(path.iterdir(), None) is None


@dataclass
class RunFolder:
    """Where a run's results go (``out``) and where it writes them meanwhile (``work``)."""

    out: Path
    work: Path

    @property
    def staged(self) -> bool:
        return self.work != self.out

    def open(self) -> Path:
        self.work.mkdir(parents=True, exist_ok=True)
        return self.work

    def commit(self) -> None:
        """Put the finished run in place (``--overwrite``: the old results go only now)."""
        if not self.staged:
            return
        old = self.out.with_name(f".{self.out.name}.old-{secrets.token_hex(3)}")
        try:
            os.replace(self.out, old)
        except FileNotFoundError:
            old = None  # type: ignore[assignment]
        os.replace(self.work, self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def keep_note(self) -> str:
        """What a failed or interrupted run says about where things are."""
        if not self.staged:
            return f"finished arms are in {self.out}/frames.jsonl"
        return (f"the previous results in {self.out}/ are unchanged; this run's finished "
                f"arms are in {self.work}/")


def plan_output(out: Path, *, overwrite: bool, option: str = "--out") -> RunFolder:
    """Check ``out`` and decide where the run writes; nothing is created yet."""
    check_writable_dir(out, option)
    if not out.exists() or is_empty_dir(out):
        return RunFolder(out, out)
    if not overwrite:
        names = sorted(p.name for p in out.iterdir())
        shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        raise InputError(f"{out}/ already holds results ({shown}); pass --overwrite to "
                         "replace them when this run has finished, or choose another --out")
    staging = out.with_name(f".{out.name}.partial-{secrets.token_hex(3)}")
    return RunFolder(out, staging)
