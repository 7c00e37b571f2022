"""Helpers shared by the sweep tests (no tests here): small traces, small sweeps, and runners
that fail on purpose. The runners live in an importable module so pool processes and Ray
actors can unpickle them by reference."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from diffstream.netsim.synthetic import markov_cellular, write_mahimahi
from diffstream.sweep.execute import execute
from diffstream.sweep.plan import RunSpec


def make_traces(folder: Path, n: int = 2, duration_s: float = 20.0) -> list[Path]:
    """``n`` small mahimahi traces (Markov LTE-like draws, seeds 1..n) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for seed in range(1, n + 1):
        p = folder / f"t{seed}.down"
        write_mahimahi(markov_cellular(seed, duration_s), p)
        out.append(p)
    return out


def base_scenario(**overrides: Any) -> dict[str, Any]:
    """A 64x64, 10 fps, 4 s interactive scenario (40 frames), 5 % of the link."""
    data: dict[str, Any] = {
        "name": "sweepbase",
        "seed": 3,
        "duration_s": 4.0,
        "frame": {"width": 64, "height": 64, "fps": 10},
        "content": {"source": "skimage", "shot_frames": 10},
        "mode": {"kind": "interactive", "target_latency_ms": 300},
        "trace": {"kind": "constant", "mbps": 2.0, "duration_s": 10},
        "link": {"share": 0.05, "delay_ms": 20, "queue": {"bytes": 20000},
                 "loss": {"kind": "bernoulli", "p": 0.05}},
        "compute": {"kind": "profile", "profile": "cpu-2core"},
        "arms": [{"codec": "jpeg", "policy": {"kind": "fixed", "bpp": 1.0}}],
    }
    data.update(overrides)
    return data


def write_sweep(folder: Path, *, name: str = "sw", base: Any = None, grid: dict[str, Any],
                filename: str = "sweep.yaml", **top: Any) -> Path:
    """A sweep file in ``folder`` (network-only unless told otherwise); output in folder/out."""
    data: dict[str, Any] = {"name": name, "base": base if base is not None else base_scenario(),
                            "sweep": grid, "network_only_bytes": 0,
                            "output": {"dir": str(folder / "out"), "plots": False}}
    data.update(top)
    path = folder / filename
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def small_grid(traces: str = "traces/*.down") -> dict[str, Any]:
    """2 traces x 3 arms (fixed, rate, oracle) x 2 seeds = 12 network-only runs."""
    return {"traces": [{"kind": "mahimahi", "path": traces}],
            "codecs": ["jpeg"],
            "policies": [{"kind": "fixed", "bpp": 1.0}, {"kind": "rate"}, {"kind": "oracle"}],
            "seeds": [1, 2]}


# ------------------------------------------------------------------ failure injection
def _first_time(marker_dir: str, spec: RunSpec, target: str | None) -> bool:
    """True the first time this run is seen (a marker file remembers it across processes)."""
    if target is not None and spec.params["arm"] != target:
        return False
    if target is not None and spec.params["seed"] != 1:
        return False
    marker = Path(marker_dir) / spec.id
    if marker.exists():
        return False
    marker.write_text("seen")
    return True


def flaky_runner(spec: RunSpec, trace_bytes: bytes | None = None, *, marker_dir: str,
                 target: str) -> dict[str, Any]:
    """Fails inside the run the first time the target run (``target`` arm, seed 1, trace
    t1.down) is attempted, as a bug in the simulation would: ``execute`` records it."""
    from diffstream.sweep import execute as ex

    if not (spec.params["trace"] == "t1.down" and _first_time(marker_dir, spec, target)):
        return execute(spec, trace_bytes)

    def broken(*args: Any) -> dict[str, Any]:
        raise RuntimeError(f"injected failure in run {spec.id}")

    real = ex._run
    ex._run = broken  # type: ignore[assignment]
    try:
        return execute(spec, trace_bytes)
    finally:
        ex._run = real  # type: ignore[assignment]


def dying_runner(spec: RunSpec, trace_bytes: bytes | None = None, *, marker_dir: str,
                 target: str) -> dict[str, Any]:
    """Kills its own worker process (as an out-of-memory kill would) the first time the
    target run is attempted."""
    if spec.params["trace"] == "t1.down" and _first_time(marker_dir, spec, target):
        os._exit(3)
    return execute(spec, trace_bytes)
