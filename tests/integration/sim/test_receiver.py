"""The receiver never crashes on malformed frames: it counts, logs and carries on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from diffstream.codecs import create_codec
from diffstream.scenario.load import load_scenario
from diffstream.sim.endpoints import WorkerEndpoints
from diffstream.sim.messages import dumps
from diffstream.sim.workers import ReceiverWorker
from diffstream.transport.packets import packetize
from diffstream.transport.wire import FrameHeader, arm_tag, pack_frame
from tests.conftest import tiny_scenario


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> ReceiverWorker:
    tmp = tmp_path_factory.mktemp("rx")
    sc, spath = load_scenario(tiny_scenario(tmp))
    rx = ReceiverWorker(sc, str(spath.parent))
    rx.on_arm({"arm": "a", "codec": "jpeg", "options": {}})
    return rx


def good_frame(rx: ReceiverWorker, seq: int, arm: str = "a") -> bytes:
    codec = create_codec("jpeg")
    enc = codec.encode(rx.content.frame(seq), 8 * 600)
    h = FrameHeader(seq=seq, arm=arm_tag(arm), codec="jpeg", budget_bits=4800,
                    capture_s=seq * 0.1, send_s=seq * 0.1, shape=rx.shape, meta=enc.meta)
    return pack_frame(h, enc.payload)


def frame_msg(frame: bytes, seq: int, arrive: float = 0.05, **extra: Any) -> dict[str, Any]:
    chunks = [[o, d, seq * 0.1 + arrive] for o, d in packetize(frame, 1500)]
    msg = {"op": "frame", "arm": "a", "seq": seq, "frame_len": len(frame), "chunks": chunks,
           "capture_s": seq * 0.1, "deadline_s": seq * 0.1 + 0.3}
    msg.update(extra)
    return msg


def test_good_frame_decodes_and_is_shown(receiver: ReceiverWorker) -> None:
    (res,) = receiver.on_frame(frame_msg(good_frame(receiver, 0), 0))
    assert res["decoded"] and res["shown"] and res["psnr_db"] > 20 and not res["error"]


def test_a_frame_tagged_for_another_arm_is_refused(receiver: ReceiverWorker) -> None:
    """The header carries a tag of the arm's label (fixed width, so a name costs no bytes);
    a frame whose tag is another arm's is an error, not a decoded image."""
    (res,) = receiver.on_frame(frame_msg(good_frame(receiver, 0, arm="b"), 0))
    assert not res["decoded"] and not res["shown"] and "tag" in res["error"]


def test_corrupted_frame_is_counted_not_fatal(receiver: ReceiverWorker) -> None:
    frame = bytearray(good_frame(receiver, 1))
    frame[len(frame) // 2] ^= 0xFF
    before = receiver.malformed
    (res,) = receiver.on_frame(frame_msg(bytes(frame), 1))
    assert not res["decoded"] and "payload_checksum" in res["error"]
    assert receiver.malformed == before + 1
    # the viewer keeps seeing the last good image, and it is scored
    assert res["psnr_db"] is not None and not res["shown"]


def test_envelope_lies_about_seq(receiver: ReceiverWorker) -> None:
    msg = frame_msg(good_frame(receiver, 2), 2)
    msg["seq"] = 3
    (res,) = receiver.on_frame(msg)
    assert "envelope" in res["error"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    junk=st.one_of(
        st.binary(max_size=3000),
        st.builds(lambda b, i: b[:i], st.just(b""), st.integers(0, 10)),
    ),
    frame_len=st.one_of(st.integers(-5, 5000), st.text(max_size=3), st.none()),
    offset=st.one_of(st.integers(-10, 6000), st.floats(allow_nan=True)),
    arrive=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=2)),
    seq=st.one_of(st.integers(-3, 2**40), st.text(max_size=3), st.none()),
)
@example(junk=b"\x00" * 40, frame_len=40, offset=0, arrive=0.05, seq=5)  # complete junk
@example(junk=b"", frame_len=3, offset=0, arrive=0.05, seq="x")
def test_fuzzed_frame_messages_never_raise(receiver: ReceiverWorker, junk: bytes, frame_len: Any,
                                           offset: Any, arrive: Any, seq: Any) -> None:
    msg = {"op": "frame", "arm": "a", "seq": seq, "frame_len": frame_len,
           "chunks": [[offset, junk, arrive]], "deadline_s": 1.0}
    before = receiver.malformed
    out = receiver.on_frame(msg)  # must not raise
    if type(seq) is not int or not 0 <= seq < 2**32:  # no slot to account it to: dropped
        assert out == [] and receiver.malformed == before + 1
        return
    # a usable seq always gets its one result: junk is never shown, never decoded
    assert [r["seq"] for r in out] == [seq]
    (res,) = out
    assert res["decoded"] is False and res["shown"] is False and res["stall"] is True
    assert receiver.malformed - before == (1 if res["error"] else 0)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_real_frames_never_raise(receiver: ReceiverWorker, data: st.DataObject) -> None:
    good = good_frame(receiver, 4)
    frame = bytearray(good)
    for _ in range(data.draw(st.integers(0, 5))):  # 0: the intact frame
        i = data.draw(st.integers(0, len(frame) - 1))
        frame[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.just(len(frame)) | st.integers(0, len(frame)))  # often all of it
    msg = frame_msg(bytes(frame[:cut]), 4, frame_len=len(frame))
    (res,) = receiver.on_frame(msg)
    assert res["seq"] == 4
    # every byte is under a CRC-32: only an intact, complete frame decodes
    assert res["decoded"] == (bytes(frame[:cut]) == good)


def test_live_receiver_survives_garbage(tmp_path: Path) -> None:
    sc, spath = load_scenario(tiny_scenario(tmp_path))
    ep = WorkerEndpoints(sc, spath.parent, log_path=tmp_path / "w.log")
    try:
        ep.start_arm("a", "jpeg", {}, calibrate=False)
        ep.push.send(b"\xc1 not msgpack")  # undecodable envelope
        ep.push.send(dumps({"no": "op"}))  # not a control message
        ep.push.send(dumps({"op": "frame", "arm": "a"}))  # no seq
        ep.push.send(dumps({"op": "teleport"}))  # unknown op
        reply = ep.encode("a", 0, 8000, 0.0, 0.0)
        frame = reply["frame"]
        chunks = [[o, d, 0.05] for o, d in packetize(frame, 1500)]
        ep.deliver({"op": "frame", "arm": "a", "seq": 0, "frame_len": len(frame),
                    "chunks": chunks, "capture_s": 0.0, "deadline_s": 0.3})
        results, malformed = ep.finish_arm("a")
        assert [r["seq"] for r in results] == [0]
        assert results[0]["decoded"] and results[0]["shown"]
        assert malformed >= 2
    finally:
        ep.close()
