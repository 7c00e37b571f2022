"""``python run_sim.py SWEEP.yaml [options]``: the sweep half of the command line.

``diffstream/cli.py`` parses the arguments and hands a sweep file over here. Exit codes:
0 every run finished; 1 some runs failed (after their retries; the sweep still finished
the others and wrote the aggregate); 2 bad input; 130 interrupted (``--resume`` goes on).
"""

from __future__ import annotations

import argparse

from rich.console import Console

from diffstream.errors import InputError

#: (option, dest): options that only make sense for sweep files.
SWEEP_ONLY = (("--workers", "workers"), ("--executor", "executor"), ("--address", "address"),
              ("--resume", "resume"), ("--max-retries", "max_retries"))


def add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "sweeps", "when SCENARIO is a sweep file (it has a top-level 'sweep:' key; see "
                  "docs/sweeps.md). --out, --arms, --network-only, --transport and "
                  "--no-dashboard apply to sweeps too.")
    g.add_argument("--workers", type=int, metavar="N",
                   help="runs in parallel: pool processes or Ray actors (default: all CPUs)")
    g.add_argument("--executor", choices=("local", "ray"),
                   help="local process pool (default) or Ray (needs the [ray] extra)")
    g.add_argument("--address", metavar="ADDR",
                   help="Ray cluster to join: 'auto' (started with 'ray start' on this "
                        "machine) or ray://HOST:10001 (default: a new local Ray instance)")
    g.add_argument("--resume", action="store_true",
                   help="continue the sweep in the output folder: skip finished runs, run "
                        "the rest (failed ones included)")
    g.add_argument("--max-retries", type=int, metavar="N",
                   help="extra attempts for a failing run in this invocation (default 1)")


def reject_sweep_options(args: argparse.Namespace) -> None:
    """A plain scenario given sweep options: say so instead of ignoring them."""
    given = [opt for opt, dest in SWEEP_ONLY if getattr(args, dest) not in (None, False)]
    if given:
        raise InputError(f"{args.scenario}: {', '.join(given)} apply to sweep files only (a "
                         "YAML file with a top-level 'sweep:' key); this is a scenario")


def run_sweep_command(args: argparse.Namespace, console: Console, err: Console) -> int:
    from diffstream.sweep.driver import SweepOptions, run_sweep_file

    if args.seed is not None:
        raise InputError(f"{args.scenario}: --seed does not apply to a sweep; list the seeds "
                         "under sweep.seeds")
    if args.executor != "ray" and args.address:
        raise InputError("--address applies to --executor ray only")
    if args.max_retries is not None and args.max_retries < 0:
        raise InputError(f"--max-retries must be >= 0, not {args.max_retries}")
    opts = SweepOptions(
        out_dir=args.out, executor=args.executor or "local", workers=args.workers,
        address=args.address, resume=args.resume,
        max_retries=1 if args.max_retries is None else args.max_retries,
        arms=args.arms.split(",") if args.arms else None,
        network_only_bytes=args.network_only, transport=args.transport,
        reference_loop=bool(getattr(args, "reference_loop", False)),
        live=not args.no_dashboard and console.is_terminal, console=console)
    try:
        res = run_sweep_file(args.scenario, opts)
    except KeyboardInterrupt:
        err.print("interrupted: finished runs are in results.jsonl; rerun the same command "
                  "with --resume to run the rest")
        return 130
    return 1 if res.failed else 0
