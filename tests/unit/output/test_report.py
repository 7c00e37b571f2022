"""Frame log, summary CSV, comparison table and plots."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image
from rich.console import Console
from rich.style import Style
from rich.text import Text

from diffstream.metrics.qoe import QoEWeights, summarise_arm
from diffstream.output.dashboard.sim import demo_records
from diffstream.output.report import (
    append_frames_jsonl,
    comparison_table,
    plot_latency_cdf,
    plot_quality,
    plot_timeline,
    read_frames_jsonl,
    write_frames_jsonl,
    write_report,
    write_summary_csv,
)
from diffstream.pipeline.records import ArmSummary, FrameRecord

ARMS = [
    ("gic/mpc", "gic", "mpc"),
    ("badiff/deadline", "badiff", "deadline"),
    ("jpeg/rate", "jpeg", "rate"),
]


@pytest.fixture(scope="module")
def records_by_arm() -> dict[str, list[FrameRecord]]:
    return {a: demo_records(a, c, p, 200, seed=i) for i, (a, c, p) in enumerate(ARMS)}


def _summary(arm: str, **kw: float) -> ArmSummary:
    base = dict(
        arm=arm,
        codec="c",
        policy="p",
        frames=10,
        shown_pct=90.0,
        mean_psnr_db=30.0,
        mean_ms_ssim=0.95,
        mean_ssim_db=12.0,
        latency_p50_ms=100.0,
        latency_p95_ms=150.0,
        latency_p99_ms=180.0,
        deadline_miss_pct=10.0,
        freezes=1,
        freeze_s=0.5,
        skipped=0,
        partial=0,
        mean_bpp=0.5,
        delivered_kbps=40.0,
        utilisation=0.8,
        qoe=20.0,
        qoe_preset="diffstream",
        qoe_diffstream=20.0,
        qoe_pensieve_lin=0.2,
        qoe_pensieve_log=-0.5,
        qoe_pensieve_hd=0.6,
        qoe_puffer=11.0,
        rebuffer_ratio=0.05,
        stalled_pct=5.0,
        freeze_count=1,
        total_freezes_duration_s=0.5,
        pauses=0,
        total_pauses_duration_s=0.0,
    )
    base.update(kw)
    return ArmSummary(**base)  # type: ignore[arg-type]


def test_jsonl_round_trip_with_none_and_nan(
    tmp_path: Path, records_by_arm: dict[str, list[FrameRecord]]
) -> None:
    recs = records_by_arm["gic/mpc"][:5]
    recs[0] = dataclasses.replace(recs[0], psnr_db=None, display_s=None, latency_s=None)
    recs[1] = dataclasses.replace(
        recs[1], encode_ms=math.nan, psnr_db=math.nan, throughput_est_bps=math.inf
    )
    path = tmp_path / "sub" / "frames.jsonl"
    write_frames_jsonl(path, recs)
    lines = path.read_text().splitlines()
    assert len(lines) == 5
    obj = json.loads(lines[1])  # strict JSON: no NaN tokens
    assert obj["psnr_db"] is None and obj["encode_ms"] is None
    assert obj["throughput_est_bps"] is None
    back = read_frames_jsonl(path)
    assert back[0] == recs[0]
    assert back[2:] == recs[2:]
    assert math.isnan(back[1].encode_ms)  # plain float field: null -> nan
    assert back[1].psnr_db is None  # optional field: null stays None
    assert back[1].seq == recs[1].seq


def test_append_is_incremental_and_survives_torn_line(
    tmp_path: Path, records_by_arm: dict[str, list[FrameRecord]]
) -> None:
    recs = records_by_arm["jpeg/rate"][:6]
    path = tmp_path / "frames.jsonl"
    append_frames_jsonl(path, recs[:2])
    append_frames_jsonl(path, recs[2:3])
    append_frames_jsonl(path, recs[3:])
    assert read_frames_jsonl(path) == recs
    with path.open("a") as fh:
        fh.write('{"arm": "jpeg/ra')  # crash mid-write
    assert read_frames_jsonl(path) == recs


def test_summary_csv_header_and_values(tmp_path: Path) -> None:
    rows = [_summary("a/x", qoe=21.5), _summary("b/y", latency_p95_ms=math.nan)]
    path = tmp_path / "summary.csv"
    write_summary_csv(path, rows)
    with path.open() as fh:
        reader = csv.reader(fh)
        header = next(reader)
        data = list(reader)
    assert header == [f.name for f in dataclasses.fields(ArmSummary)]
    assert len(data) == 2
    got = dict(zip(header, data[0], strict=True))
    assert got["arm"] == "a/x" and float(got["qoe"]) == 21.5 and got["freezes"] == "1"
    assert math.isnan(float(dict(zip(header, data[1], strict=True))["latency_p95_ms"]))


def test_comparison_table_lists_every_arm_and_highlights_best() -> None:
    rows = [
        _summary("a/x", qoe=21.5, latency_p95_ms=90.0),
        _summary("b/y", qoe=19.0),
        _summary("c/z", qoe=math.nan, mean_psnr_db=math.nan),
    ]
    console = Console(record=True, width=200)
    console.print(comparison_table(rows, title="demo"))
    text = console.export_text()
    for arm in ("a/x", "b/y", "c/z"):
        assert arm in text
    assert "21.50" in text and "1 / 0.50" in text and "–" in text
    table = comparison_table(rows)
    assert [c.header for c in table.columns][:4] == ["arm", "codec", "policy", "PSNR dB"]
    assert "QoE: the diffstream preset" in str(table.caption)
    puffer = comparison_table([_summary("a/x", qoe_preset="puffer")])
    assert "QoE: the puffer preset" in str(puffer.caption)

    def column(header: str) -> list[tuple[str, bool]]:
        """(plain text, highlighted) per row, through rich's public Column.cells."""
        col = next(c for c in table.columns if c.header == header)
        out = []
        for cell in col.cells:
            text = cell if isinstance(cell, Text) else Text.from_markup(str(cell))
            whole = [sp for sp in text.spans if sp.start == 0 and sp.end == len(text)]
            out.append((text.plain, any(Style.parse(str(sp.style)) == BEST for sp in whole)))
        return out

    assert column("QoE") == [("21.50", True), ("19.00", False), ("–", False)]
    assert column("p95 ms") == [("90", True), ("150", False), ("150", False)]
    # identical values everywhere: nothing is singled out
    assert column("MS-SSIM") == [("0.9500", False)] * 3
    assert column("PSNR dB") == [("30.00", False), ("30.00", False), ("–", False)]


BEST = Style.parse("bold green")


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> dict[str, Figure]:
    """Every Figure the report saves, by file name, to check what was actually plotted."""
    saved: dict[str, Figure] = {}
    real = Figure.savefig

    def spy(fig: Figure, fname: str | Path, *args: object, **kwargs: object) -> None:
        saved[Path(fname).name] = fig
        real(fig, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    return saved


def _by_label(ax: object) -> dict[str, object]:
    return {ln.get_label(): ln for ln in ax.get_lines()}  # type: ignore[attr-defined]


def _check_timeline(fig: Figure, arms: dict[str, list[FrameRecord]], cap: tuple) -> None:
    assert [ax.get_title(loc="left") for ax in fig.axes] == list(arms)
    for ax, recs in zip(fig.axes, arms.values(), strict=True):
        scale = {"kbit/s": 1e3, "Mbit/s": 1e6}[ax.get_ylabel()]
        t = np.array([r.capture_s for r in recs])
        fps = 1.0 / np.median(np.diff(t))
        lines = _by_label(ax)
        link = lines["link capacity"]
        np.testing.assert_allclose(link.get_xdata()[:-1], cap[0])
        np.testing.assert_allclose(link.get_ydata()[:-1], cap[1] / scale)
        budget = lines["budget (bits × fps)"]
        np.testing.assert_allclose(budget.get_xdata(), t)
        np.testing.assert_allclose(budget.get_ydata(), [r.budget_bits * fps / scale for r in recs])
        deliv = np.array([r.delivered_bytes * 8 * fps / scale for r in recs])
        w = round(fps)
        avg = [deliv[max(0, i - w + 1) : i + 1].mean() for i in range(len(recs))]
        np.testing.assert_allclose(lines["delivered (1 s avg)"].get_ydata(), avg)


def _check_quality(fig: Figure, arms: dict[str, list[FrameRecord]]) -> None:
    assert [ax.get_title(loc="left") for ax in fig.axes] == list(arms)
    for ax, recs in zip(fig.axes, arms.values(), strict=True):
        (line,) = ax.get_lines()
        np.testing.assert_allclose(line.get_xdata(), [r.capture_s for r in recs])
        psnr = [np.nan if r.psnr_db is None else r.psnr_db for r in recs]
        np.testing.assert_allclose(line.get_ydata(), psnr)  # gaps where nothing was shown
        rebuf = [c for c in ax.collections if c.get_label() == "rebuffer"]
        want = [r.capture_s for r in recs if r.stall_s > 0]
        got = [seg[0][0] for c in rebuf for seg in c.get_segments()]
        assert got == pytest.approx(want)


def _check_cdf(fig: Figure, arms: dict[str, list[FrameRecord]], deadline_ms: float) -> None:
    (ax,) = fig.axes
    lines = _by_label(ax)
    for arm, recs in arms.items():
        lat = sorted(r.latency_s * 1000 for r in recs if r.shown and r.latency_s is not None)
        if not lat:
            assert len(lines[f"{arm} (nothing shown)"].get_xdata()) == 0
            continue
        x, y = lines[arm].get_xdata(), lines[arm].get_ydata()
        np.testing.assert_allclose(x[1:], lat)
        np.testing.assert_allclose(y[1:], np.arange(1, len(lat) + 1) / len(lat))
    marker = lines[f"deadline {deadline_ms:.0f} ms"]
    np.testing.assert_allclose(marker.get_xdata(), [deadline_ms, deadline_ms])


def _check_png(path: Path, min_w: int, min_h: int) -> None:
    assert path.exists()
    assert path.stat().st_size > 10_000
    with Image.open(path) as im:
        assert im.format == "PNG"
        w, h = im.size
        assert w >= min_w and h >= min_h


def test_plots_are_written(
    tmp_path: Path, records_by_arm: dict[str, list[FrameRecord]], figures: dict[str, Figure]
) -> None:
    t = np.arange(0.0, 20.0, 1.0)
    cap = (t, np.full_like(t, 60e3))
    arms = dict(records_by_arm)
    arms["play/buf"] = [  # a playback arm with two rebuffers, and an arm that showed nothing
        dataclasses.replace(r, stall_s=0.4 if r.seq in (30, 90) else 0.0)
        for r in demo_records("play/buf", "c", "p", 200, deadline_s=None)
    ]
    arms["dead/x"] = [
        dataclasses.replace(
            r, shown=False, latency_s=None, display_s=None, psnr_db=None, stall=True
        )
        for r in demo_records("dead/x", "c", "p", 50)
    ]
    p1 = plot_timeline(arms, cap, tmp_path / "timeline.png")
    p2 = plot_quality(arms, tmp_path / "quality.png")
    p3 = plot_latency_cdf(arms, tmp_path / "cdf.png", deadline_s=0.2)
    _check_png(p1, 1000, 5 * 150)  # one panel per arm: taller with more arms
    _check_png(p2, 1000, 5 * 140)
    _check_png(p3, 800, 500)
    _check_timeline(figures["timeline.png"], arms, cap)
    _check_quality(figures["quality.png"], arms)
    _check_cdf(figures["cdf.png"], arms, 200.0)


def test_write_report(
    tmp_path: Path, records_by_arm: dict[str, list[FrameRecord]], figures: dict[str, Figure]
) -> None:
    summaries = [
        summarise_arm(
            recs,
            mode="interactive",
            fps=10.0,
            pixels=4096,
            duration_s=20.0,
            weights=QoEWeights(),
            offered_bytes=150_000.0,
        )
        for recs in records_by_arm.values()
    ]
    t = np.arange(0.0, 20.0, 0.5)
    cap = (t, 60e3 + 30e3 * np.sin(t / 4))
    paths = write_report(tmp_path / "out", records_by_arm, summaries, cap)
    assert [p.name for p in paths] == [
        "frames.jsonl",
        "summary.csv",
        "timeline.png",
        "quality.png",
        "latency_cdf.png",
    ]
    assert all(p.exists() for p in paths)
    assert len(read_frames_jsonl(paths[0])) == 600
    assert len(paths[1].read_text().splitlines()) == 4
    for p in paths[2:]:
        assert p.stat().st_size > 10_000
    _check_timeline(figures["timeline.png"], records_by_arm, cap)
    _check_quality(figures["quality.png"], records_by_arm)
    _check_cdf(figures["latency_cdf.png"], records_by_arm, 200.0)  # deadline from the records
