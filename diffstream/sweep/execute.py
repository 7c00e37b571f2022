"""Run one sweep cell inside a worker (a pool process or a Ray actor).

**What is reused across runs.** A codec run needs the sender and receiver worker processes
(``WorkerEndpoints``): starting them costs two interpreter start-ups, the torch import,
the content source and the quality scorer, and, for learned codecs, any model a codec
module loads and caches at import. Each pool process / Ray actor therefore keeps one
``WorkerEndpoints`` alive and reuses it for every run whose *worker key* matches: the
scenario minus the fields the workers never read (seed, trace, link, arms, duration, name,
description, output), i.e. frame, content, compute, mode, QoE weights and ``max_bpp``. A
different key closes the old pair and starts a new one (at most one pair per process).

Results do not depend on reuse: every arm creates a fresh codec object in both workers
(its rate model starts from the prior) and a fresh playout state, exactly as consecutive
arms of one ``run_sim.py`` session do. After any failure the pair is closed, so a worker
left in an unknown state (results still queued, a half-started arm) is never reused.

Network-only runs (``network_only_bytes``) need no worker processes at all: they go through
``sim.fastpath`` (``reference_loop``: the full SimPy loop, same results).

Nothing here raises: a failure comes back as an outcome with its traceback, so one bad run
never stops a sweep.
"""

from __future__ import annotations

import multiprocessing.util
import os
import signal
import socket
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from diffstream.sweep.plan import RunSpec, canonical_json

#: Scenario fields the codec workers never read: excluded from the reuse key.
_NOT_FOR_WORKERS = ("seed", "trace", "link", "arms", "duration_s", "name", "description",
                    "output")


def worker_key(spec: RunSpec) -> str:
    cfg = {k: v for k, v in spec.scenario.items() if k not in _NOT_FOR_WORKERS}
    return canonical_json({"cfg": cfg, "dir": spec.scenario_dir, "transport": spec.transport})


class EndpointCache:
    """At most one live ``WorkerEndpoints`` per process, keyed by ``worker_key``."""

    def __init__(self) -> None:
        self.key: str | None = None
        self.endpoints: Any = None
        self.log_path: Path | None = None
        self.runs = 0
        self._finalizer_set = False

    def get(self, spec: RunSpec, scenario: Any) -> tuple[Any, bool]:
        """(endpoints, reused) for this run's worker key."""
        from diffstream.sim.endpoints import WorkerEndpoints

        key = worker_key(spec)
        if self.endpoints is not None and key == self.key:
            self.runs += 1
            return self.endpoints, True
        self.close()
        fd, log = tempfile.mkstemp(prefix="diffstream-sweep-workers-", suffix=".log")
        os.close(fd)
        self.log_path = Path(log)
        self.endpoints = WorkerEndpoints(scenario, Path(spec.scenario_dir),
                                         transport=spec.transport, log_path=self.log_path)
        self.key, self.runs = key, 1
        if not self._finalizer_set:
            # pool processes leave through multiprocessing's exit path, which runs these
            # finalizers (atexit handlers are not run there)
            multiprocessing.util.Finalize(None, self.close, exitpriority=10)
            self._finalizer_set = True
        return self.endpoints, False

    def log_tail(self, n: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def kill(self) -> None:
        """Kill the worker pair now, without the goodbye protocol: for signal handlers and
        other threads, when the process is going away and must not leave orphans."""
        if self.endpoints is not None:
            procs = list(self.endpoints.procs.values())
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
            for proc in procs:  # reap them: an orphaned zombie may never be collected
                try:
                    proc.wait(timeout=2)
                except Exception:  # noqa: BLE001 - the process is dying with us anyway
                    pass

    def close(self) -> None:
        if self.endpoints is not None:
            try:
                self.endpoints.close()
            except Exception:  # noqa: BLE001 - closing a broken pair must not mask the error
                pass
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
        self.endpoints, self.key, self.log_path = None, None, None


CACHE = EndpointCache()


def kill_workers() -> None:
    """Kill this process's codec workers now, a pair still starting included (the cache
    holds a pair only once its handshake is done, so Linux's /proc finds the rest). For a
    process that is about to die: nothing it started may outlive it."""
    CACHE.kill()
    me, killed = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if ppid == me:
                os.kill(int(stat.parent.name), signal.SIGKILL)
                killed.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    for pid in killed:  # reap: an orphaned zombie may never be collected here
        try:
            os.waitpid(pid, 0)
        except OSError:
            pass


_TRACE_CACHE = Path(tempfile.gettempdir()) / "diffstream-sweep-traces"


def materialise_trace(sha256: str, data: bytes, suffix: str) -> Path:
    """Write shipped trace bytes once per node (content-addressed, atomic rename)."""
    _TRACE_CACHE.mkdir(parents=True, exist_ok=True)
    path = _TRACE_CACHE / f"{sha256}{suffix}"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path


def execute(spec: RunSpec, trace_bytes: bytes | None = None) -> dict[str, Any]:
    """Run one cell; returns its outcome (``status`` ok or failed), never raises.

    ``trace_bytes``: the trace file's content, shipped by an executor whose workers may not
    see the driver's files (Ray on other machines); written to a local cache and used instead
    of the path.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    out: dict[str, Any] = {"id": spec.id, "worker": f"{socket.gethostname()}:{os.getpid()}",
                           "endpoint": "none"}
    try:
        out.update(_run(spec, trace_bytes, out))
        out["status"] = "ok"
    except BaseException as exc:  # noqa: BLE001 - recorded, never propagated
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            CACHE.close()
            raise
        tb = traceback.format_exc()
        tail = CACHE.log_tail() if out.get("endpoint") in ("started", "reused") else ""
        if tail:
            tb += "\n--- last lines of the codec workers' log ---\n" + tail
        CACHE.close()  # never reuse workers whose state is unknown
        out.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=tb)
    out["wall_s"] = time.perf_counter() - t0
    out["cpu_s"] = time.process_time() - c0  # this process only, not the codec workers
    return out


def _run(spec: RunSpec, trace_bytes: bytes | None, out: dict[str, Any]) -> dict[str, Any]:
    from diffstream.scenario.build import build_trace
    from diffstream.scenario.schema import Scenario
    from diffstream.sim.arm import summarise_result
    from diffstream.sim.best_run import simulate_arm
    from diffstream.sim.endpoints import NetworkOnlyEndpoints

    data = spec.scenario
    if trace_bytes is not None and spec.trace_sha256:
        local = materialise_trace(spec.trace_sha256, trace_bytes,
                                  Path(spec.trace_file or "").suffix)
        data = {**data, "trace": {**data["trace"], "path": str(local)}}
    scenario = Scenario.model_validate(data)
    trace = build_trace(scenario, Path(spec.scenario_dir) / "scenario.yaml")
    stream = trace.scaled(scenario.link.share)
    network_only = spec.network_only_bytes is not None
    arm = scenario.arms[0]
    endpoints: Any = None
    if network_only and not spec.reference_loop:
        out["endpoint"] = "network-only"
    elif network_only:
        endpoints = NetworkOnlyEndpoints(scenario, spec.network_only_bytes or None)
        out["endpoint"] = "network-only"
    else:
        endpoints, reused = CACHE.get(spec, scenario)
        out["endpoint"] = "reused" if reused else "started"

    # an offline bound is checked against the plans it names in the simulation itself
    result = simulate_arm(scenario, arm, stream, endpoints,
                          network_only_bytes=spec.network_only_bytes,
                          reference_loop=spec.reference_loop)
    summary = summarise_result(scenario, result)
    if result.notes:
        out["notes"] = list(result.notes)
    return {
        "summary": summary.to_dict(),
        "malformed": result.malformed,
        "trace_mean_mbps": trace.mean_bps / 1e6,
        # what this stream was offered over the simulated window: the x of QoE-vs-bandwidth
        "stream_mean_kbps": stream.capacity_bps(0.0, scenario.duration_s) / 1e3,
        "frames": result.records if spec.keep_frames else None,
    }
