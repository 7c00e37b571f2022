"""The scheduler: keeps the executor's slots busy, records every attempt as it finishes,
retries failures a bounded number of times, resumes from the output folder.

**Resume.** Runs with a successful attempt in ``results.jsonl`` are skipped; every other
run of the plan (never started, killed mid-run, or failed) is run again.

**Retries.** In one invocation a run is attempted at most ``1 + max_retries`` times; a run
that still fails is reported (with its traceback in ``results.jsonl``) and the sweep goes
on. A later ``--resume`` tries it again with a fresh budget, so a fixed bug needs no flag.

**Crashed workers.** When a pool process dies, every run in flight fails with the pool and
the culprit is unknown. Those runs are not charged an attempt: they are re-run one at a
time (nothing else in flight), so a run that kills its worker again is caught alone and
charged; innocent bystanders are never charged for it.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from diffstream.sweep.executors import Executor
from diffstream.sweep.plan import Plan, RunSpec
from diffstream.sweep.progress import SweepProgress
from diffstream.sweep.store import SweepStore, attempts, finished


@dataclass
class SweepRun:
    """What one invocation did."""

    total: int
    skipped: int  # finished before this invocation (resume)
    ok: int = 0  # finished in this invocation
    failed: list[str] = field(default_factory=list)  # ids given up on in this invocation
    attempts: int = 0
    wall_s: float = 0.0
    run_wall_s: list[float] = field(default_factory=list)  # in-worker time of each ok run
    run_cpu_s: list[float] = field(default_factory=list)  # its CPU time in the worker
    overhead_s: list[float] = field(default_factory=list)  # driver latency - in-worker time


def run_plan(plan: Plan, executor: Executor, store: SweepStore, progress: SweepProgress,
             *, max_retries: int = 1, poll_s: float = 0.25) -> SweepRun:
    t0 = time.perf_counter()
    history = store.read_results()
    done = finished(history)
    tried = attempts(history)  # attempts before this invocation, numbered on from there
    todo = deque(r for r in plan.runs if r.id not in done)
    stats = SweepRun(total=len(plan.runs), skipped=len(plan.runs) - len(todo))
    suspects: deque[RunSpec] = deque()
    charged: dict[str, int] = {}
    inflight: dict[str, RunSpec] = {}

    def submit(spec: RunSpec) -> None:
        executor.submit(spec)
        inflight[spec.id] = spec
        progress.started()

    while todo or suspects or inflight:
        if suspects:
            if not inflight:  # suspects of a crash run alone, to find the culprit
                submit(suspects.popleft())
        else:
            while todo and len(inflight) < executor.slots:
                submit(todo.popleft())
        for c in executor.poll(poll_s):
            spec = inflight.pop(c.spec.id)
            if c.outcome is None and not c.culprit_known:
                suspects.append(spec)
                progress.requeued()
                progress.print(f"[{plan.sweep.name}] a worker process died with several runs "
                               f"in flight; re-running run {spec.id} on its own")
                continue
            outcome = c.outcome or {"status": "failed", "error": c.crash, "traceback": c.crash,
                                    "id": spec.id}
            charged[spec.id] = charged.get(spec.id, 0) + 1
            tried[spec.id] = tried.get(spec.id, 0) + 1
            stats.attempts += 1
            entry = store.append(spec, outcome, attempt=tried[spec.id], executor=executor.name,
                                 latency_s=c.latency_s)
            ok = entry["status"] == "ok"
            retry = not ok and charged[spec.id] <= max_retries
            if ok:
                stats.ok += 1
                wall = float(outcome.get("wall_s") or 0.0)
                stats.run_wall_s.append(wall)
                stats.run_cpu_s.append(float(outcome.get("cpu_s") or 0.0))
                stats.overhead_s.append(c.latency_s - wall)
            elif retry:
                todo.append(spec)
            else:
                stats.failed.append(spec.id)
            progress.finished(spec.params, entry, final=not retry, retry=retry)
    stats.wall_s = time.perf_counter() - t0
    return stats


def outcome_summary(stats: SweepRun) -> dict[str, Any]:
    return {"total": stats.total, "skipped": stats.skipped, "ok": stats.ok,
            "failed": len(stats.failed), "attempts": stats.attempts, "wall_s": stats.wall_s}
