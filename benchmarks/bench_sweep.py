#!/usr/bin/env python3
"""Sweep throughput: 48 network-only runs on a local pool of 1 and 2 workers and on Ray
with 2 CPUs, measured in one invocation, plus the per-run overhead of each executor.

    python benchmarks/bench_sweep.py [--duration 60] [--payload 1000]

The sweep: the project's 4 LTE-like traces x 4 policies (fixed, rate, deadline, MPC) x 3
seeds on the default scenario (128x128 at 10 fps, 3 % of the link), each run 60 s of
simulated time with fixed-size payloads (no codec). Wall times are the whole invocation,
including starting the executor's processes, which is also shown on its own (the pool's
processes; ray.init plus the actors). Run wall / CPU: the mean time one run spent in its
worker, and the CPU time it used there; on a busy machine the first exceeds the second.
Per-run overhead = the time the driver waited for a
run minus the time the run spent inside its worker (dispatch, pickling, result transfer,
the driver's bookkeeping), median over the runs. The three aggregates must be identical.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diffstream.sweep.driver import SweepOptions, SweepResult, run_sweep_file  # noqa: E402
from diffstream.sweep.executors import ray_available  # noqa: E402


def write_sweep(folder: Path, duration_s: float, payload: int) -> Path:
    data = {
        "name": "bench_sweep",
        "base": str(ROOT / "scenarios" / "lte_trace.yaml"),
        "overrides": {"duration_s": duration_s},
        "sweep": {
            "traces": [{"kind": "mahimahi",
                        "path": str(ROOT / "scenarios" / "traces" / "lte_like*.down")}],
            "codecs": ["jpeg"],
            "policies": [{"kind": "fixed", "bpp": 1.0}, {"kind": "rate"},
                         {"kind": "deadline"}, {"kind": "mpc"}],
            "seeds": [1, 2, 3],
        },
        "network_only_bytes": payload,
        "output": {"dir": str(folder / "out"), "frames": False, "plots": False},
    }
    path = folder / "bench_sweep.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def measure(path: Path, out: Path, **kw: object) -> tuple[SweepResult, float]:
    quiet = Console(file=open(os.devnull, "w"))  # noqa: SIM115
    t0 = time.perf_counter()
    res = run_sweep_file(path, SweepOptions(out_dir=out, live=False, console=quiet, **kw))
    return res, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=60.0, help="simulated seconds per run")
    ap.add_argument("--payload", type=int, default=1000, help="bytes per frame")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        folder = Path(tmp)
        path = write_sweep(folder, args.duration, args.payload)
        configs = [("local pool, 1 worker", {"workers": 1}),
                   ("local pool, 2 workers", {"workers": 2})]
        why_not = ray_available()
        if why_not is None:
            configs.append(("Ray, 2 CPUs", {"executor": "ray", "workers": 2}))
        rows = []
        load0 = os.getloadavg()[0]  # other work on the machine skews every number below
        for i, (label, kw) in enumerate(configs):
            res, wall = measure(path, folder / f"out{i}", **kw)
            if res.failed or res.run.ok != 48:
                print(f"{label}: {res.failed} runs failed; see {res.out_dir}/results.jsonl")
                return 1
            rows.append((label, res, wall))
        n = rows[0][1].run.ok
        print(f"{n} network-only runs (4 traces x 4 policies x 3 seeds), {args.duration:g} s "
              f"simulated each at 10 fps, {args.payload}-byte payloads; machine: "
              f"{os.cpu_count()} CPUs, load average before/after "
              f"{load0:.2f}/{os.getloadavg()[0]:.2f}")
        print(f"{'executor':<24}{'wall s':>8}{'start-up s':>12}{'runs/s':>8}{'speed-up':>10}"
              f"{'run wall s':>12}{'run CPU s':>11}{'overhead/run ms':>17}")
        base = rows[0][2]
        for label, res, wall in rows:
            inrun = statistics.mean(res.run.run_wall_s)
            cpu = statistics.mean(res.run.run_cpu_s)
            over = statistics.median(res.run.overhead_s) * 1000
            print(f"{label:<24}{wall:>8.2f}{res.executor_startup_s:>12.2f}{n / wall:>8.2f}"
                  f"{base / wall:>9.2f}x{inrun:>12.3f}{cpu:>11.3f}{over:>17.1f}")
        print("(run wall > run CPU: the runs waited for a CPU; compare with the load average)")
        texts = {(r.out_dir / "aggregate.csv").read_text() for _, r, _ in rows}
        print(f"aggregates identical across executors: {'yes' if len(texts) == 1 else 'NO'}")
        if len(rows) == 3:
            _, pool2, wall2 = rows[1]
            _, ray, wall_ray = rows[2]
            sweep_only = wall_ray - ray.executor_startup_s
            pool_only = wall2 - pool2.executor_startup_s
            ray_over = statistics.median(ray.run.overhead_s) * 1000
            pool_over = statistics.median(pool2.run.overhead_s) * 1000
            print(f"Ray vs the 2-worker pool: {wall_ray / wall2:.2f}x the wall time, "
                  f"start-up {ray.executor_startup_s:.2f} s vs {pool2.executor_startup_s:.2f} s;"
                  f" after start-up {(sweep_only - pool_only) / n * 1000:+.1f} ms per run; "
                  f"median dispatch overhead per run {ray_over:.1f} ms vs {pool_over:.1f} ms")
        else:
            print(f"Ray not measured: {why_not}")
        return 0 if len(texts) == 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
