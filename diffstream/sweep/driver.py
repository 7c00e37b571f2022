"""One sweep invocation: expand, run (pool or Ray), write the aggregate. The library entry
point behind ``python run_sim.py SWEEP.yaml``; tests and the benchmark call it directly."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.console import Console

from diffstream.sweep.aggregate import (
    Aggregate,
    aggregate,
    markdown_table,
    write_aggregate_csv,
    write_markdown,
    write_runs_csv,
)
from diffstream.sweep.execute import execute
from diffstream.sweep.executors import Runner, make_executor
from diffstream.sweep.plan import Plan, grid_text, load_plan
from diffstream.sweep.progress import SweepProgress
from diffstream.sweep.runner import SweepRun, run_plan
from diffstream.sweep.store import SweepStore, finished


@dataclass
class SweepOptions:
    out_dir: Path | None = None
    executor: str = "local"  # local | ray
    workers: int | None = None  # pool size / Ray actors (default: all CPUs)
    address: str | None = None  # Ray: None (new local instance), auto, ray://host:10001
    resume: bool = False
    max_retries: int = 1
    arms: list[str] | None = None
    network_only_bytes: int | None = None  # overrides the sweep's value when given
    transport: str = "ipc"
    reference_loop: bool = False  # network-only cells through the full loop (debugging)
    live: bool = True
    console: Console | None = None
    runner: Runner = execute  # what runs one cell (tests inject failures here)


@dataclass
class SweepResult:
    plan: Plan
    out_dir: Path
    run: SweepRun
    aggregate: Aggregate
    files: list[Path] = field(default_factory=list)
    executor_startup_s: float = 0.0

    @property
    def failed(self) -> int:
        return len(self.run.failed)


def output_dir(plan: Plan, override: Path | None) -> Path:
    return override or Path(plan.sweep.output.dir.replace("{name}", plan.sweep.name))


def run_sweep_file(path: str | Path, opts: SweepOptions | None = None) -> SweepResult:
    opts = opts or SweepOptions()
    plan = load_plan(path, arms_filter=opts.arms, network_only_bytes=opts.network_only_bytes,
                     transport=opts.transport)
    return run_sweep(plan, opts)


def run_sweep(plan: Plan, opts: SweepOptions) -> SweepResult:
    console = opts.console or Console()
    if opts.reference_loop:
        plan.runs = [replace(r, reference_loop=True) for r in plan.runs]
    out = output_dir(plan, opts.out_dir)
    store = SweepStore(out)
    store.prepare(plan, resume=opts.resume)
    history = store.read_results()
    skipped = sum(1 for r in plan.runs if r.id in finished(history))
    _describe(console, plan, out, skipped, opts)

    executor = make_executor(opts.executor, workers=opts.workers, address=opts.address,
                             runner=opts.runner)
    startup = float(getattr(executor, "startup_s", 0.0))
    interrupted = False
    try:
        with SweepProgress(plan.sweep.name, len(plan.runs), skipped=skipped, live=opts.live,
                           console=console) as progress:
            stats = run_plan(plan, executor, store, progress, max_retries=opts.max_retries)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        executor.close(interrupted=interrupted)

    entries = store.read_results()
    done = finished(entries)
    failed_ids = {e["id"] for e in entries if e["status"] == "failed"} - set(done)
    agg = aggregate(plan, done, failed_ids)
    files = write_outputs(out, plan, agg)
    res = SweepResult(plan, out, stats, agg, files, startup)
    _report(console, res, opts)
    return res


def write_outputs(out: Path, plan: Plan, agg: Aggregate) -> list[Path]:
    files = [out / "aggregate.csv", out / "aggregate.md", out / "runs.csv"]
    write_aggregate_csv(files[0], agg)
    note = ("Network-only runs: fixed-size payloads, no codec, so no quality scores; QoE is "
            "then the stall term alone.") if plan.runs and plan.runs[0].network_only_bytes \
        is not None else ""
    write_markdown(files[1], agg, plan, note=note)
    write_runs_csv(files[2], agg)
    if plan.sweep.output.plots and agg.runs:
        from diffstream.sweep.plots import (
            BANDWIDTH_NAME,
            BOX_NAME,
            plot_boxes,
            plot_qoe_vs_bandwidth,
        )

        files.append(plot_boxes(agg, out / BOX_NAME))
        files.append(plot_qoe_vs_bandwidth(agg, out / BANDWIDTH_NAME))
    return files


def _describe(console: Console, plan: Plan, out: Path, skipped: int, opts: SweepOptions) -> None:
    sw = plan.sweep
    where = (f"Ray ({opts.address or 'new local instance'})" if opts.executor == "ray"
             else f"local pool of {opts.workers or os.cpu_count() or 1}")
    mode = ("network-only, " + (f"{plan.runs[0].network_only_bytes} B payloads"
                                if plan.runs and plan.runs[0].network_only_bytes
                                else "budget-sized payloads")
            if plan.runs and plan.runs[0].network_only_bytes is not None else "codec runs")
    console.print(f"sweep {sw.name}: {grid_text(plan)} ({mode}) on {where}; results in {out}/",
                  highlight=False)
    for note in plan.notes:
        console.print(f"note: {note}", highlight=False)
    if skipped:
        console.print(f"resume: {skipped} runs already finished, {len(plan.runs) - skipped} to "
                      "run", highlight=False)


def _report(console: Console, res: SweepResult, opts: SweepOptions) -> None:
    console.print(markdown_table(res.aggregate), highlight=False, soft_wrap=True)
    r = res.run
    msg = (f"{r.ok} runs finished in {r.wall_s:.1f} s ({r.skipped} skipped as already done, "
           f"{len(r.failed)} failed); outputs in {res.out_dir}/ "
           f"({', '.join(p.name for p in res.files)})")
    console.print(msg, highlight=False)
    if r.failed:
        console.print(f"failed runs (traceback in {res.out_dir / 'results.jsonl'}): "
                      f"{', '.join(r.failed)}; rerun with --resume to retry them",
                      highlight=False)

