"""Item 2: a stream belongs to one receiver; others are refused and their reports dropped."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import zmq

from diffstream.live import protocol as P
from diffstream.live.accounting import lost_rx
from diffstream.live.security import create_keys
from diffstream.output.report import read_frames_jsonl
from tests.adversarial.helpers import (
    FPS,
    FakeSender,
    console_text,
    free_port,
    live_scenario,
    receiver,
    sender,
)
from tests.support.live_harness import stream_dirs, wait_for


def forged() -> dict[str, Any]:
    rx = lost_rx("forged")
    rx.update(decoded=True, shown=True, psnr_db=99.0, display_s=0.0, first_arrival_s=0.0,
              last_arrival_s=0.0, delivered_bytes=1, complete=True)
    return rx


class Newcomer:
    """A second peer that says hello mid-stream, then forges reports and pings."""

    def __init__(self, ctx: zmq.Context, endpoint: str, keys: Any = None) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if keys is not None:
            from diffstream.live.security import make_client

            make_client(self.sock, keys)
        self.sock.connect(endpoint)
        self.kinds: list[str] = []

    def pester(self, seq: int) -> None:
        for parts in (P.encode(P.Kind.HELLO, 77, 0, time.monotonic(), {"name": "x", "proto": 1}),
                      P.encode(P.Kind.PING, 77, 0, time.monotonic(), {}),
                      *(P.encode(P.Kind.REPORT, 77, s, time.monotonic(), forged())
                        for s in range(max(0, seq - 2), seq + 3))):
            try:
                self.sock.send_multipart(parts, flags=zmq.NOBLOCK)
            except zmq.Again:
                pass
        while self.sock.poll(0):
            parts = self.sock.recv_multipart()
            try:
                self.kinds.append(P.Kind(parts[0][4]).name)
            except (ValueError, IndexError):
                self.kinds.append("?")


def _stream(tmp_path: Path, ep: str, *, curve_keys: str | None = None,
            takeover: bool = False, duration_s: float = 2.5) -> tuple[Any, Any, Any, Any]:
    sc = live_scenario(tmp_path, duration_s=duration_s, peer_timeout_s=1.0)
    kw: dict[str, Any] = {"curve": curve_keys is not None}
    skw: dict[str, Any] = dict(kw)
    if curve_keys:
        kw["keys_dir"] = tmp_path / "keys" / "receiver"
        skw["keys_dir"] = tmp_path / "keys" / "sender"
    if takeover:  # only when asked: the option is new
        skw["takeover"] = True
    tx, tbg = sender(sc, ep, tmp_path / "s", wait_s=60.0, **skw)
    rx, rbg = receiver(ep, tmp_path / "r", wait_s=60.0, **kw)
    assert wait_for(lambda: rx.counts["frames"] >= 5, 60), "the stream never started"
    return tx, tbg, rx, rbg


def _no_forged_records(tmp_path: Path) -> None:
    records = read_frames_jsonl(stream_dirs(tmp_path / "s")[0] / "frames.jsonl")
    assert [r.seq for r in records] == list(range(len(records)))
    assert not any(r.error == "forged" or r.psnr_db == 99.0 for r in records)


def test_a_second_receiver_is_refused_and_cannot_forge_reports(tmp_path: Path) -> None:
    """Loopback without CURVE: a newcomer's HELLO mid-stream is refused, its reports and
    pings are dropped and counted, and the real receiver's stream ends normally."""
    ep = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context()
    tx, tbg, rx, rbg = _stream(tmp_path, ep)
    intruder = Newcomer(ctx, ep)
    try:
        end = time.monotonic() + 30
        while rbg.thread.is_alive() and tbg.thread.is_alive() and time.monotonic() < end:
            intruder.pester(tx.next_seq)
            time.sleep(0.05)
        assert rbg.join(15) == 0, rx.counts  # END arrived: not stuck "connected" forever
        assert tbg.join(15) == 0
    finally:
        rx.stopping = True
        tx._stopping = True
        intruder.sock.close(0)
        ctx.term()
    assert set(intruder.kinds) == {"REFUSED"}, intruder.kinds  # no WELCOME, FRAME or PONG
    assert tx.counts["hellos_refused"] >= 1
    assert tx.counts["dropped_not_active_peer"] >= 1
    assert "receiver_switches" not in tx.counts
    _no_forged_records(tmp_path)
    assert tx.next_write == round(2.5 * FPS)


def test_takeover_only_when_allowed_and_the_old_receiver_is_told(tmp_path: Path) -> None:
    """With --takeover the newcomer gets the stream; the old receiver is told at once and
    exits 1 instead of waiting forever."""
    ep = f"tcp://127.0.0.1:{free_port()}"
    tx, tbg, rx, rbg = _stream(tmp_path, ep, takeover=True, duration_s=6.0)
    rx2, rbg2 = receiver(ep, tmp_path / "r2", wait_s=60.0)
    try:
        assert rbg.join(15) == 1  # told, long before the stream ends
        assert tbg.thread.is_alive()  # the stream goes on, to the newcomer
        assert "took the stream over" in console_text(rx.console)
        assert tbg.join(30) == 0
        assert rbg2.join(30) == 0
    finally:
        rx.stopping = rx2.stopping = True
        tx._stopping = True
    assert tx.counts["receiver_switches"] == 1
    assert rx2.counts["frames"] > 0


def test_second_authorised_receiver_is_refused_under_curve(tmp_path: Path) -> None:
    """Two receivers with keys in authorized/: the one that came second is refused, gives
    up with the reason (--wait), and the first one's stream ends normally."""
    create_keys(tmp_path / "keys")
    create_keys(tmp_path / "keys", "laptop")
    ep = f"tcp://127.0.0.1:{free_port()}"
    tx, tbg, rx, rbg = _stream(tmp_path, ep, curve_keys="receiver")
    rx2, rbg2 = receiver(ep, tmp_path / "r2", wait_s=2.0, curve=True,
                         keys_dir=tmp_path / "keys" / "laptop")
    try:
        assert rbg2.join(20) == 1
        assert rbg.join(20) == 0
        assert tbg.join(20) == 0
    finally:
        rx.stopping = rx2.stopping = True
        tx._stopping = True
    assert rx2.counts["hello_refused"] >= 1 and rx2.stream is None
    assert tx.counts["hellos_refused"] >= 1 and "receiver_switches" not in tx.counts
    _no_forged_records(tmp_path)


def test_pongs_from_another_session_do_not_keep_a_receiver_alive(tmp_path: Path) -> None:
    """The receiver's liveness: only an answer to its own probe from its stream's sender.
    A sender that only sends stray PONGs is silent: the receiver says hello again."""
    fake = FakeSender(tmp_path, peer_timeout_s=1.0)
    rx, bg = receiver(fake.endpoint, tmp_path / "r", wait_s=None)
    try:
        fake.handshake(timeout_s=30)
        hellos = 0
        end = time.monotonic() + 4.0
        while time.monotonic() < end and not hellos:
            msg = fake.recv(0.05)
            if msg is not None and msg.kind is P.Kind.PING:
                fake.pong(msg, session=0xBAD)  # right probe, wrong sender session
            hellos += msg is not None and msg.kind is P.Kind.HELLO
    finally:
        rx.stopping = True
        bg.join(20)
        fake.close()
    assert hellos, "stray PONGs kept the receiver believing the sender served it"
    assert rx.counts["dropped_unknown_session"] >= 1
