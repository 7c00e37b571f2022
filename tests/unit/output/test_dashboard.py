"""Dashboard: plain lines off a TTY, a live view on one, and the README sample."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from rich.console import Console

from diffstream.metrics.qoe import QoEWeights, summarise_arm
from diffstream.output.dashboard.sim import (
    BLOCKS,
    Dashboard,
    demo_records,
    format_bps,
    frame_status,
    render_text_sample,
    sparkline,
)


class Clock:
    """Manual wall clock."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _summary(recs):  # type: ignore[no-untyped-def]
    return summarise_arm(
        recs,
        mode="interactive",
        fps=10.0,
        pixels=4096,
        duration_s=len(recs) / 10.0,
        weights=QoEWeights(),
        offered_bytes=1e5,
    )


def test_sparkline_and_units() -> None:
    assert sparkline([0.0, 5.0, 10.0, None, 20.0], 10.0).plain == "▁▅█ █"
    assert sparkline([3.0, 3.0], 3.0, 3.0).plain == BLOCKS[0] * 2  # flat scale: no crash
    styled = sparkline([1.0, 9.0], 10.0, over=5.0)
    assert [s.style for s in styled.spans][-1] == "bold red"
    assert format_bps(950.0e3) == "950.0 kbit/s"
    assert format_bps(4.2e6) == "4.20 Mbit/s"
    assert format_bps(math.nan) == "–"


def test_frame_status() -> None:
    r = demo_records("a", "c", "p", 1)[0]
    assert frame_status(r) == "shown"
    assert frame_status(r.__class__(**{**r.to_dict(), "skipped": True})) == "skipped"
    assert frame_status(r.__class__(**{**r.to_dict(), "decoded": False})) == "lost"
    assert frame_status(r.__class__(**{**r.to_dict(), "shown": False})) == "late"
    assert frame_status(r.__class__(**{**r.to_dict(), "stall_s": 0.3})) == "stall"


def test_plain_mode_lines() -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=80)
    clock = Clock()
    arms = ["gic/mpc", "jpeg/rate"]
    dash = Dashboard("lte", arms, 20, live=True, console=console, clock=clock)
    assert not dash.live  # not a TTY: plain lines even when live is asked for
    sent = {}
    with dash:
        for i, arm in enumerate(arms):
            dash.start_arm(arm)
            recs = demo_records(arm, arm.split("/")[0], arm.split("/")[1], 20, seed=i)
            sent[arm] = recs
            for r in recs:
                clock.t += 0.5
                dash.on_frame(r)
            dash.finish_arm(_summary(recs))
        dash.show_final([_summary(demo_records(a, "c", "p", 20)) for a in arms])
    out = buf.getvalue()
    assert "\x1b" not in out  # no cursor control, no colour codes
    lines = out.splitlines()
    assert lines[0] == "[lte] arm 1/2 gic/mpc: started (20 frames)"
    progress = [ln for ln in lines if ln.startswith("[lte] arm 1/2 gic/mpc ")]
    assert len(progress) == 10  # every 10 % of 20 frames: k = 2, 4, ..., 20
    assert progress[0].startswith("[lte] arm 1/2 gic/mpc 2/20 (10%)")
    # after 10 frames, 5.0 s of wall time: ETA = 5.0 / 10 * 10 = 5.0 s
    assert "elapsed 5.0 s  ETA 5.0 s" in progress[4]
    assert "PSNR" in progress[0] and "freezes 0 (0.00 s)" in progress[0]
    for j, line in enumerate(progress):  # the numbers are those of the frames so far
        so_far = sent["gic/mpc"][: 2 * (j + 1)]
        psnr = np.mean([r.psnr_db for r in so_far if r.psnr_db is not None])
        lat = [1000 * r.latency_s for r in so_far if r.shown and r.latency_s is not None]
        assert f"PSNR {psnr:.2f} dB " in line, line
        assert f"p95 {np.percentile(lat, 95):.0f} ms " in line, line
    assert "ETA 0.0 s" in progress[-1]
    done = [ln for ln in lines if ": done in" in ln]
    assert len(done) == 2 and done[0].startswith("[lte] arm 1/2 gic/mpc: done in 10.0 s")
    for line, arm in zip(done, arms, strict=True):
        s = _summary(sent[arm])
        want = f"PSNR {s.mean_psnr_db:.2f} dB  p95 {s.latency_p95_ms:.0f} ms  freezes {s.freezes}"
        assert f"{want} ({s.freeze_s:.2f} s)" in line, line
        assert line.endswith(f"QoE {s.qoe:.2f}"), line
    assert "arms compared" in out and "jpeg/rate" in out  # the final table


def test_plain_mode_counts_freezes_so_far() -> None:
    buf = io.StringIO()
    dash = Dashboard("x", ["a"], 150, live=False, console=Console(file=buf, width=300))
    dash.start_arm("a")
    for r in demo_records("a", "c", "p", 150):  # outage 12-13 s
        dash.on_frame(r)
    last = buf.getvalue().splitlines()[-1]
    assert "150/150" in last and "freezes 1 (" in last
    secs = float(last.split("freezes 1 (")[1].split(" s)")[0])
    assert 1.0 <= secs <= 1.3


def test_live_mode_renders_to_terminal_console() -> None:
    buf = io.StringIO()
    console = Console(file=buf, record=True, force_terminal=True, width=110)
    arms = ["gic/mpc", "jpeg/rate"]
    with Dashboard("lte", arms, 60, live=True, console=console, refresh_per_second=20) as dash:
        assert dash.live
        for i, arm in enumerate(arms):
            dash.start_arm(arm)
            recs = demo_records(arm, "c", "p", 60, seed=i)
            for r in recs:
                dash.on_frame(r)
            dash.finish_arm(_summary(recs))
        dash.show_final([_summary(demo_records(a, "c", "p", 60)) for a in arms])
    text = console.export_text()
    assert "finished arms" in text and "arms compared" in text
    assert "capacity" in text and "120/120" in text
    assert "\x1b[" in buf.getvalue()  # it really drove a terminal


@pytest.fixture(scope="module")
def sample() -> str:
    return render_text_sample()


def test_text_sample_has_charts_and_counters(sample: str) -> None:
    lines = sample.splitlines()
    assert max(len(ln) for ln in lines) <= 110
    assert "arm 2/3" in sample and "badiff/deadline" in sample
    for label in ("capacity", "estimate", "budget", "queue", "PSNR", "latency"):
        row = next(ln for ln in lines if ln.lstrip("│ ").startswith(label))
        assert sum(ch in BLOCKS for ch in row) >= 40, row  # a sparkline, not just a number
    assert "kbit/s" in sample and "deadline 200 ms" in sample
    for counter in ("shown", "freezes", "skipped", "pkts lost", "pkts dropped"):
        assert counter in sample
    assert "180/300" in sample and "480/900" in sample
    assert "finished arms" in sample and "gic/mpc" in sample
    assert "×" in sample  # the 1 s outage: slots with nothing shown
