"""Playout models: interactive deadlines and the playback buffer (stalls, levels)."""

from __future__ import annotations

import pytest

from diffstream.pipeline.playout import InteractivePlayout, PlaybackBuffer


def test_interactive_shows_only_frames_ready_by_deadline() -> None:
    p = InteractivePlayout()
    assert p.on_frame(0.10, 0.30).shown
    late = p.on_frame(0.45, 0.40)
    assert not late.shown and late.display_s is None
    assert not p.on_frame(None, 0.5).shown
    s = p.on_frame(0.55, 0.6)
    assert s.shown and s.display_s == 0.55


def test_playback_startup_then_stall_then_shift() -> None:
    b = PlaybackBuffer(fps=10, startup_s=0.2)  # 2 startup frames, 0.1 s interval
    assert b.on_frame(0.05) == []
    slots = b.on_frame(0.12)  # playback starts at 0.12
    assert [s.display_s for s in slots] == pytest.approx([0.12, 0.22])
    assert all(s.stall_s == 0 for s in slots)
    ok = b.on_frame(0.30)[0]  # due 0.32, ready 0.30
    assert ok.display_s == pytest.approx(0.32) and ok.stall_s == 0
    stall = b.on_frame(0.60)[0]  # due 0.42, ready 0.60: 0.18 s rebuffer
    assert stall.stall_s == pytest.approx(0.18) and stall.display_s == pytest.approx(0.60)
    lost = b.on_frame(None)[0]  # due 0.70: repeat, no stall
    assert not lost.shown and lost.stall_s == 0
    nxt = b.on_frame(0.75)[0]  # due 0.80
    assert nxt.display_s == pytest.approx(0.80)


def test_playback_level() -> None:
    b = PlaybackBuffer(fps=10, startup_s=0.1)
    b.on_frame(0.0)  # plays [0.0, 0.1)
    for r in (0.01, 0.02, 0.03):  # due 0.1, 0.2, 0.3
        b.on_frame(r)
    # at t=0.05: half of frame 0 left + 3 frames ready = 0.35 s
    assert b.level_s(0.05) == pytest.approx(0.35)
    assert b.level_s(0.25) == pytest.approx(0.15)
    assert b.level_s(1.0) == 0.0


def test_playback_flush_before_start() -> None:
    b = PlaybackBuffer(fps=10, startup_s=1.0)
    b.on_frame(0.3)
    b.on_frame(None)
    slots = b.flush()
    assert len(slots) == 2 and slots[0].shown and not slots[1].shown


def test_playback_skipped_frame_holds_its_slot() -> None:
    b = PlaybackBuffer(fps=10, startup_s=0.1)
    b.on_frame(0.0)  # plays at 0.0
    skipped = b.on_frame(0.02, showable=False)[0]  # due 0.1: a repeat, but timed
    assert not skipped.shown and skipped.stall_s == 0
    late_skip = b.on_frame(0.35, showable=False)[0]  # due 0.2, arrives 0.35: stalls
    assert late_skip.stall_s == pytest.approx(0.15)
    assert b.on_frame(0.36)[0].display_s == pytest.approx(0.45)
    assert b.level_s(0.03) > 0.1  # the skipped frame counts as buffered
