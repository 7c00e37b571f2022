"""``python -m diffstream run SCENARIO [options]`` (same options as run_sim.py),
``examples`` (copy the shipped scenarios out), live mode: ``send``, ``recv`` and ``keys``
(see docs/live.md), ``codecs`` (docs/plugins.md) and ``evaluate`` (docs/evaluate.md)."""

from __future__ import annotations

import os
import sys

from diffstream import cli

USAGE = """usage: python -m diffstream COMMAND ...
  run SCENARIO [options]              simulate a scenario (see run --help)
  run --example NAME [options]        simulate a scenario shipped with diffstream
  examples [--out DIR] [--list]       copy the shipped scenarios and traces into DIR
  send --scenario S [--bind EP]       live: stream to a receiver (see send --help)
  recv --connect tcp://HOST:PORT      live: receive a stream (see recv --help)
  keys [--out keys]                   live: create CURVE certificates
  codecs [CODEC ...] [--size WxH]     list codecs: origin, capabilities, floor, weights
  evaluate --images DIR --out DIR     rate-distortion of codecs on your images
                                      (see evaluate --help)"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(USAGE)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "run":
        return cli.run(rest, prog="python -m diffstream run")
    if cmd == "examples":
        return cli.examples(rest)
    if cmd == "evaluate":
        from diffstream.evaluate import cli as evaluate_cli

        # the summary records the command as typed: the console script or python -m
        script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
        prog = "diffstream" if script == "diffstream" else "python -m diffstream"
        return evaluate_cli.main(rest, prog=f"{prog} evaluate")
    if cmd in {"send", "recv", "keys"}:
        from diffstream.live import cli as live_cli

        return getattr(live_cli, cmd)(rest)
    if cmd == "codecs":
        from diffstream.codecs.listing import main as list_codecs

        return list_codecs(rest)
    print(f"unknown command {cmd!r}; available: run, examples, evaluate, codecs, send, recv, "
          "keys", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
