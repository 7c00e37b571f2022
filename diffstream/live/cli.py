"""``python -m diffstream send | recv | keys``: argument parsing and exit codes.

Exit codes: 0 done; 1 runtime failure (no peer within ``--wait``); 2 bad input (scenario,
keys, endpoint), with a message naming the file, line or option; 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from rich.console import Console

from diffstream.errors import DiffstreamError, InputError, located
from diffstream.output.folders import check_writable_dir

DEFAULT_BIND = "tcp://0.0.0.0:5555"


def _security(p: argparse.ArgumentParser, default_keys: str) -> None:
    p.add_argument("--keys", type=Path, default=None,
                   help=f"certificate folder made by `python -m diffstream keys` "
                        f"(default {default_keys}); giving it turns CURVE on, also on loopback")
    p.set_defaults(default_keys=Path(default_keys))
    g = p.add_mutually_exclusive_group()
    g.add_argument("--curve", dest="curve", action="store_const", const=True, default=None,
                   help="require CURVE even on loopback")
    g.add_argument("--insecure", dest="curve", action="store_const", const=False,
                   help="no CURVE even off loopback: unencrypted, anyone may connect")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, help="base folder; each stream writes OUT/<stream id>/")
    p.add_argument("--wait", type=float, default=None, metavar="S",
                   help="give up when no peer answers within S seconds (default: wait)")
    p.add_argument("--no-dashboard", action="store_true",
                   help="plain status lines (automatic when stdout is not a terminal)")
    p.add_argument("--log", type=Path, help="log file (default runs/diffstream-<side>.log)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def send_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m diffstream send",
                                description="Stream a live scenario to a receiver.")
    p.add_argument("--scenario", required=True, type=Path, help="e.g. scenarios/live.yaml")
    p.add_argument("--bind", default=DEFAULT_BIND, help=f"endpoint (default {DEFAULT_BIND})")
    _security(p, "keys/sender")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--shape", dest="shape", action="store_const", const=True, default=None,
                   help="pace frames to the scenario's trace (overrides live.shaping)")
    g.add_argument("--no-shape", dest="shape", action="store_const", const=False)
    p.add_argument("--duration", type=float, metavar="S", help="override duration_s")
    p.add_argument("--arm", help="arm (label) to stream; default live.arm or the first")
    p.add_argument("--resume", action="store_true",
                   help="continue the last unfinished stream in --out (after a crash)")
    p.add_argument("--takeover", action="store_true",
                   help="let another receiver's hello take the stream over (the old one is "
                        "told and exits 1); default: the first receiver keeps the stream")
    _common(p)
    return p


def recv_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m diffstream recv",
                                description="Receive, decode and score a live stream.")
    p.add_argument("--connect", required=True, help="the sender, e.g. tcp://192.168.1.20:5555")
    _security(p, "keys/receiver")
    p.add_argument("--content-root", type=Path,
                   help="where the scenario's content folder is found (default: cwd)")
    p.add_argument("--name", default="", help="how the sender shows this receiver")
    p.add_argument("--allow-plugin", action="append", default=[], metavar="REF",
                   help="a plugin import path (module:Class) the sender's scenario may name; "
                        "repeat for each (default: none, such scenarios are refused)")
    _common(p)
    return p


def keys_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m diffstream keys",
                                description="Create CURVE certificates for send/recv.")
    p.add_argument("--out", type=Path, default=Path("keys"), help="folder (default keys/)")
    p.add_argument("--receiver", default="receiver",
                   help="name of the receiver's keypair (run again with another name to "
                        "allow more receivers)")
    p.add_argument("--force", action="store_true", help="replace existing keys")
    return p


def _console() -> Console:
    console = Console()
    if not console.is_terminal:
        console = Console(width=int(os.environ.get("COLUMNS", "160")))
    return console


def _logging(args: argparse.Namespace, side: str, live: bool) -> None:
    path = args.log or Path("runs") / f"diffstream-{side}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    level = logging.DEBUG if args.verbose else logging.INFO
    handlers: list[logging.Handler] = [logging.FileHandler(path)]
    if not live:
        err = logging.StreamHandler(sys.stderr)
        err.setLevel(logging.WARNING)
        handlers.append(err)
    logging.basicConfig(level=level, handlers=handlers, force=True,
                        format=f"%(asctime)s {side}[%(process)d] %(levelname)s %(message)s")


def _run(fn, *, side: str) -> int:  # type: ignore[no-untyped-def]
    err = Console(stderr=True)
    try:
        return int(fn())
    except DiffstreamError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print(f"{side}: interrupted")
        return 130


def send(argv: list[str]) -> int:
    args = send_parser().parse_args(argv)
    console = _console()
    live = not args.no_dashboard and console.is_terminal
    _logging(args, "send", live)

    def go() -> int:
        from diffstream.live.schema import LiveSpec, load_live_scenario
        from diffstream.live.security import check_endpoint
        from diffstream.live.sender import LiveSender, SendOptions

        check_endpoint(args.bind, "--bind")
        scenario, spath = load_live_scenario(args.scenario)
        if args.arm is not None:
            labels = [a.label for a in scenario.arms]
            if args.arm not in labels:
                raise InputError(f"--arm {args.arm!r}: {spath} has arms {labels}")
            live_spec = LiveSpec(**{**scenario.live.model_dump(), "arm": args.arm})
            scenario = scenario.model_copy(update={"live": live_spec})
        if args.duration is not None and args.duration <= 0:
            raise InputError(f"--duration {args.duration}: must be > 0")
        _check_frames(scenario, args.duration, spath)
        if args.out is not None:
            check_writable_dir(args.out, "--out")
        opts = SendOptions(bind=args.bind, keys_dir=_keys(args), curve=_curve(args),
                           shaping=args.shape, out_base=args.out, duration_s=args.duration,
                           resume=args.resume, wait_s=args.wait, live_dashboard=live,
                           console=console, takeover=args.takeover)
        return LiveSender(scenario, spath, opts).run()

    return _run(go, side="send")


def _check_frames(scenario: object, duration: float | None, spath: Path) -> None:
    """The end-of-stream report holds every record: refuse a stream that cannot fit."""
    import math

    from diffstream.scenario.memory import memory_problem

    fps = scenario.frame.fps  # type: ignore[attr-defined]
    frames = math.floor((duration or scenario.duration_s) * fps + 1e-9)  # type: ignore[attr-defined]
    problem = memory_problem(frames, 1)
    if problem:
        from diffstream.scenario.precheck import line_in

        raise InputError(located(spath, line_in(spath, ("duration_s",)),
                                 f"duration_s x frame.fps (or --duration): {problem}"))


def _keys(args: argparse.Namespace) -> Path:
    return args.keys if args.keys is not None else args.default_keys


def _curve(args: argparse.Namespace) -> bool | None:
    """--curve/--insecure win; an explicit --keys means the user wants CURVE; else None
    (on for any non-loopback address)."""
    if args.curve is not None:
        return bool(args.curve)
    return True if args.keys is not None else None


def recv(argv: list[str]) -> int:
    args = recv_parser().parse_args(argv)
    console = _console()
    live = not args.no_dashboard and console.is_terminal
    _logging(args, "recv", live)

    def go() -> int:
        from diffstream.live.receiver import LiveReceiver, RecvOptions
        from diffstream.live.security import check_endpoint

        check_endpoint(args.connect, "--connect")
        if args.content_root is not None and not args.content_root.is_dir():
            raise InputError(f"--content-root {args.content_root}: not a folder")
        if args.out is not None:
            check_writable_dir(args.out, "--out")
        opts = RecvOptions(connect=args.connect, keys_dir=_keys(args), curve=_curve(args),
                           out_base=args.out, content_root=args.content_root,
                           wait_s=args.wait, live_dashboard=live, console=console,
                           name=args.name, allow_plugins=tuple(args.allow_plugin))
        return LiveReceiver(opts).run()

    return _run(go, side="recv")


def keys(argv: list[str]) -> int:
    args = keys_parser().parse_args(argv)
    console = _console()

    def go() -> int:
        from diffstream.live.security import create_keys

        created = create_keys(args.out, args.receiver, force=args.force)
        for path in created:
            console.print(f"wrote {path}", highlight=False)
        console.print(
            f"machine A (sender) keeps {args.out}/sender/; copy {args.out}/{args.receiver}/ "
            f"to machine B (receiver) and pass it there with --keys. Secret files "
            f"(*.key_secret) never leave their machine.", highlight=False)
        return 0

    return _run(go, side="keys")
