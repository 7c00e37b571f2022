"""Command line: ``python run_sim.py SCENARIO`` and ``python -m diffstream run SCENARIO``.

Bad input (scenario, trace, images) exits with code 2 and a message naming the file, line
and field; a worker crash exits with code 1; the outputs written so far are kept.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from rich.console import Console

from diffstream.errors import DiffstreamError, InputError
from diffstream.sim.signals import EXIT_TERMINATED, Terminated, sigterm_as_interrupt, terminated


def build_parser(prog: str = "run_sim.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="Simulate streaming a frame sequence over a trace-driven link.")
    p.add_argument("scenario", nargs="?",
                   help="scenario YAML, e.g. scenarios/lte_trace.yaml, or a sweep YAML, e.g. "
                        "scenarios/sweep_lte.yaml")
    p.add_argument("--example", metavar="NAME",
                   help="run a scenario shipped with diffstream instead of a file, e.g. "
                        "lte_trace (`diffstream examples --list` lists them)")
    p.add_argument("--out", type=Path, help="output folder (default: the scenario's output.dir)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results already in the output folder (once this run "
                        "has finished; without it such a folder is refused)")
    p.add_argument("--no-dashboard", action="store_true",
                   help="plain progress lines instead of the live dashboard "
                        "(automatic when stdout is not a terminal)")
    p.add_argument("--arms", help="comma-separated arm names to run (default: all)")
    p.add_argument("--seed", type=int, help="override the scenario's seed")
    p.add_argument("--transport", choices=("ipc", "tcp"), default="ipc",
                   help="how the coordinator reaches the worker processes (default ipc)")
    p.add_argument("--network-only", type=int, metavar="BYTES", default=None,
                   help="replace codecs by fixed-size payloads of BYTES (0: exactly the "
                        "budget); network results only")
    p.add_argument("--reference-loop", action="store_true",
                   help="with --network-only: run the full SimPy loop instead of the fast "
                        "network-only path (same results, slower; for debugging it)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    from diffstream.sweep.cli import add_sweep_arguments

    add_sweep_arguments(p)
    return p


def run(argv: list[str] | None = None, prog: str = "run_sim.py") -> int:
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    console = Console()
    if not console.is_terminal:  # pipes/CI: wide enough for the comparison table
        console = Console(width=int(os.environ.get("COLUMNS", "160")))
    err = Console(stderr=True)
    with sigterm_as_interrupt():
        rc = _run(args, console, err)
    return EXIT_TERMINATED if terminated() else rc


def _scenario_arg(args: argparse.Namespace) -> str | Path:
    """The scenario file: the positional path, or the shipped example ``--example`` names."""
    from diffstream.errors import InputError
    from diffstream.scenario.examples import example_path

    if args.example is not None:
        if args.scenario is not None:
            raise InputError(f"give a scenario file or --example, not both (got "
                             f"{args.scenario!r} and --example {args.example!r})")
        return example_path(args.example)
    if args.scenario is None:
        raise InputError("no scenario: give a scenario YAML (e.g. scenarios/lte_trace.yaml) "
                         "or --example NAME (e.g. --example lte_trace)")
    return args.scenario


def _run(args: argparse.Namespace, console: Console, err: Console) -> int:
    try:
        args.scenario = _scenario_arg(args)
        from diffstream.sweep.cli import reject_sweep_options, run_sweep_command
        from diffstream.sweep.schema import is_sweep_file

        if is_sweep_file(args.scenario):  # a top-level 'sweep:' key: many runs
            return run_sweep_command(args, console, err)
        from diffstream.scenario.load import load_scenario
        from diffstream.sim.session import RunOptions, run_loaded

        # loaded first: a file that is not valid YAML is neither a sweep nor a scenario, and
        # its parse error (with the line) says more than "sweep options on a scenario"
        scenario, spath = load_scenario(args.scenario)
        reject_sweep_options(args)
        if args.reference_loop and args.network_only is None:
            raise InputError("--reference-loop applies to --network-only runs (codec runs "
                             "always use the full loop); add --network-only BYTES or drop it")
        if args.seed is not None:
            scenario = scenario.model_copy(update={"seed": args.seed})
        opts = RunOptions(
            out_dir=args.out,
            live_dashboard=not args.no_dashboard and console.is_terminal,
            transport=args.transport,
            network_only_bytes=args.network_only,
            reference_loop=args.reference_loop,
            arms=args.arms.split(",") if args.arms else None,
            console=console,
            overwrite=args.overwrite,
        )
        run_loaded(scenario, spath, opts)
    except DiffstreamError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        err.print(f"{what}: arms already finished are in frames.jsonl")
        return EXIT_TERMINATED if isinstance(exc, Terminated) else 130
    return 0


def examples(argv: list[str] | None = None, prog: str = "diffstream examples") -> int:
    """``diffstream examples [--out DIR] [--overwrite] [--list]``: copy the shipped example
    scenarios and traces into DIR (to edit and run), or list them."""
    from diffstream.scenario.examples import copy_examples
    from diffstream.scenario.examples import examples as shipped

    p = argparse.ArgumentParser(
        prog=prog, description="Copy the example scenarios and traces shipped with diffstream "
                               "into a folder, or list them.")
    p.add_argument("--out", type=Path, default=Path("diffstream-examples"),
                   help="folder to copy them into (default: diffstream-examples)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace example files already in the folder (without it they are "
                        "refused and nothing is copied)")
    p.add_argument("--list", action="store_true", help="list the examples; copy nothing")
    args = p.parse_args(argv)
    err = Console(stderr=True)
    try:
        if args.list:
            for ex in shipped():
                print(f"{ex.name:18s} {ex.description}")
            return 0
        written = copy_examples(args.out, overwrite=args.overwrite)
    except DiffstreamError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return exc.exit_code
    print(f"copied {len(written)} files into {args.out}/ "
          f"(scenarios, and the traces they use in {args.out}/traces/)")
    print(f"run one: diffstream run {args.out / 'lte_trace.yaml'}")
    return 0


def main() -> None:
    sys.exit(run())
