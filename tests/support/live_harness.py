"""Run live senders and receivers as processes, optionally in two Linux network namespaces.

Used by the tests and handy for demos on one machine: ``netns_pair`` makes two "hosts"
joined by a veth pair with private 10.200.x.x/30 addresses (root only; nothing outside the
two namespaces is touched or reached), ``Proc`` starts ``python -m diffstream ...`` in one,
and ``partition`` takes the link down and up again.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffstream.live.logs import STATUS_NAME, StreamState


def netns_unavailable() -> str | None:
    """Why namespaces cannot be used here (None when they can)."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    if shutil.which("ip") is None:
        return "the iproute2 'ip' command is missing"
    probe = f"dsprobe{os.getpid() % 100000}"
    try:
        subprocess.run(["ip", "netns", "add", probe], check=True, capture_output=True,
                       timeout=10)
    except (subprocess.SubprocessError, OSError) as exc:
        return f"'ip netns add' failed: {exc}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    return None


@dataclass(frozen=True)
class NetnsPair:
    a: str  # namespace of host A (sender)
    b: str  # namespace of host B (receiver)
    dev_a: str
    dev_b: str
    addr_a: str
    addr_b: str

    def exec_prefix(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@contextlib.contextmanager
def netns_pair(index: int) -> Iterator[NetnsPair]:
    """Two namespaces joined by a veth pair, 10.200.<index>.1/30 <-> .2/30; always removed."""
    if not 1 <= index <= 254:
        raise ValueError("index must be in 1..254")
    tag = f"{os.getpid() % 10000}x{index}"
    pair = NetnsPair(a=f"ds{tag}a", b=f"ds{tag}b", dev_a=f"ds{tag}va", dev_b=f"ds{tag}vb",
                     addr_a=f"10.200.{index}.1", addr_b=f"10.200.{index}.2")
    try:
        _ip("netns", "add", pair.a)
        _ip("netns", "add", pair.b)
        _ip("link", "add", pair.dev_a, "type", "veth", "peer", "name", pair.dev_b)
        _ip("link", "set", pair.dev_a, "netns", pair.a)
        _ip("link", "set", pair.dev_b, "netns", pair.b)
        for ns, dev, addr in ((pair.a, pair.dev_a, pair.addr_a), (pair.b, pair.dev_b,
                                                                   pair.addr_b)):
            _ip("-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield pair
    finally:
        for ns in (pair.a, pair.b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", pair.dev_a], capture_output=True, timeout=10)


def partition(pair: NetnsPair, down: bool) -> None:
    """Cut (or restore) the link between the two hosts."""
    _ip("-n", pair.a, "link", "set", pair.dev_a, "down" if down else "up")


class Proc:
    """``python -m diffstream ARGS`` as a child process, output to ``log``."""

    def __init__(self, args: list[str], log: Path, *, cwd: Path,
                 prefix: list[str] | None = None) -> None:
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._fh = log.open("ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="200")
        cmd = [*(prefix or []), sys.executable, "-m", "diffstream", *args]
        self.p = subprocess.Popen(cmd, stdout=self._fh, stderr=subprocess.STDOUT, cwd=cwd,
                                  env=env, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.p.pid

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal our child (its own process group: ``ip netns exec`` execs into it)."""
        if self.p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.p.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.p.wait(timeout=10)

    def wait(self, timeout: float) -> int:
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def output(self) -> str:
        if not self._fh.closed:
            self._fh.flush()
        return self.log.read_text(errors="replace")

    def close(self) -> None:
        self.kill()
        self._fh.close()


def stream_dirs(base: Path) -> list[Path]:
    """Stream folders under an ``--out`` base, oldest first."""
    found = [d for d in base.glob("*/") if StreamState.load(d) is not None]
    return sorted(found, key=lambda d: d.name)


def read_status(folder: Path) -> dict[str, Any]:
    return json.loads((folder / STATUS_NAME).read_text())


def wait_for(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
