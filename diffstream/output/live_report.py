"""End of a live stream: the simulator's summary, table and plots from the frame log.

Both sides call this on their own ``frames.jsonl``, so the same ``diffstream.output.report``
functions produce ``summary.csv`` and the PNGs as for a simulated run. The file is re-read
rather than kept in memory: a resumed process holds only the frames since its restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console

from diffstream.metrics.qoe import summarise_arm
from diffstream.netsim.trace import Trace
from diffstream.output.report import (
    FRAMES_NAME,
    SUMMARY_NAME,
    comparison_table,
    read_frames_jsonl,
    write_report,
    write_summary_csv,
)
from diffstream.pipeline.records import ArmSummary, FrameRecord
from diffstream.scenario.schema import Scenario


@dataclass
class LiveReport:
    records: list[FrameRecord]
    summary: ArmSummary | None
    files: list[Path] = field(default_factory=list)


def write_live_report(scenario: Scenario, folder: Path, trace: Trace | None, console: Console,
                      *, offered_bytes: float = 0.0) -> LiveReport:
    """Summarise ``folder/frames.jsonl`` (and plot it when ``output.plots``).

    ``trace``: the shaping trace (drawn as the capacity); ``offered_bytes``: what the shaped
    link offered while busy (utilisation; 0 when not shaping: the real capacity is unknown).
    """
    path = folder / FRAMES_NAME
    records = read_frames_jsonl(path) if path.is_file() else []
    if not records:
        console.print("no frames were recorded", highlight=False)
        return LiveReport(records, None)
    records.sort(key=lambda r: r.seq)
    fps = scenario.frame.fps
    duration = max(len(records) / fps, 1e-9)
    summary = summarise_arm(records, mode="interactive", fps=fps, pixels=scenario.frame.pixels,
                            duration_s=duration, weights=scenario.qoe,
                            offered_bytes=offered_bytes)
    by_arm = {records[0].arm: records}
    if scenario.output.plots:
        end = records[-1].capture_s + 1.0
        capacity = (trace.rate_series(0.5, end) if trace is not None
                    else (np.zeros(0), np.zeros(0)))
        files = write_report(folder, by_arm, [summary], capacity)
    else:
        write_summary_csv(folder / SUMMARY_NAME, [summary])
        files = [path, folder / SUMMARY_NAME]
    console.print(comparison_table([summary], title=f"{scenario.name}: live stream"))
    return LiveReport(records, summary, files)
