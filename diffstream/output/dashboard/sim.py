"""Terminal dashboard for a running scenario: a rich Live view, or plain log lines.

Live mode (a TTY): header, a progress bar over all arms' frames, a chart panel of the last
60 s of virtual time drawn with block sparklines (no extra dependency), counters, the last
frames and the finished arms. Plain mode (not a TTY, or ``live=False``): one line when an
arm starts, one every 10 % of its frames, one when it ends; never any cursor control, so
logs and CI output stay readable.

Freezes so far: interactive arms apply :func:`~diffstream.metrics.qoe.webrtc_freezes` to
the display times seen so far, with the display clock ``now = last capture + target
latency`` as the end (so a freeze in progress already counts); playback arms count
rebuffer events (``stall_s > 0``). Both match what the final summary reports.
"""

from __future__ import annotations

import io
import math
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

import numpy as np
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from diffstream.metrics.qoe import summarise_arm, webrtc_freezes
from diffstream.metrics.qoe_presets import DiffstreamQoE
from diffstream.output.report import comparison_table
from diffstream.pipeline.records import ArmSummary, FrameRecord

BLOCKS = "▁▂▃▄▅▆▇█"
CHART_WINDOW_S = 60.0
CHART_WIDTH = 60
LAST_FRAMES = 6


# --------------------------------------------------------------------------- helpers


def format_bps(bps: float | None) -> str:
    """bit/s with a unit a person reads at a glance (kbit/s below 1 Mbit/s)."""
    if bps is None or not math.isfinite(bps):
        return "–"
    if abs(bps) >= 1e6:
        return f"{bps / 1e6:.2f} Mbit/s"
    return f"{bps / 1e3:.1f} kbit/s"


def format_bytes(n: float | None) -> str:
    """Bytes as B / kB / MB (decimal, like the link's byte accounting)."""
    if n is None or not math.isfinite(n):
        return "–"
    if n >= 1e6:
        return f"{n / 1e6:.2f} MB"
    if n >= 1e3:
        return f"{n / 1e3:.1f} kB"
    return f"{n:.0f} B"


def sparkline(
    values: Sequence[float | None],
    vmax: float,
    vmin: float = 0.0,
    *,
    style: str = "",
    over: float | None = None,
    over_style: str = "bold red",
) -> Text:
    """Block sparkline on a fixed scale; ``None`` is a gap, cells above ``over`` restyled."""
    text = Text()
    span = vmax - vmin
    for v in values:
        if v is None or not math.isfinite(v):
            text.append(" ")
            continue
        frac = 0.0 if span <= 0 else min(max((v - vmin) / span, 0.0), 1.0)
        char = BLOCKS[round(frac * (len(BLOCKS) - 1))]
        text.append(char, style=over_style if over is not None and v > over else style)
    return text


def _bin(
    points: Sequence[tuple[float, float | None]], t0: float, t1: float, width: int, how: str
) -> list[float | None]:
    """Reduce (t, value) points to ``width`` equal time bins over [t0, t1] (mean or max)."""
    bins: list[list[float]] = [[] for _ in range(width)]
    seen = [False] * width
    span = max(t1 - t0, 1e-9)
    for t, v in points:
        if t < t0:
            continue
        i = min(int((t - t0) / span * width), width - 1)
        seen[i] = True
        if v is not None and math.isfinite(v):
            bins[i].append(v)
    out: list[float | None] = []
    for b, s in zip(bins, seen, strict=True):
        if not b:
            out.append(math.nan if s else None)  # nan: slot had frames but no value
        else:
            out.append(max(b) if how == "max" else sum(b) / len(b))
    return out


def frame_status(r: FrameRecord) -> str:
    """One word for a frame's fate: skipped / lost / late / stall / partial / shown."""
    if r.skipped:
        return "skipped"
    if not r.decoded:
        return "lost"
    if not r.shown:
        return "late"
    if r.stall_s and r.stall_s > 0:
        return "stall"
    return "partial" if r.partial else "shown"


_STATUS_STYLE = {
    "shown": "green",
    "partial": "cyan",
    "stall": "yellow",
    "late": "red",
    "lost": "bold red",
    "skipped": "magenta",
}


@dataclass
class _ArmState:
    """Running numbers of one arm; updated per frame, read by the (throttled) renderer."""

    arm: str
    index: int
    wall_start: float
    codec: str = ""
    policy: str = ""
    done: int = 0
    playback: bool = False
    lag_s: float | None = None  # target latency: deadline - capture of the first frame
    first_capture: float | None = None
    last_capture: float = 0.0
    captures: deque[float] = field(default_factory=lambda: deque(maxlen=32))
    history: deque[tuple[float, FrameRecord]] = field(default_factory=deque)
    last: deque[FrameRecord] = field(default_factory=lambda: deque(maxlen=LAST_FRAMES))
    display: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    shown: int = 0
    skipped: int = 0
    partial: int = 0
    packets_lost: int = 0
    packets_dropped: int = 0
    psnr_sum: float = 0.0
    psnr_n: int = 0
    stalls: int = 0
    stall_s: float = 0.0
    deadline_ms: float | None = None
    summary: ArmSummary | None = None
    _freeze_cache: tuple[int, tuple[int, float]] = (-1, (0, 0.0))

    def add(self, r: FrameRecord) -> None:
        if not self.codec:
            self.codec, self.policy = r.codec, r.policy
        if self.first_capture is None:
            self.first_capture = r.capture_s
            self.playback = r.deadline_s is None
            self.lag_s = None if r.deadline_s is None else r.deadline_s - r.capture_s
            self.deadline_ms = None if self.lag_s is None else self.lag_s * 1000.0
        self.done += 1
        self.last_capture = max(self.last_capture, r.capture_s)
        self.captures.append(r.capture_s)
        self.history.append((r.capture_s, r))
        while self.history and self.history[0][0] < self.last_capture - CHART_WINDOW_S:
            self.history.popleft()
        self.last.append(r)
        if r.shown:
            self.shown += 1
            if r.display_s is not None:
                self.display.append(r.display_s)
            if r.latency_s is not None and math.isfinite(r.latency_s):
                self.latencies_ms.append(r.latency_s * 1000.0)
        self.skipped += int(r.skipped)
        self.partial += int(r.shown and r.partial)
        self.packets_lost += r.packets_lost
        self.packets_dropped += r.packets_dropped
        if r.psnr_db is not None and math.isfinite(r.psnr_db):
            self.psnr_sum += r.psnr_db
            self.psnr_n += 1
        if r.stall_s and r.stall_s > 0:
            self.stalls += 1
            self.stall_s += r.stall_s

    @property
    def frame_interval_s(self) -> float:
        caps = sorted(self.captures)
        gaps = [b - a for a, b in zip(caps[:-1], caps[1:], strict=True) if b > a]
        return statistics.median(gaps) if gaps else 0.1

    def freezes(self) -> tuple[int, float]:
        """(count, seconds) so far; see the module docstring for the rule."""
        if self.playback:
            return self.stalls, self.stall_s
        if self._freeze_cache[0] == self.done:
            return self._freeze_cache[1]
        result = (0, 0.0)
        if self.first_capture is not None:
            lag = self.lag_s or 0.0
            interval = self.frame_interval_s
            start = self.first_capture + lag
            end = self.last_capture + lag + interval  # the slot of the latest frame
            found = webrtc_freezes(self.display, interval, start, end)
            result = (len(found), float(sum(d for _, d in found)))
        self._freeze_cache = (self.done, result)
        return result

    def p95_ms(self) -> float:
        return float(np.percentile(self.latencies_ms, 95)) if self.latencies_ms else math.nan

    def mean_psnr(self) -> float:
        return self.psnr_sum / self.psnr_n if self.psnr_n else math.nan


def _fmt(v: float, fmt: str, unit: str = "") -> str:
    return "–" if v is None or not math.isfinite(v) else fmt.format(v) + unit


# -------------------------------------------------------------------------- dashboard


class Dashboard:
    """Live (TTY) or plain-line progress of one scenario's arms.

    ``on_frame`` only updates counters under a lock; drawing happens on rich's refresh
    thread at ``refresh_per_second``, so a fast simulation is not slowed by the terminal.
    ``clock`` (wall seconds) is injectable so tests and the README sample are reproducible.
    """

    time_label = "virtual time"  # what the chart's time axis is (live mode: stream time)

    def __init__(
        self,
        scenario: str,
        arms: Sequence[str],
        frames_per_arm: int,
        *,
        live: bool,
        console: Console | None = None,
        refresh_per_second: float = 4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.scenario = scenario
        self.arms = list(arms)
        self.frames_per_arm = max(int(frames_per_arm), 1)
        self.console = console if console is not None else Console()
        self.live = bool(live) and self.console.is_terminal
        self._clock = clock
        self._lock = threading.Lock()
        self._states: dict[str, _ArmState] = {}
        self._current: _ArmState | None = None
        self._finished: list[ArmSummary] = []
        self._wall_start = clock()
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=None),
            MofNCompleteColumn(),
            TextColumn("frames"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            get_time=clock,
            expand=True,
        )
        self._task = self._progress.add_task("all arms", total=len(self.arms) * self.frames_per_arm)
        self._live: Live | None = None
        if self.live:
            self._live = Live(
                console=self.console,
                refresh_per_second=refresh_per_second,
                get_renderable=self.render,
                transient=False,
            )

    # -- lifecycle --------------------------------------------------------------------

    def __enter__(self) -> Dashboard:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()

    # -- events -----------------------------------------------------------------------

    def start_arm(self, arm: str) -> None:
        """Make ``arm`` the current one (new arm names are appended to the list)."""
        with self._lock:
            if arm not in self.arms:
                self.arms.append(arm)
                self._progress.update(self._task, total=len(self.arms) * self.frames_per_arm)
            state = _ArmState(arm=arm, index=self.arms.index(arm), wall_start=self._clock())
            self._states[arm] = state
            self._current = state
        if not self.live:
            self._line(f"{self._arm_tag(state)}: started ({self.frames_per_arm} frames)")

    def on_frame(self, record: FrameRecord) -> None:
        """Account one finished frame; cheap, called once per frame per arm."""
        with self._lock:
            state = self._states.get(record.arm)
            if state is None:
                state = _ArmState(arm=record.arm, index=len(self._states), wall_start=self._clock())
                self._states[record.arm] = state
                self._current = state
            state.add(record)
            self._progress.advance(self._task)
            k, n = state.done, self.frames_per_arm
            report = not self.live and (k * 10 // n) > ((k - 1) * 10 // n)
        if report:
            self._line(self._progress_line(state))

    def finish_arm(self, summary: ArmSummary) -> None:
        """Record the arm's summary; plain mode prints its one-line result."""
        with self._lock:
            self._finished.append(summary)
            state = self._states.get(summary.arm)
            if state is not None:
                state.summary = summary
        if not self.live:
            tag = self._arm_tag(state) if state is not None else summary.arm
            wall = self._clock() - state.wall_start if state is not None else math.nan
            self._line(
                f"{tag}: done in {_fmt(wall, '{:.1f}', ' s')}  "
                f"PSNR {_fmt(summary.mean_psnr_db, '{:.2f}', ' dB')}  "
                f"p95 {_fmt(summary.latency_p95_ms, '{:.0f}', ' ms')}  "
                f"freezes {summary.freezes} ({summary.freeze_s:.2f} s)  "
                f"skipped {summary.skipped}  partial {summary.partial}  "
                f"QoE {_fmt(summary.qoe, '{:.2f}')}"
            )

    def show_final(self, summaries: Sequence[ArmSummary]) -> None:
        """Print the comparison table (both modes)."""
        self.console.print(comparison_table(summaries, title=f"{self.scenario}: arms compared"))

    # -- plain mode -------------------------------------------------------------------

    def _line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def _arm_tag(self, state: _ArmState) -> str:
        return f"[{self.scenario}] arm {state.index + 1}/{len(self.arms)} {state.arm}"

    def _progress_line(self, s: _ArmState) -> str:
        n = self.frames_per_arm
        wall = self._clock() - s.wall_start
        eta = wall / s.done * max(n - s.done, 0) if s.done else math.nan
        count, secs = s.freezes()
        word = "stalls" if s.playback else "freezes"
        return (
            f"{self._arm_tag(s)} {s.done}/{n} ({100 * s.done / n:.0f}%)  "
            f"PSNR {_fmt(s.mean_psnr(), '{:.2f}', ' dB')}  {word} {count} ({secs:.2f} s)  "
            f"p95 {_fmt(s.p95_ms(), '{:.0f}', ' ms')}  "
            f"elapsed {wall:.1f} s  ETA {_fmt(eta, '{:.1f}', ' s')}"
        )

    # -- live view --------------------------------------------------------------------

    def render(self) -> RenderableType:
        """The whole live view as one renderable (also used for the README sample)."""
        with self._lock:
            return self._render_locked()

    def _render_locked(self) -> RenderableType:
        s = self._current
        header = Text.assemble(
            ("diffstream ", "bold"),
            (self.scenario, "bold cyan"),
        )
        if s is not None:
            mode = "playback" if s.playback else "interactive"
            header.append(f"   arm {s.index + 1}/{len(self.arms)}  ")
            header.append(s.arm, style="bold")
            header.append(f"   codec {s.codec or '–'} · policy {s.policy or '–'} · {mode}")
        parts: list[RenderableType] = [header, self._progress.get_renderable()]
        if s is not None:
            parts.append(self._chart_panel(s))
            side = Table.grid(padding=(0, 2))
            side.add_column()
            side.add_column()
            side.add_row(self._counters(s), self._last_frames(s))
            parts.append(side)
        if self._finished:
            parts.append(self._finished_table())
        return Group(*parts)

    def _chart_panel(self, s: _ArmState) -> Panel:
        pts = list(s.history)
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", width=9)
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True)
        if not pts:
            return Panel(Text("waiting for frames…"), title="link")
        t1 = s.last_capture + s.frame_interval_s
        t0 = max(pts[0][0], t1 - CHART_WINDOW_S)
        fps = 1.0 / s.frame_interval_s

        def series(get: Callable[[FrameRecord], float | None], how: str = "mean") -> list:
            return _bin([(t, get(r)) for t, r in pts], t0, t1, CHART_WIDTH, how)

        cap = series(lambda r: r.capacity_bps)
        est = series(lambda r: r.throughput_est_bps)
        bud = series(lambda r: r.budget_bits * fps)
        rate_vals = [v for v in cap + est + bud if v is not None and math.isfinite(v)]
        vmax = max(rate_vals, default=1.0) or 1.0
        last = pts[-1][1]
        grid.add_row("capacity", sparkline(cap, vmax, style="white"), format_bps(last.capacity_bps))
        grid.add_row(
            "estimate", sparkline(est, vmax, style="cyan"), format_bps(last.throughput_est_bps)
        )
        grid.add_row(
            "budget", sparkline(bud, vmax, style="green"), format_bps(last.budget_bits * fps)
        )
        queue = series(lambda r: r.queue_bytes, "max")
        qmax = max((v for v in queue if v is not None and math.isfinite(v)), default=1.0)
        grid.add_row(
            "queue", sparkline(queue, qmax or 1.0, style="yellow"), format_bytes(last.queue_bytes)
        )
        psnr = series(lambda r: r.psnr_db)
        pv = [v for v in psnr if v is not None and math.isfinite(v)]
        grid.add_row(
            "PSNR",
            sparkline(psnr, max(pv, default=1.0), min(pv, default=0.0) - 1.0, style="magenta"),
            f"{_fmt(last.psnr_db or math.nan, '{:.1f}', ' dB')}"
            f" (mean {_fmt(s.mean_psnr(), '{:.1f}')})",
        )
        lat = series(lambda r: r.latency_s * 1000.0 if r.latency_s is not None else None, "max")
        lv = [v for v in lat if v is not None and math.isfinite(v)]
        dl = s.deadline_ms
        lmax = max(lv + ([dl * 1.25] if dl else []), default=1.0)
        lat_text = Text()
        for v in lat:  # nan: frames in the slot but none shown
            if v is not None and math.isnan(v):
                lat_text.append("×", style="bold red")
            else:
                lat_text.append_text(sparkline([v], lmax, style="blue", over=dl))
        last_lat = last.latency_s * 1000.0 if last.latency_s is not None else math.nan
        grid.add_row(
            "latency",
            lat_text,
            f"{_fmt(last_lat, '{:.0f}', ' ms')} (deadline {_fmt(dl or math.nan, '{:.0f}')} ms)"
            if dl
            else _fmt(last_lat, "{:.0f}", " ms"),
        )
        title = (
            f"last {t1 - t0:.0f} s of {self.time_label} · rates on one scale "
            f"0–{format_bps(vmax)} · × = nothing shown"
        )
        return Panel(grid, title=title, title_align="left", expand=False)

    def _counters(self, s: _ArmState) -> Table:
        count, secs = s.freezes()
        t = Table.grid(padding=(0, 1))
        t.add_column(style="bold")
        t.add_column(justify="right")
        pct = 100.0 * s.shown / s.done if s.done else 0.0
        t.add_row("frames", f"{s.done}/{self.frames_per_arm}")
        t.add_row("shown", f"{s.shown} ({pct:.0f}%)")
        t.add_row("stalls" if s.playback else "freezes", f"{count} / {secs:.2f} s")
        t.add_row("skipped", str(s.skipped))
        t.add_row("partial", str(s.partial))
        t.add_row("pkts lost", str(s.packets_lost))
        t.add_row("pkts dropped", str(s.packets_dropped))
        t.add_row("p95 latency", _fmt(s.p95_ms(), "{:.0f}", " ms"))
        return t

    def _last_frames(self, s: _ArmState) -> Table:
        t = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 1))
        for name in ("seq", "budget b", "bytes", "bpp", "lat ms", "PSNR", "status"):
            t.add_column(name, justify="left" if name == "status" else "right")
        for r in s.last:
            status = frame_status(r)
            lat = r.latency_s * 1000.0 if r.latency_s is not None else math.nan
            t.add_row(
                str(r.seq),
                str(r.budget_bits),
                str(r.payload_bytes),
                f"{r.bpp:.3f}",
                _fmt(lat, "{:.0f}"),
                _fmt(r.psnr_db if r.psnr_db is not None else math.nan, "{:.1f}"),
                Text(status, style=_STATUS_STYLE[status]),
            )
        return t

    def _finished_table(self) -> Table:
        t = Table(title="finished arms", title_justify="left", box=None, header_style="bold")
        for name in ("arm", "PSNR dB", "p95 ms", "miss %", "freezes", "QoE"):
            t.add_column(name, justify="left" if name == "arm" else "right")
        for f in self._finished:
            t.add_row(
                f.arm,
                _fmt(f.mean_psnr_db, "{:.2f}"),
                _fmt(f.latency_p95_ms, "{:.0f}"),
                _fmt(f.deadline_miss_pct, "{:.1f}"),
                f"{f.freezes} / {f.freeze_s:.2f} s",
                _fmt(f.qoe, "{:.2f}"),
            )
        return t


# ------------------------------------------------------------------ demo and sample


def demo_records(
    arm: str,
    codec: str,
    policy: str,
    n: int,
    *,
    fps: float = 10.0,
    seed: int = 0,
    deadline_s: float | None = 0.2,
    pixels: int = 4096,
) -> list[FrameRecord]:
    """Plausible synthetic frames (a link with a 1 s outage at 12 s) for demos and tests."""
    rng = np.random.default_rng(seed)
    out: list[FrameRecord] = []
    est = 60e3
    last_psnr: float | None = None
    for k in range(n):
        t = k / fps
        cap = 60e3 + 30e3 * math.sin(t / 4.0) + 6e3 * rng.standard_normal()
        cap = 0.0 if 12.0 <= t < 13.0 else max(cap, 8e3)
        est = 0.8 * est + 0.2 * max(cap, 4e3)
        budget = int(0.7 * est / fps)
        skipped = k % 97 == 50
        payload = 16 if skipped else int(budget / 8 * rng.uniform(0.85, 1.0))
        wire = payload + 40 + 28 * (payload // 1200 + 1)
        packets = payload // 1200 + 1
        lost = int(rng.random() < 0.02)
        queue = max(0.0, rng.normal(200, 100)) if cap > 0 else 1500.0
        latency = 0.03 + wire * 8 / max(cap, 1.0) + queue * 8 / max(cap, 1.0)
        latency = min(latency, 5.0) + abs(rng.normal(0, 0.01))
        complete = lost == 0 and cap > 0
        on_time = deadline_s is None or latency <= deadline_s
        shown = complete and on_time and not skipped
        bpp = payload * 8 / pixels
        if shown:
            last_psnr = 24.0 + 4.0 * math.log2(1.0 + bpp * 2) + rng.normal(0, 0.4)
        deadline = None if deadline_s is None else t + deadline_s
        out.append(
            FrameRecord(
                arm=arm,
                seq=k,
                codec=codec,
                policy=policy,
                capture_s=t,
                send_s=t + 0.01,
                deadline_s=deadline,
                budget_bits=budget,
                payload_bytes=payload,
                header_bytes=40,
                wire_bytes=wire,
                packets=packets,
                bpp=bpp,
                skipped=skipped,
                skip_reason="budget too small" if skipped else "",
                codec_steps=4,
                encode_ms=8.0,
                encode_charged_s=0.01,
                throughput_est_bps=est,
                capacity_bps=cap,
                queue_bytes=queue,
                packets_dropped=0,
                packets_lost=lost,
                first_arrival_s=t + latency * 0.8 if complete else None,
                last_arrival_s=t + latency if complete else None,
                delivered_bytes=wire if complete else 0,
                complete=complete,
                decoded=complete,
                partial=False,
                prefix_step=None,
                decode_ms=5.0,
                decode_charged_s=0.005,
                decode_done_s=t + latency if complete else None,
                shown=shown,
                display_s=t + latency if shown else None,
                latency_s=latency if shown else None,
                deadline_met=shown,
                stall=not shown,
                stall_s=0.0,
                psnr_db=last_psnr,
                ms_ssim=None if last_psnr is None else min(0.999, 0.6 + last_psnr / 100),
                ssim=None if last_psnr is None else min(0.999, 0.5 + last_psnr / 80),
                ssim_db=None,
                error="",
            )
        )
    return out


class _FakeClock:
    """Wall clock that advances a fixed step per call: reproducible elapsed/ETA."""

    def __init__(self, step: float = 0.01) -> None:
        self.t = 0.0
        self.step = step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def render_text_sample(*, width: int = 110, frames_per_arm: int = 300) -> str:
    """One frame of the live view as plain text (for the README), from synthetic arms."""
    arms = [
        ("gic/mpc", "gic", "mpc"),
        ("badiff/deadline", "badiff", "deadline"),
        ("jpeg/rate", "jpeg", "rate"),
    ]
    sink = Console(file=io.StringIO(), width=width)
    dash = Dashboard(
        "demo",
        [a for a, _, _ in arms],
        frames_per_arm,
        live=False,
        console=sink,
        clock=_FakeClock(),
    )
    for i, (arm, codec, policy) in enumerate(arms[:2]):
        dash.start_arm(arm)
        recs = demo_records(arm, codec, policy, frames_per_arm, seed=i)
        take = recs if i == 0 else recs[: int(frames_per_arm * 0.6)]
        for r in take:
            dash.on_frame(r)
        if i == 0:
            dash.finish_arm(
                summarise_arm(
                    recs,
                    mode="interactive",
                    fps=10.0,
                    pixels=4096,
                    duration_s=frames_per_arm / 10.0,
                    weights=DiffstreamQoE(),
                    offered_bytes=float(sum(r.capacity_bps for r in recs) / 8 / 10.0),
                )
            )
    out = Console(record=True, width=width, file=io.StringIO(), color_system=None)
    out.print(dash.render())
    return out.export_text()
