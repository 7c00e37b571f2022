"""One simulated run of a scenario: every arm, its logs, its report.

Outputs (in the scenario's output folder):
  scenario.resolved.yaml   the scenario with every default filled in
  frames.jsonl             one FrameRecord per frame per arm, appended as each arm finishes,
                           so a crash never loses an arm that completed
  summary.csv              one ArmSummary per arm
  timeline.png, quality.png, latency_cdf.png
  workers.log              the sender and receiver processes' logs
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from diffstream.errors import InputError, located
from diffstream.netsim.trace import Trace
from diffstream.output.dashboard.sim import Dashboard
from diffstream.output.folders import plan_output
from diffstream.output.report import append_frames_jsonl, write_report
from diffstream.pipeline.compute import ComputeModel
from diffstream.pipeline.costs import codec_charge
from diffstream.pipeline.records import ArmSummary, FrameRecord
from diffstream.scenario.build import build_trace
from diffstream.scenario.load import load_scenario, scenario_to_yaml
from diffstream.scenario.memory import memory_problem
from diffstream.scenario.precheck import line_in
from diffstream.scenario.schema import Scenario
from diffstream.sim.arm import summarise_result
from diffstream.sim.best_run import simulate_arm
from diffstream.sim.endpoints import Endpoints, NetworkOnlyEndpoints, WorkerEndpoints

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    out_dir: Path | None = None
    live_dashboard: bool = True
    transport: str = "ipc"
    network_only_bytes: int | None = None  # fixed-size payloads instead of the codecs
    reference_loop: bool = False  # network-only: the full SimPy loop, not sim.fastpath
    arms: list[str] | None = None  # run only these arm labels
    console: Console | None = None
    overwrite: bool = False  # replace an output folder that already holds results


@dataclass
class RunResult:
    out_dir: Path
    summaries: list[ArmSummary]
    records: dict[str, list[FrameRecord]]
    files: list[Path]
    wall_s: float


def output_dir(scenario: Scenario, override: Path | None) -> Path:
    if override is not None:
        return override
    return Path(scenario.output.dir.replace("{name}", scenario.name))


def run_scenario(path: str | Path, options: RunOptions | None = None) -> RunResult:
    scenario, spath = load_scenario(path)
    return run_loaded(scenario, spath, options or RunOptions())


def run_loaded(scenario: Scenario, spath: Path, opts: RunOptions) -> RunResult:
    t0 = time.perf_counter()
    console = opts.console or Console()
    # every input is checked before anything is written (issue 17: a typo in --arms used to
    # empty the previous run's frames.jsonl); an existing non-empty --out needs --overwrite
    arms = [a for a in scenario.arms if not opts.arms or a.label in opts.arms]
    if not arms:
        raise InputError(f"--arms {','.join(opts.arms or [])}: matched none of "
                         f"{[a.label for a in scenario.arms]}")
    problem = memory_problem(scenario.frames_per_arm, len(arms))
    if problem:
        raise InputError(located(spath, line_in(spath, ("duration_s",)),
                                 f"duration_s x frame.fps: {problem}"))
    trace = build_trace(scenario, spath)
    folder = plan_output(output_dir(scenario, opts.out_dir), overwrite=opts.overwrite)
    out = folder.open()
    (out / "scenario.resolved.yaml").write_text(scenario_to_yaml(scenario), encoding="utf-8")
    frames_path = out / "frames.jsonl"
    frames_path.write_text("", encoding="utf-8")
    try:
        result = _run_arms(scenario, spath, opts, console, arms, trace, out, frames_path)
    except BaseException:
        if folder.staged:
            console.print(f"run not finished: {folder.keep_note()}", highlight=False)
        raise
    folder.commit()
    files = [folder.out / p.name for p in result[1]]
    wall = time.perf_counter() - t0
    console.print(f"outputs in {folder.out}/ ({', '.join(p.name for p in files)}); "
                  f"wall {wall:.1f} s")
    return RunResult(folder.out, result[0], result[2], files, wall)


def _run_arms(scenario: Scenario, spath: Path, opts: RunOptions, console: Console,
              arms: list, trace: Trace, out: Path, frames_path: Path,
              ) -> tuple[list[ArmSummary], list[Path], dict[str, list[FrameRecord]]]:
    stream_trace = trace.scaled(scenario.link.share)
    compute = ComputeModel(scenario.compute)
    _describe(console, scenario, trace, compute, out, live=opts.live_dashboard,
              network_only=opts.network_only_bytes is not None)

    endpoints: Endpoints
    if opts.network_only_bytes is not None:
        endpoints = NetworkOnlyEndpoints(scenario, opts.network_only_bytes or None)
    else:
        endpoints = WorkerEndpoints(scenario, spath.parent.resolve(), transport=opts.transport,
                                    log_path=out / "workers.log")
    summaries: list[ArmSummary] = []
    records: dict[str, list[FrameRecord]] = {}
    try:
        with Dashboard(scenario.name, [a.label for a in arms], scenario.frames_per_arm,
                       live=opts.live_dashboard, console=console) as dash:
            for arm in arms:
                dash.start_arm(arm.label)
                result = simulate_arm(scenario, arm, stream_trace, endpoints,
                                      network_only_bytes=opts.network_only_bytes,
                                      reference_loop=opts.reference_loop,
                                      on_record=dash.on_frame)
                for note in result.notes:
                    log.info("%s", note)
                append_frames_jsonl(frames_path, result.records)
                summary = summarise_result(scenario, result)
                summaries.append(summary)
                records[arm.label] = result.records
                if result.malformed:
                    log.warning("arm %s: receiver dropped %d malformed frames", arm.label,
                                result.malformed)
                dash.finish_arm(summary)
            dash.show_final(summaries)
    finally:
        endpoints.close()

    capacity = stream_trace.rate_series(0.5, scenario.duration_s + 1.0)
    files = [frames_path]
    if scenario.output.plots:
        files = write_report(out, records, summaries, capacity)
    else:
        from diffstream.output.report import write_summary_csv

        write_summary_csv(out / "summary.csv", summaries)
        files.append(out / "summary.csv")
    return summaries, files, records


def _describe(console: Console, sc: Scenario, trace: Trace, compute: ComputeModel, out: Path,
              *, live: bool, network_only: bool) -> None:
    mode = sc.mode.kind
    if sc.mode.kind == "interactive":
        mode += f", target latency {sc.mode.target_latency_ms:g} ms"
    nondet = [a.codec for a in sc.arms
              if not codec_charge(compute, a.codec, a.codec_options).deterministic]
    lines = [
        f"scenario {sc.name}: {len(sc.arms)} arms x {sc.frames_per_arm} frames "
        f"({sc.frame.width}x{sc.frame.height} @ {sc.frame.fps:g} fps, {mode})",
        f"link: {trace.name or 'trace'} (mean {trace.mean_bps / 1e6:.2f} Mbit/s) x share "
        f"{sc.link.share:g} -> mean {trace.mean_bps * sc.link.share / 1e3:.0f} kbit/s "
        f"(1 bpp = {sc.frame.pixels * sc.frame.fps / 1e3:.0f} kbit/s), "
        f"delay {sc.link.delay_ms:g} ms; compute: {compute.description}",
    ]
    if network_only:
        lines.append("network-only run: fixed-size payloads, no codec, no quality scores")
    elif nondet:
        lines.append(
            f"note: {', '.join(sorted(set(nondet)))} charged measured time: network results "
            "vary run to run (use a compute profile for reproducible runs)"
        )
    for line in lines:
        console.print(line, highlight=False)
