"""Where runs execute: a local process pool (concurrent.futures) or a Ray cluster.

Both give the scheduler the same small interface: ``slots`` (how many runs may be in
flight), ``submit(spec)``, ``poll(timeout) -> [Completion]`` and ``close()``. A completion
carries the run's outcome (from ``execute``, which never raises), or a *crash*: the process
running it died (killed, out of memory, segfault). ``culprit_known`` says whether the crash
can be pinned on that run: Ray reports the one actor that died; a broken process pool fails
every run in flight at once, so it only knows when a single run was in flight.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from diffstream.errors import InputError
from diffstream.plugins import child_pythonpath, shipped_modules
from diffstream.sweep.execute import execute
from diffstream.sweep.plan import RunSpec

Runner = Callable[..., dict[str, Any]]  # execute(spec, trace_bytes=None) -> outcome


@dataclass
class Completion:
    spec: RunSpec
    outcome: dict[str, Any] | None  # None: crashed
    latency_s: float  # submit -> completion, seen by the driver
    crash: str = ""
    culprit_known: bool = True


class Executor(Protocol):
    name: str
    slots: int

    def submit(self, spec: RunSpec) -> None: ...

    def poll(self, timeout: float) -> list[Completion]: ...

    def close(self, *, interrupted: bool = False) -> None: ...


# --------------------------------------------------------------------------- local pool
def _pool_init() -> None:
    """Pool processes leave Ctrl-C to the driver; SIGTERM (the driver giving up on them)
    kills their codec workers first, so none is left orphaned. A normal exit closes the
    workers gently (``EndpointCache``'s exit finalizer).

    (Plugins: forkserver and spawn both start each pool process with the driver's
    ``sys.path`` of that moment, so a plugin the driver found resolves here too.)"""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def _term(signum: int, frame: Any) -> None:
        from diffstream.sweep.execute import kill_workers

        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        kill_workers()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, _term)


def _mp_context() -> multiprocessing.context.BaseContext:
    """forkserver where available: no fork of a threaded driver (rich, zmq), cheap starts."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["diffstream.sweep.execute", "diffstream.sim.arm"])
        return ctx
    return multiprocessing.get_context("spawn")


def _ready() -> int:
    return os.getpid()


class LocalPoolExecutor:
    """``workers`` processes on this machine; a dead process is replaced, never fatal."""

    name = "local"

    def __init__(self, workers: int, runner: Runner = execute) -> None:
        if workers < 1:
            raise InputError(f"--workers must be at least 1, not {workers}")
        self.slots = workers
        self.runner = runner
        self._ctx = _mp_context()
        t0 = time.perf_counter()
        self._pool = self._new_pool()
        # start every process now (the pool would start them with the first runs), so
        # start-up is measured apart from the runs, as Ray's is
        wait([self._pool.submit(_ready) for _ in range(workers)])
        self.startup_s = time.perf_counter() - t0
        self._futures: dict[Future[dict[str, Any]], tuple[RunSpec, float]] = {}

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.slots, mp_context=self._ctx,
                                   initializer=_pool_init)

    def submit(self, spec: RunSpec) -> None:
        fut = self._pool.submit(self.runner, spec)
        self._futures[fut] = (spec, time.perf_counter())

    def poll(self, timeout: float) -> list[Completion]:
        if not self._futures:
            time.sleep(min(timeout, 0.05))
            return []
        done, _ = wait(list(self._futures), timeout=timeout, return_when=FIRST_COMPLETED)
        out: list[Completion] = []
        broken: list[tuple[RunSpec, float]] = []
        for fut in done:
            spec, t0 = self._futures.pop(fut)
            try:
                out.append(Completion(spec, fut.result(), time.perf_counter() - t0))
            except BrokenProcessPool:
                broken.append((spec, t0))
            except Exception as exc:  # noqa: BLE001 - e.g. an outcome that cannot be pickled
                out.append(Completion(spec, _failed(spec, exc), time.perf_counter() - t0))
        if broken:
            # every run in flight fails with the pool; collect them all, then start afresh
            rest, _ = wait(list(self._futures), timeout=30)
            for fut in rest:
                spec, t0 = self._futures.pop(fut)
                try:
                    out.append(Completion(spec, fut.result(), time.perf_counter() - t0))
                except Exception:  # noqa: BLE001
                    broken.append((spec, t0))
            for fut in list(self._futures):  # not settled in time: treat as casualties
                broken.append(self._futures.pop(fut))
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            msg = ("the pool process running this run died (killed, out of memory or a "
                   "crash in native code)")
            for spec, t0 in broken:
                out.append(Completion(spec, None, time.perf_counter() - t0, crash=msg,
                                      culprit_known=len(broken) == 1))
        return out

    def close(self, *, interrupted: bool = False) -> None:
        if interrupted:
            procs = list((getattr(self._pool, "_processes", None) or {}).values())
            self._pool.shutdown(wait=False, cancel_futures=True)
            for p in procs:  # SIGTERM: _pool_init's handler kills their codec workers first
                if p.is_alive():
                    p.terminate()
            for p in procs:
                p.join(timeout=10)
        else:
            self._pool.shutdown(wait=True)


def _failed(spec: RunSpec, exc: BaseException) -> dict[str, Any]:
    import traceback

    return {"id": spec.id, "status": "failed", "error": f"{type(exc).__name__}: {exc}",
            "traceback": "".join(traceback.format_exception(exc)), "worker": "?",
            "endpoint": "none", "wall_s": 0.0}


# --------------------------------------------------------------------------- Ray
class _SweepActor:
    """One Ray actor = one long-lived worker process with its own endpoint cache."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def run(self, spec: RunSpec, trace_bytes: bytes | None) -> dict[str, Any]:
        import ray

        out = self.runner(spec, trace_bytes)
        # the Ray node's IP: hosts in network namespaces (or containers) share a hostname,
        # so the worker's "host:pid" alone cannot say which node ran a run
        return {**out, "node": ray.util.get_node_ip_address()}

    def close(self) -> None:
        from diffstream.sweep.execute import CACHE

        CACHE.close()

    def kill_workers(self) -> None:
        """Runs beside a busy ``run`` (the actor has two threads) when the sweep is
        interrupted: the codec workers die now rather than outlive the actor."""
        from diffstream.sweep.execute import kill_workers

        kill_workers()


def ray_available() -> str | None:
    """None when Ray can be imported, else why not (for messages and test skips)."""
    try:
        import ray  # noqa: F401
    except ImportError as exc:
        return f"Ray is not installed ({exc}); pip install -e '.[ray]'"
    return None


def ray_runtime_env(*, local: bool) -> dict[str, Any]:
    """What Ray workers need to import what the driver can (docs/plugins.md).

    A local instance's workers run on this machine: they get the driver's own ``sys.path``
    entries as PYTHONPATH (plugins next to the sweep, in the cwd, ``pip install --target``
    folders). A cluster's nodes have other file systems: the driver's ``diffstream`` package
    and every import-path plugin module loaded here (a file or a package folder outside the
    installed packages) are shipped with the job (``py_modules``); plugins registered by
    entry points must be installed on the nodes, like any dependency.
    """
    if local:
        return {"env_vars": {"PYTHONPATH": child_pythonpath()}}
    import diffstream

    return {"py_modules": [str(Path(diffstream.__file__).parent), *shipped_modules()]}


class RayExecutor:
    """Ray actors (one CPU each); trace files travel through Ray's object store.

    ``address``: None starts a local Ray instance (``workers`` CPUs, default all), ``auto``
    joins the cluster started on this machine with ``ray start``, ``ray://host:10001``
    connects through Ray Client. When joining a cluster, the driver's ``diffstream`` package
    and its import-path plugins are shipped with the job (``runtime_env.py_modules``, see
    ``ray_runtime_env``), so every node runs the same code; the nodes need only the
    dependencies installed.
    """

    name = "ray"

    def __init__(self, address: str | None, workers: int | None,
                 runner: Runner = execute) -> None:
        why = ray_available()
        if why:
            raise InputError(why)
        import ray

        self._ray = ray
        self._owns_ray = False
        t0 = time.perf_counter()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
            if address is None:
                kwargs.update(num_cpus=workers, include_dashboard=False)
            kwargs["runtime_env"] = ray_runtime_env(local=address is None)
            try:
                ray.init(address=address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                hint = ("; is the cluster up ('ray status' on the head)? With token "
                        "authentication (the default for clusters started by recent Ray), "
                        "set RAY_AUTH_MODE=token here and give this machine the cluster's "
                        "token (~/.ray/auth_token or RAY_AUTH_TOKEN); see docs/sweeps.md"
                        if address else "")
                raise InputError(f"--executor ray: cannot reach Ray at "
                                 f"{address or 'a new local instance'}: {exc}{hint}") from exc
            self._owns_ray = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.slots = max(1, min(workers or cpus, cpus))
        # two threads: one runs, the other can still kill the codec workers on interrupt
        self._actor_cls = ray.remote(num_cpus=1, max_concurrency=2)(_SweepActor)
        self._runner = runner
        self._actors = [self._actor_cls.remote(runner) for _ in range(self.slots)]
        ray.get([a.__ray_ready__.remote() for a in self._actors])
        self.startup_s = time.perf_counter() - t0
        self._free = list(self._actors)
        self._refs: dict[Any, tuple[RunSpec, Any, float]] = {}
        self._trace_refs: dict[str, Any] = {}

    def _trace_ref(self, spec: RunSpec) -> Any:
        if not spec.trace_sha256 or not spec.trace_file:
            return None
        ref = self._trace_refs.get(spec.trace_sha256)
        if ref is None:  # one upload per trace file; nodes cache objects they have pulled
            ref = self._ray.put(Path(spec.trace_file).read_bytes())
            self._trace_refs[spec.trace_sha256] = ref
        return ref

    def submit(self, spec: RunSpec) -> None:
        actor = self._free.pop()
        ref = actor.run.remote(spec, self._trace_ref(spec))
        self._refs[ref] = (spec, actor, time.perf_counter())

    def poll(self, timeout: float) -> list[Completion]:
        ray = self._ray
        if not self._refs:
            time.sleep(min(timeout, 0.05))
            return []
        ready, _ = ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        if ready:
            more, _ = ray.wait([r for r in self._refs if r not in ready],
                               num_returns=len(self._refs) - len(ready), timeout=0)
            ready += more
        out = []
        for ref in ready:
            spec, actor, t0 = self._refs.pop(ref)
            try:
                out.append(Completion(spec, ray.get(ref), time.perf_counter() - t0))
                self._free.append(actor)
            except ray.exceptions.RayActorError as exc:
                ray.kill(actor)
                self._actors.remove(actor)
                fresh = self._actor_cls.remote(self._runner)
                self._actors.append(fresh)
                self._free.append(fresh)
                out.append(Completion(spec, None, time.perf_counter() - t0,
                                      crash=f"the Ray actor running this run died: {exc}"))
            except ray.exceptions.RayError as exc:
                self._free.append(actor)
                out.append(Completion(spec, _failed(spec, exc), time.perf_counter() - t0))
        return out

    def close(self, *, interrupted: bool = False) -> None:
        ray = self._ray
        try:  # close the codec workers (interrupted: kill them, runs may still be going)
            if interrupted:
                ray.get([a.kill_workers.remote() for a in self._actors], timeout=10)
            else:
                ray.get([a.close.remote() for a in self._actors], timeout=60)
        except Exception:  # noqa: BLE001 - best effort; the actors go away below anyway
            pass
        for a in self._actors:
            ray.kill(a)
        if self._owns_ray:
            ray.shutdown()


def make_executor(kind: str, *, workers: int | None, address: str | None,
                  runner: Runner = execute) -> Executor:
    if kind == "local":
        if address:
            raise InputError("--address applies to --executor ray only")
        return LocalPoolExecutor(workers or os.cpu_count() or 1, runner)
    if kind == "ray":
        return RayExecutor(address, workers, runner)
    raise InputError(f"unknown executor {kind!r}; use local or ray")

