"""Item 3: a sequence jump cannot make the receiver write thousands of records."""

from __future__ import annotations

import json
import time
from pathlib import Path

from diffstream.output.report import read_frames_jsonl
from tests.adversarial.helpers import FPS, FakeSender, receiver
from tests.support.live_harness import stream_dirs, wait_for

MAX_JUMP = 600 * FPS  # live.max_gap_s (600 s) x fps: the largest jump a frame may make


def test_one_jumping_frame_cannot_buy_thousands_of_lost_records(tmp_path: Path) -> None:
    """Frames 0, then three jumps of almost max_gap_s x fps each, then END: before the fix,
    each jump wrote 12 000 "lost" records (about 10 MB). Now the records a gap may cost are
    bounded by what a real stream could have lost in the time that passed; the rest of each
    gap is one range line in gaps.jsonl, so every seq is still accounted for."""
    fake = FakeSender(tmp_path)
    rx, bg = receiver(fake.endpoint, tmp_path / "r")
    seqs = [0, MAX_JUMP - 1, 2 * (MAX_JUMP - 1), 3 * (MAX_JUMP - 1)]
    try:
        fake.handshake(timeout_s=30)
        t0 = time.monotonic()
        for seq in seqs:
            fake.send(fake.frame(seq))
        fake.end(seqs[-1])
        assert bg.join(60) == 0
        elapsed = time.monotonic() - t0
    finally:
        rx.stopping = True
        fake.close()
    folder = stream_dirs(tmp_path / "r")[0]
    records = read_frames_jsonl(folder / "frames.jsonl")
    # a burst of 2 s of frames plus 1.5 x fps per second that passed, not 36 000
    assert len(records) <= len(seqs) + 2 * FPS + 1.5 * FPS * elapsed + 1, (len(records), elapsed)
    assert (folder / "frames.jsonl").stat().st_size < 1000 * len(records)
    ranges = [json.loads(line) for line in (folder / "gaps.jsonl").read_text().splitlines()]
    covered = {r.seq for r in records}
    for g in ranges:
        span = set(range(g["first"], g["last"] + 1))
        assert not span & covered
        covered |= span
    assert covered == set(range(seqs[-1] + 1))  # every seq: a record or a range line
    assert rx.counts["gap_unrecorded"] == sum(g["frames"] for g in ranges)


def test_budget_refills_at_the_frame_rate() -> None:
    from diffstream.live.gaps import GapBudget

    now = [0.0]
    b = GapBudget(20.0, 12_000, clock=lambda: now[0])
    first = b.take(10_000)
    assert 16 <= first <= 64  # the initial burst
    assert b.take(10_000) == 0  # spent: a second jump at once gets nothing
    now[0] += 10.0
    assert b.take(10_000) == 300  # 10 s x 20 fps x 1.5 slack
    now[0] += 10_000.0
    assert b.take(100_000) == 12_000  # capped at max_gap_s x fps
    restarted = GapBudget(20.0, 12_000, idle_s=30.0, clock=lambda: now[0])
    assert restarted.take(1000) >= 900  # the frames missed while the receiver was down


def test_the_first_frame_is_checked_against_the_welcome(tmp_path: Path) -> None:
    """With no frame yet, the WELCOME's next_seq is the reference: a first frame far beyond
    it is refused, instead of moving the replay window so every real frame looks replayed."""
    fake = FakeSender(tmp_path)
    rx, bg = receiver(fake.endpoint, tmp_path / "r")
    try:
        fake.handshake(timeout_s=30)
        fake.send(fake.frame(MAX_JUMP + 5))
        for seq in range(3):
            fake.send(fake.frame(seq))
        fake.end(2)
        assert bg.join(60) == 0
    finally:
        rx.stopping = True
        fake.close()
    records = read_frames_jsonl(stream_dirs(tmp_path / "r")[0] / "frames.jsonl")
    assert [r.seq for r in records] == [0, 1, 2] and all(r.decoded for r in records)
    assert rx.counts["dropped_too_far"] == 1


def test_a_restarted_receiver_records_the_frames_it_missed(tmp_path: Path) -> None:
    """The bound must not eat real losses: a receiver restarted with the same --out gets
    the tokens of the time it was down, so every frame it missed gets its lost record."""
    fake = FakeSender(tmp_path)
    try:
        rx, bg = receiver(fake.endpoint, tmp_path / "r")
        fake.handshake(timeout_s=30)
        for seq in range(5):
            fake.send(fake.frame(seq))
        assert wait_for(lambda: rx.counts["frames"] == 5, 20)
        rx.stopping = True
        bg.join(30)
        time.sleep(2.0)  # down for 2 s: 2 s x 20 fps x 1.5 tokens more than the burst
        gap = 2 * FPS + 30  # more than the 2 s burst alone would pay for
        rx, bg = receiver(fake.endpoint, tmp_path / "r")
        fake.handshake(timeout_s=30, next_seq=5 + gap)
        fake.send(fake.frame(5 + gap))
        fake.end(5 + gap)
        assert bg.join(60) == 0
    finally:
        rx.stopping = True
        fake.close()
    folder = stream_dirs(tmp_path / "r")[0]
    records = read_frames_jsonl(folder / "frames.jsonl")
    assert [r.seq for r in records] == list(range(6 + gap))
    assert not (folder / "gaps.jsonl").exists()
