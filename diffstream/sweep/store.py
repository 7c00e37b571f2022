"""The sweep's output folder: results stream in as runs finish; the folder alone rebuilds
the aggregate.

    sweep.resolved.yaml   the sweep with every default filled in
    plan.jsonl            one line per run of the current plan: id, grid coordinates, scenario
    results.jsonl         appended as runs finish, one line per attempt: status ok or failed
                          (with error and traceback), the run's ArmSummary, trace bandwidth,
                          wall time, worker; a crash or kill loses at most the line being
                          written, and a torn line is skipped on reading
    frames/<id>.jsonl     each finished run's frame log (FrameRecord per line), unless
                          output.frames is false
    aggregate.csv/.md, runs.csv, boxplots.png, qoe_vs_bandwidth.png   (aggregate.py, plots.py)

Only the driver writes here, so the folder works the same for pool and Ray runs.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from diffstream.errors import InputError
from diffstream.output.report import write_frames_jsonl
from diffstream.sweep.plan import Plan, RunSpec, canonical_json
from diffstream.sweep.schema import sweep_to_yaml

log = logging.getLogger(__name__)

RESULTS = "results.jsonl"
PLAN = "plan.jsonl"


def json_safe(value: Any) -> Any:
    """NaN/inf to None, recursively (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


class SweepStore:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.results_path = out / RESULTS

    # -- setup ----------------------------------------------------------------------
    def prepare(self, plan: Plan, *, resume: bool) -> None:
        """Create the folder and write the plan. Refuses to mix a new sweep into old results
        unless ``resume`` (the old attempts are what resume works from)."""
        if self.results_path.exists() and self.results_path.stat().st_size and not resume:
            raise InputError(f"{self.results_path}: results of an earlier sweep are here; pass "
                             "--resume to continue it, or --out another folder (or delete it)")
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "sweep.resolved.yaml").write_text(sweep_to_yaml(plan.sweep),
                                                      encoding="utf-8")
        with (self.out / PLAN).open("w", encoding="utf-8") as fh:
            for r in plan.runs:
                fh.write(canonical_json(json_safe({"id": r.id, "params": r.params,
                                                   "scenario": r.scenario})) + "\n")
        self._terminate_torn_line()

    def _terminate_torn_line(self) -> None:
        """A kill mid-write leaves a line without its newline: end it, so the next append
        starts a line of its own (the torn one is skipped on reading)."""
        if self.results_path.exists() and self.results_path.stat().st_size:
            with self.results_path.open("rb+") as fh:
                fh.seek(-1, 2)
                if fh.read(1) != b"\n":
                    fh.write(b"\n")

    # -- results --------------------------------------------------------------------
    def read_results(self) -> list[dict[str, Any]]:
        if not self.results_path.exists():
            return []
        out = []
        for i, line in enumerate(self.results_path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s:%d: torn or corrupt line skipped", self.results_path, i)
                continue
            if isinstance(entry, dict) and "id" in entry and "status" in entry:
                out.append(entry)
        return out

    def append(self, spec: RunSpec, outcome: dict[str, Any], *, attempt: int, executor: str,
               latency_s: float) -> dict[str, Any]:
        """Record one attempt (and its frame log); returns the line written."""
        entry = {
            "id": spec.id, "status": outcome.get("status", "failed"), "attempt": attempt,
            "params": spec.params, "summary": outcome.get("summary"),
            "trace_mean_mbps": outcome.get("trace_mean_mbps"),
            "stream_mean_kbps": outcome.get("stream_mean_kbps"),
            "malformed": outcome.get("malformed"),
            "wall_s": outcome.get("wall_s"), "cpu_s": outcome.get("cpu_s"),
            "latency_s": latency_s,
            "worker": outcome.get("worker"), "node": outcome.get("node"),
            "endpoint": outcome.get("endpoint"),
            "notes": outcome.get("notes", []),  # e.g. which plan an offline bound kept
            "executor": executor, "error": outcome.get("error", ""),
            "traceback": outcome.get("traceback", ""),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        frames = outcome.get("frames")
        if entry["status"] == "ok" and frames is not None:
            write_frames_jsonl(self.out / "frames" / f"{spec.id}.jsonl", frames)
        line = json.dumps(json_safe(entry), allow_nan=False, separators=(",", ":")) + "\n"
        with self.results_path.open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
        return entry


def finished(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """id -> its last successful attempt."""
    return {e["id"]: e for e in entries if e["status"] == "ok"}


def attempts(entries: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in entries:
        out[e["id"]] = out.get(e["id"], 0) + 1
    return out
