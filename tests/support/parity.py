"""Simulation-vs-live parity: the scenarios, the runs and the per-frame comparison.

``compare`` pairs the two frame logs of one arm by seq and measures how far apart they are:
per-frame budgets (relative difference), per-frame fates (``live.accounting.fate``, applied to
the simulated records too), the throughput estimate each sender chose from, and aggregates
(mean budget, delivered fraction). ``Tolerance.failures`` turns a measurement into the
reasons it is out of tolerance, so a failing test says which number drifted and by how much.
"""

from __future__ import annotations

import math
import socket
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from diffstream.live.accounting import fate
from diffstream.pipeline.records import FrameRecord

FATES = ("delivered", "late", "lost")

# --------------------------------------------------------------------------- scenarios

TRACES: dict[str, dict[str, Any]] = {
    # x share 0.2: 200 kbit/s, ~1.2 bpp at 128x128 and 10 fps (frames of 1-2 packets)
    "constant": {"kind": "constant", "mbps": 1.0, "duration_s": 30},
    # 200 -> 60 -> 200 kbit/s: a drop to ~0.37 bpp at 7 s (JPEG's floor here is ~0.2 bpp)
    # and the recovery at 14 s
    "steps": {"kind": "steps", "steps": [[0, 1.0], [7, 0.3], [14, 1.0]], "duration_s": 30},
}
ARMS = ("jpeg-rate", "jpeg-deadline")


def scenario_data(trace: str, duration_s: float, *, offset_s: float = 0.0,
                  **overrides: Any) -> dict[str, Any]:
    """The parity scenario on ``trace``; ``offset_s`` starts the trace that far in."""
    tr = dict(TRACES[trace])
    if offset_s:
        tr["offset_s"] = round(offset_s, 3)
    data: dict[str, Any] = {
        "name": f"parity-{trace}", "seed": 5, "duration_s": duration_s,
        "frame": {"width": 128, "height": 128, "fps": 10},
        "content": {"source": "skimage", "shot_frames": 50},
        "mode": {"kind": "interactive", "target_latency_ms": 300},
        "compute": {"kind": "profile", "profile": "cpu-2core"},
        "trace": tr,
        # feedback_delay_ms 0: live shaping delays only the forward path; reports come back
        # over real loopback (~0.1 ms), so that is the reverse delay the simulator must model
        "link": {"share": 0.2, "delay_ms": 30, "queue": {"bytes": 20000},
                 "feedback_delay_ms": 0},
        "arms": [{"codec": "jpeg", "policy": {"kind": "rate"}},
                 {"codec": "jpeg", "policy": {"kind": "deadline"}}],
        "output": {"dir": "sim", "plots": False},
    }
    data.update(overrides)
    return data


def write_scenario(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- comparison


def rel_diff(a: float, b: float) -> float:
    """Symmetric relative difference, 0 when both are 0 (two skipped frames agree)."""
    scale = max(abs(a), abs(b))
    return 0.0 if scale == 0 else abs(a - b) / scale


def delivered_fraction(records: Sequence[FrameRecord]) -> float:
    return sum(fate(r) == "delivered" for r in records) / max(len(records), 1)


def _window_means(values: Sequence[float], n: int) -> list[float]:
    return [statistics.fmean(values[i:i + n]) for i in range(0, len(values) - n + 1, n)]


@dataclass(frozen=True)
class Parity:
    n: int  # frames compared (seqs present in both logs)
    missing: int  # seqs in one log only
    budget_rel: tuple[float, ...]  # per frame, symmetric relative difference
    fates_sim: tuple[str, ...]
    fates_live: tuple[str, ...]
    mean_budget_sim: float
    mean_budget_live: float
    delivered_sim: float
    delivered_live: float
    capacity_rel_max: float  # worst window of the link capacity each frame saw
    # frames where both senders' throughput estimates agree within ``est_close``: the
    # relative budget difference there (the policy given the same input)
    matched_budget_rel: tuple[float, ...]

    def budget_agree(self, within: float) -> float:
        return sum(x <= within for x in self.budget_rel) / max(self.n, 1)

    @property
    def fate_agree(self) -> float:
        same = sum(a == b for a, b in zip(self.fates_sim, self.fates_live, strict=True))
        return same / max(self.n, 1)

    @property
    def median_budget_rel(self) -> float:
        return statistics.median(self.budget_rel) if self.budget_rel else math.nan

    @property
    def mean_budget_rel(self) -> float:
        return rel_diff(self.mean_budget_sim, self.mean_budget_live)

    def matched_agree(self, within: float) -> float:
        m = self.matched_budget_rel
        return sum(x <= within for x in m) / len(m) if m else math.nan

    def describe(self) -> str:
        cs, cl = Counter(self.fates_sim), Counter(self.fates_live)
        return (f"{self.n} frames: budgets within 10% {self.budget_agree(0.10):.0%}, within "
                f"25% {self.budget_agree(0.25):.0%}, median diff "
                f"{self.median_budget_rel:.1%}; mean budget sim {self.mean_budget_sim:.0f} "
                f"live {self.mean_budget_live:.0f} bits ({self.mean_budget_rel:.1%}); fates "
                f"agree {self.fate_agree:.0%} (sim {dict(cs)}, live {dict(cl)}); delivered "
                f"sim {self.delivered_sim:.0%} live {self.delivered_live:.0%}; same-estimate "
                f"frames {len(self.matched_budget_rel)}, budgets within 3% "
                f"{self.matched_agree(0.03):.0%}; capacity windows within "
                f"{self.capacity_rel_max:.1%}")


def compare(sim: Sequence[FrameRecord], live: Sequence[FrameRecord], *,
            est_close: float = 0.01, window: int = 20) -> Parity:
    """Pair the logs by seq. ``window`` frames make one capacity window (2 s at 10 fps).
    Both modes log a frame's capacity over [capture, capture + 1/fps), so the windows agree
    to float rounding when the trace is aligned; a shift of one frame moves the window
    across the step trace's 14 s edge by about 10 %."""
    s_by, l_by = {r.seq: r for r in sim}, {r.seq: r for r in live}
    seqs = sorted(s_by.keys() & l_by.keys())
    s = [s_by[k] for k in seqs]
    lv = [l_by[k] for k in seqs]
    matched = []
    for a, b in zip(s, lv, strict=True):
        ea, eb = a.throughput_est_bps, b.throughput_est_bps
        if ea is not None and eb is not None and rel_diff(ea, eb) <= est_close:
            matched.append(rel_diff(a.budget_bits, b.budget_bits))
    cap = [rel_diff(x, y) for x, y in zip(_window_means([r.capacity_bps for r in s], window),
                                          _window_means([r.capacity_bps for r in lv], window),
                                          strict=True)]
    return Parity(
        n=len(seqs), missing=len(s_by.keys() ^ l_by.keys()),
        budget_rel=tuple(rel_diff(a.budget_bits, b.budget_bits) for a, b in zip(s, lv,
                                                                                 strict=True)),
        fates_sim=tuple(fate(r) for r in s), fates_live=tuple(fate(r) for r in lv),
        mean_budget_sim=statistics.fmean(r.budget_bits for r in s) if s else math.nan,
        mean_budget_live=statistics.fmean(r.budget_bits for r in lv) if lv else math.nan,
        delivered_sim=delivered_fraction(s), delivered_live=delivered_fraction(lv),
        capacity_rel_max=max(cap, default=0.0), matched_budget_rel=tuple(matched),
    )


@dataclass(frozen=True)
class Tolerance:
    """What "the two modes agree" means for one arm; see the parity test for the numbers."""

    budget_within: float  # a frame's budgets agree when their relative difference is <= this
    budget_agree_min: float  # ... and at least this fraction of frames must agree
    median_budget_rel_max: float
    mean_budget_rel_max: float
    fate_agree_min: float
    delivered_diff_max: float  # |delivered fraction sim - live|
    matched_within: float = 0.03  # same throughput estimate: budgets within this ...
    matched_agree_min: float = 0.9  # ... for this fraction of those frames
    matched_min_frames: int = 10  # fewer same-estimate frames than this: not checked
    capacity_rel_max: float = 0.03  # trace alignment: 2 s windows of capacity

    def failures(self, p: Parity) -> list[str]:
        out = []
        if p.missing:
            out.append(f"{p.missing} seqs are in one log only")
        if p.capacity_rel_max > self.capacity_rel_max:
            out.append(f"the frames saw different link capacity (a 2 s window differs "
                       f"{p.capacity_rel_max:.1%} > {self.capacity_rel_max:.0%}): the trace "
                       "is not aligned")
        agree = p.budget_agree(self.budget_within)
        if agree < self.budget_agree_min:
            out.append(f"budgets within {self.budget_within:.0%} for {agree:.0%} of frames "
                       f"< {self.budget_agree_min:.0%}")
        if p.median_budget_rel > self.median_budget_rel_max:
            out.append(f"median budget difference {p.median_budget_rel:.1%} > "
                       f"{self.median_budget_rel_max:.0%}")
        if p.mean_budget_rel > self.mean_budget_rel_max:
            out.append(f"mean budget sim {p.mean_budget_sim:.0f} vs live "
                       f"{p.mean_budget_live:.0f} bits differs {p.mean_budget_rel:.1%} > "
                       f"{self.mean_budget_rel_max:.0%}")
        if p.fate_agree < self.fate_agree_min:
            out.append(f"fates agree for {p.fate_agree:.0%} of frames < "
                       f"{self.fate_agree_min:.0%}")
        dd = abs(p.delivered_sim - p.delivered_live)
        if dd > self.delivered_diff_max:
            out.append(f"delivered sim {p.delivered_sim:.0%} vs live {p.delivered_live:.0%}: "
                       f"{dd:.0%} apart > {self.delivered_diff_max:.0%}")
        if len(p.matched_budget_rel) >= self.matched_min_frames:
            m = p.matched_agree(self.matched_within)
            if m < self.matched_agree_min:
                out.append(f"with the same throughput estimate (+-1%) budgets agree within "
                           f"{self.matched_within:.0%} for {m:.0%} of {len(p.matched_budget_rel)}"
                           f" frames < {self.matched_agree_min:.0%}: the policy decides "
                           "differently on the same input")
        return out


# --------------------------------------------------------------------------- runs


def run_live(folder: Path, scenario: Path, arms: Sequence[str], *,
             timeout_s: float = 120.0) -> dict[str, list[FrameRecord]]:
    """Stream each arm live over loopback, all at once, the sender shaping frames to the
    trace (``send --shape``, no CURVE on 127.0.0.1); the sender's frame log per arm."""
    from diffstream.output.report import read_frames_jsonl
    from tests.support.live_harness import Proc, stream_dirs

    procs = []
    try:
        for arm in arms:
            ep = f"tcp://127.0.0.1:{free_port()}"
            send = Proc(["send", "--scenario", str(scenario), "--bind", ep, "--shape", "--arm",
                         arm, "--out", f"out/{arm}/s", "--wait", "60", "--no-dashboard"],
                        folder / f"{arm}-send.log", cwd=folder)
            recv = Proc(["recv", "--connect", ep, "--out", f"out/{arm}/r", "--wait", "60",
                         "--no-dashboard"], folder / f"{arm}-recv.log", cwd=folder)
            procs.append((arm, send, recv))
        for arm, send, recv in procs:
            assert recv.wait(timeout_s) == 0, f"{arm} receiver:\n{recv.output()[-3000:]}"
            assert send.wait(30) == 0, f"{arm} sender:\n{send.output()[-3000:]}"
    finally:
        for _, send, recv in procs:
            send.close()
            recv.close()
    return {arm: read_frames_jsonl(stream_dirs(folder / f"out/{arm}/s")[0] / "frames.jsonl")
            for arm in arms}


def run_sim(folder: Path, data: dict[str, Any], arm: str) -> list[FrameRecord]:
    """Simulate one arm of the scenario ``data`` (in process; workers over ipc)."""
    from rich.console import Console

    from diffstream.sim.session import RunOptions, run_scenario

    path = write_scenario(folder / f"sim-{arm}.yaml", data)
    with open(folder / f"sim-{arm}.txt", "w", encoding="utf-8") as out:
        res = run_scenario(path, RunOptions(out_dir=folder / f"sim-{arm}", live_dashboard=False,
                                            arms=[arm], console=Console(file=out, width=160)))
    return res.records[arm]
