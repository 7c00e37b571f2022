"""``python -m diffstream run SCENARIO [options]`` (same options as run_sim.py)."""

from __future__ import annotations

import sys

from diffstream import cli


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print("usage: python -m diffstream run SCENARIO [options]   (see run --help)")
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "run":
        return cli.run(rest, prog="python -m diffstream run")
    print(f"unknown command {cmd!r}; available: run", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
