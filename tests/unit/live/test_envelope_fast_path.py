"""The live envelope's per-message shortcuts keep the behaviour of what they replace."""

from __future__ import annotations

import os
import threading
from dataclasses import asdict, dataclass
from typing import Any

import msgpack
import pytest
import zmq

from diffstream.live import protocol as P
from diffstream.live.accounting import flat, lost_rx, report_body, unseen_info
from diffstream.pipeline.records import Arrival, Outcome, SenderHalf


@pytest.fixture
def pair() -> Any:
    ctx = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    a.bind("inproc://fast-path")
    b.connect("inproc://fast-path")
    yield a, b
    a.close(0)
    b.close(0)
    ctx.term()


def _recv(sock: zmq.Socket) -> list[bytes]:
    return [bytes(f.buffer) for f in P.recv_parts(sock)[0]]


def test_send_parts_sends_what_send_multipart_sends(pair: Any) -> None:
    a, b = pair
    big = os.urandom(200_000)
    parts = [b"head", bytearray(b"body"), memoryview(big)]
    P.send_parts(a, parts, copy=False)
    a.send_multipart(parts, copy=False)
    assert _recv(b) == _recv(b) == [b"head", b"body", big]
    P.send_parts(a, [b"only"], zmq.NOBLOCK)
    assert _recv(b) == [b"only"]


def test_send_parts_refuses_a_bad_part_before_queueing_any(pair: Any) -> None:
    a, b = pair
    with pytest.raises(TypeError):
        P.send_parts(a, [b"head", "not bytes", b"data"])
    P.send_parts(a, [b"next", b"message"])
    assert _recv(b) == [b"next", b"message"]  # nothing of the refused message was queued


def test_send_parts_noblock_on_a_full_queue_queues_nothing() -> None:
    ctx = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    a.sndhwm = b.rcvhwm = 1
    a.bind("inproc://fast-path-full")
    b.connect("inproc://fast-path-full")
    sent = 0
    with pytest.raises(zmq.Again):
        for _ in range(1000):
            P.send_parts(a, [b"h", str(sent).encode()], zmq.NOBLOCK)
            sent += 1
    got = 0
    while b.poll(100):
        assert _recv(b) == [b"h", str(got).encode()]  # whole messages, in order
        got += 1
    assert got == sent
    a.close(0)
    b.close(0)
    ctx.term()


def test_encode_packs_like_packb_in_every_thread() -> None:
    body = {"name": "rx", "proto": 1, "nested": {"a": [1, 2.5, None, b"\x00"]}}
    expect = [P.HEAD.pack(P.MAGIC, P.VERSION, int(P.Kind.HELLO), 3, 4, 1.5),
              msgpack.packb(body, use_bin_type=True)]
    assert P.encode(P.Kind.HELLO, 3, 4, 1.5, body) == expect
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(P.encode(P.Kind.HELLO, 3, 4, 1.5, body)))
    t.start()
    t.join()
    assert out == [expect]
    with pytest.raises(OverflowError):  # a failed pack leaves the reused packer clean
        P.encode(P.Kind.HELLO, 3, 4, 1.5, {"x": 2**70})
    assert P.encode(P.Kind.HELLO, 3, 4, 1.5, body) == expect


def test_decoded_message_fields() -> None:
    msg = P.decode(P.encode(P.Kind.END, 9, 2, 0.5, {"last_seq": 4}), allowed=P.TO_RECEIVER,
                   max_data_bytes=0)
    assert (msg.kind, msg.session, msg.seq, msg.sent_at, msg.body, msg.data) == (
        P.Kind.END, 9, 2, 0.5, {"last_seq": 4}, None)
    with pytest.raises(AttributeError):
        msg.seq = 3  # type: ignore[misc]  # immutable, as the frozen dataclass was


def test_flat_equals_asdict_for_every_half() -> None:
    info = unseen_info("arm", "jpeg", "rate", 1.0, 0.2)
    tx = SenderHalf(**{k: info[k] for k in info if k != "frame_len"})
    out = Outcome.missing("lost", stall=True)
    arr = Arrival(1.0, 2.0, 300, True, 4e6)
    for half in (tx, out, arr, Arrival.nothing()):
        assert flat(half) == asdict(half)
        assert list(flat(half)) == list(asdict(half))  # same field order on the wire

    @dataclass
    class Wider(Arrival):
        extra: int = 5

    assert flat(Wider(None, None, 0, False)) == asdict(Wider(None, None, 0, False))
    assert report_body(arr, out) == {"throughput_bps": 4e6, "buffer_s": 0.0,
                                     "offset_err_s": None, "rtt_s": None,
                                     **asdict(arr), **asdict(out)}
    assert lost_rx("gone")["error"] == "gone"
