"""``FrameLogStream`` writes the lines ``append_frames_jsonl`` writes, as records come."""

from __future__ import annotations

import json
import math
from pathlib import Path

from diffstream.output.report import FrameLogStream, append_frames_jsonl, read_frames_jsonl
from diffstream.pipeline.records import Arrival, FrameRecord, Outcome, SenderHalf


def _record(seq: int) -> FrameRecord:
    tx = SenderHalf(arm="a", codec="fixed", policy="rate", capture_s=seq / 30, send_s=seq / 30,
                    deadline_s=None, budget_bits=8000, payload_bytes=1000, header_bytes=60,
                    wire_bytes=1100, packets=1, bpp=0.5, skipped=False, skip_reason="",
                    codec_steps=1, encode_ms=0.0, encode_charged_s=0.0,
                    throughput_est_bps=None, capacity_bps=math.inf, queue_bytes=0.0,
                    packets_dropped=0, packets_lost=0)
    return FrameRecord.compose(seq, tx, Arrival(0.1, 0.2, 1100, True), Outcome.missing(""))


def test_stream_matches_append_and_flushes_as_it_goes(tmp_path: Path) -> None:
    recs = [_record(k) for k in range(7)]
    append_frames_jsonl(tmp_path / "ref.jsonl", recs)
    stream = FrameLogStream(tmp_path / "out" / "frames.jsonl", flush_every=3)
    for r in recs[:4]:
        stream.write(r)
    # three flushed so far, the fourth still buffered
    assert (tmp_path / "out" / "frames.jsonl").read_text().count("\n") == 3
    for r in recs[4:]:
        stream.write(r)
    stream.close()
    assert stream.written == 7
    assert (tmp_path / "out" / "frames.jsonl").read_text() == (tmp_path / "ref.jsonl").read_text()
    assert [r.seq for r in read_frames_jsonl(tmp_path / "out" / "frames.jsonl")] == list(range(7))
    # each line is the record's to_dict(), NaN/inf as null, compact separators
    first = (tmp_path / "ref.jsonl").read_text().splitlines()[0]
    want = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in recs[0].to_dict().items()}
    assert first == json.dumps(want, separators=(",", ":"))
