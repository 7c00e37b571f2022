"""Table 3 of paper 000 (ablations) from ``bench_badiff.py`` JSONs (issue 16 item 4).

    python benchmarks/badiff_ablations.py [--full docs/badiff_bench_n256.json]
        --ablation nocond=runs/bench_badiff_nocond.json [--ablation nohinge=...] ...
        [--json docs/badiff_ablations_n256.json]

Each JSON is one ``bench_badiff.py`` run at the same ``--samples``, seeds and targets
(checked: a comparison across different requests would not be paired by budget). The full
model's figures are its ``badiff`` method; each ablation's run benchmarks its own weights
as ``badiff`` (``--weights DIR --model badiff_<variant> --methods badiff``).

Per budget regime and measure (``swd``, ``msssim``, ``bpp_error``: the ones with a 95 %
bootstrap interval) the verdict is ``apart`` when the two intervals do not overlap, with
the direction (``better``/``worse`` for the ablation), else ``overlap``. ``steps`` and
``skip_rate`` are shown as values, and ``adaptation`` is the mean step count at Low
relative to High (``1 - low / high``; the full model's claim is that it stops earlier when
the budget is small).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REGIMES = ("low", "med", "high")
# measure -> True when lower is better
WITH_CI = {"swd": True, "msssim": False, "bpp_error": True}
PLAIN = ("steps", "skip_rate")
SAME_REQUESTS = ("samples", "seeds", "regimes", "size", "full_steps", "real_images")


class InputError(ValueError):
    pass


def load(path: Path, method: str = "badiff") -> dict[str, Any]:
    """One method's cells (measure -> regime -> value) and the run's meta."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read a bench_badiff JSON ({exc})") from exc
    if "meta" not in data or "swd" not in data:
        raise InputError(f"{path}: not a bench_badiff.py JSON (no 'meta' or 'swd')")
    if method not in data["swd"]:
        raise InputError(f"{path}: no method {method!r} (has {sorted(data['swd'])}); run "
                         "bench_badiff.py --methods badiff on the ablation's weights")
    cells = {k: v[method] for k, v in data.items() if k != "meta" and method in v}
    return {"cells": cells, "meta": data["meta"]}


def check_same_requests(full: dict[str, Any], other: dict[str, Any], name: str) -> None:
    for key in SAME_REQUESTS:
        a, b = full["meta"].get(key), other["meta"].get(key)
        if a != b:
            raise InputError(f"ablation {name}: meta.{key} is {b!r}, the full model's run "
                             f"has {a!r}; rerun bench_badiff.py with the same options")


def verdict(full_ci: Sequence[float], abl_ci: Sequence[float], abl: float, ref: float,
            lower_better: bool) -> str:
    """``apart, better|worse`` when the 95 % intervals do not overlap, else ``overlap``."""
    if abl_ci[0] > full_ci[1] or abl_ci[1] < full_ci[0]:
        better = (abl < ref) == lower_better
        return "apart, " + ("better" if better else "worse")
    return "overlap"


def adaptation(steps: dict[str, float]) -> float:
    """``1 - steps_low / steps_high``: how much earlier the sampler stops at Low."""
    return 1.0 - steps["low"] / steps["high"]


def compare(full: dict[str, Any], ablations: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"full": {}, "ablations": {}}
    fc = full["cells"]
    for m in (*WITH_CI, *PLAIN):
        out["full"][m] = fc[m]
    for m in WITH_CI:
        out["full"][f"{m}_ci"] = fc[f"{m}_ci"]
    out["full"]["adaptation"] = adaptation(fc["steps"])
    for name, abl in ablations.items():
        ac = abl["cells"]
        row: dict[str, Any] = {}
        for m, lower in WITH_CI.items():
            row[m] = {r: {"value": ac[m][r], "ci": ac[f"{m}_ci"][r],
                          "full": fc[m][r], "full_ci": fc[f"{m}_ci"][r],
                          "verdict": verdict(fc[f"{m}_ci"][r], ac[f"{m}_ci"][r], ac[m][r],
                                             fc[m][r], lower)}
                      for r in REGIMES}
        for m in PLAIN:
            row[m] = ac[m]
        row["adaptation"] = adaptation(ac["steps"])
        out["ablations"][name] = row
    return out


FORMAT = {"swd": "{:.1f}", "msssim": "{:.3f}", "bpp_error": "{:.3f}"}


def render(result: dict[str, Any]) -> str:
    lines = ["Table 3 (ablations) at matched budgets: value [95 % bootstrap CI], verdict vs "
             "the full model", ""]
    full = result["full"]
    for m in WITH_CI:
        f = FORMAT[m]

        def cell(v: float, ci: Sequence[float], f: str = f) -> str:
            return f"{f.format(v)} [{f.format(ci[0])}, {f.format(ci[1])}]"

        lines.append(f"{m} ({'lower' if WITH_CI[m] else 'higher'} is better):")
        lines.append(f"  {'model':<8s}" + "".join(f"{r:>36s}" for r in REGIMES))
        lines.append(f"  {'full':<8s}" + "".join(
            f"{cell(full[m][r], full[f'{m}_ci'][r]):>36s}" for r in REGIMES))
        for name, row in result["ablations"].items():
            lines.append(f"  {name:<8s}" + "".join(
                f"{cell(row[m][r]['value'], row[m][r]['ci']):>22s} {row[m][r]['verdict']:>13s}"
                for r in REGIMES))
        lines.append("")
    lines.append("steps (low / med / high), skip rate at low, adaptation 1 - low/high:")
    rows = [("full", full), *result["ablations"].items()]
    for name, row in rows:
        s = row["steps"]
        lines.append(f"  {name:<8s}{s['low']:7.1f} {s['med']:7.1f} {s['high']:7.1f}"
                     f"   skip {row['skip_rate']['low']:.3f}   adaptation "
                     f"{100 * row['adaptation']:5.1f} %")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--full", type=Path, default=ROOT / "docs" / "badiff_bench_n256.json",
                   help="the full model's bench_badiff.py JSON (its 'badiff' method)")
    p.add_argument("--ablation", action="append", default=[], metavar="NAME=JSON",
                   help="an ablation's bench_badiff.py JSON (repeat)")
    p.add_argument("--json", type=Path, default=None, help="write the comparison here")
    args = p.parse_args(argv)
    try:
        if not args.ablation:
            raise InputError("give at least one --ablation NAME=JSON")
        full = load(args.full)
        ablations: dict[str, dict[str, Any]] = {}
        paths: dict[str, str] = {}
        for spec in args.ablation:
            name, sep, path = spec.partition("=")
            if not sep or not name or not path:
                raise InputError(f"--ablation {spec!r}: expected NAME=JSON")
            if name in ablations:
                raise InputError(f"--ablation {name} given twice")
            ablations[name], paths[name] = load(Path(path)), path
            check_same_requests(full, ablations[name], name)
    except InputError as exc:
        print(f"badiff_ablations: error: {exc}", file=sys.stderr)
        return 2
    result = compare(full, ablations)
    result["meta"] = {"full": str(args.full), "ablations": paths,
                      "samples": full["meta"]["samples"]}
    print(render(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
