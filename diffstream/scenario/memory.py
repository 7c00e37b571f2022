"""Refuse a simulated run that would not fit in memory, before it starts.

A run keeps every frame's record in memory until it writes the report: measured on the
network-only path, about 4.5 kB per frame for the arm being simulated (its records plus the
loop's per-frame state) and about 2.5 kB per frame for every finished arm. A day at 240 fps
(20.7 million frames) would need about 90 GB for a single arm; such a run is refused with
the estimate, instead of running for hours and then being killed.
"""

from __future__ import annotations

import os

PER_FRAME_ACTIVE = 4_600  # bytes per frame of the arm being simulated
PER_FRAME_KEPT = 2_600  # bytes per frame of each arm already finished
BASE = 1 << 30  # the coordinator, two worker processes with their codecs and torch


def estimate_bytes(frames_per_arm: int, arms: int) -> int:
    return BASE + frames_per_arm * (PER_FRAME_ACTIVE + max(0, arms - 1) * PER_FRAME_KEPT)


def available_bytes() -> int | None:
    """Memory available to a new process now (Linux ``MemAvailable``), else total RAM."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_problem(frames_per_arm: int, arms: int) -> str | None:
    """A sentence explaining why the run does not fit, or None when it does."""
    need = estimate_bytes(frames_per_arm, arms)
    have = available_bytes()
    if have is None or need <= have:
        return None
    gib = 1 << 30
    return (f"{frames_per_arm} frames per arm x {arms} arm{'s' if arms > 1 else ''} need "
            f"about {need / gib:.1f} GiB of memory (about {PER_FRAME_ACTIVE / 1000:.1f} kB per "
            f"frame), more than the {have / gib:.1f} GiB available; shorten duration_s, lower "
            "frame.fps or run fewer arms (--arms)")
