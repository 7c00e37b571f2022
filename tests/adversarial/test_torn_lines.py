"""Item 6: a log opened for appending first loses its torn last line (a crash mid-write)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from diffstream.live.accounting import lost_rx, make_record, unseen_info
from diffstream.live.logs import FrameLog, Journal
from diffstream.output.report import append_frames_jsonl, read_frames_jsonl


def record(seq: int):  # type: ignore[no-untyped-def]
    return make_record(seq, unseen_info("a", "jpeg", "fixed", seq / 10, 0.3), lost_rx("x"))


def test_frame_log_cuts_a_torn_tail_before_appending(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """Three records, then a crash in the middle of the fourth; a restarted process opens
    the log and appends: the fragment is cut (and reported), the log reads cleanly."""
    path = tmp_path / "frames.jsonl"
    append_frames_jsonl(path, [record(k) for k in range(3)])
    fragment = b'{"arm":"a","seq":3,"codec":"jp'
    with path.open("ab") as fh:
        fh.write(fragment)
    with caplog.at_level(logging.WARNING):
        log = FrameLog(tmp_path)
        log.append(record(3))
        log.append(record(4))
    assert [r.seq for r in read_frames_jsonl(path)] == [0, 1, 2, 3, 4]
    assert "torn" in caplog.text and str(len(fragment)) in caplog.text


def test_journal_and_a_file_that_is_only_a_fragment(tmp_path: Path) -> None:
    (tmp_path / "journal.jsonl").write_text('{"seq": 0, "send_s": 0.0}\n{"seq": 1, "se')
    j = Journal(tmp_path)
    j.add(2, {"send_s": 2.0})
    j.close()
    assert Journal.read(tmp_path) == {0: {"send_s": 0.0}, 2: {"send_s": 2.0}}
    (tmp_path / "frames.jsonl").write_bytes(b'{"arm": "a", "se')  # no newline at all
    log = FrameLog(tmp_path)
    log.append(record(0))
    assert [r.seq for r in read_frames_jsonl(tmp_path / "frames.jsonl")] == [0]
