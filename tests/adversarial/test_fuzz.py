"""Fuzzing the live receiver and sender with hostile messages, next to a real stream.

The receiver gets everything from its (authenticated) sender: random bytes, truncated
messages and frames, huge declared lengths, msgpack bombs, replays, reports and hellos that
travel the wrong way, stray pongs, bad WELCOMEs and sequence jumps. The sender gets the
same from a second peer while it streams to a real receiver: hellos, forged reports, pings,
byes, oversized and malformed messages. Both must keep their RSS flat (< 50 MiB growth),
write a bounded number of records and leave the real stream intact.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import msgpack
import psutil
import pytest
import zmq

from diffstream.live import protocol as P
from diffstream.live.check import compare_dirs
from diffstream.live.sockets import SocketSettings
from diffstream.output.report import read_frames_jsonl
from tests.adversarial.helpers import (
    FPS,
    FakeSender,
    free_port,
    live_scenario,
    receiver,
)
from tests.adversarial.test_live_takeover import forged
from tests.support.live_harness import Proc, read_status, stream_dirs, wait_for

MAX_JUMP = 600 * FPS


def bomb(rng: random.Random) -> bytes:
    """A msgpack body that claims, or nests, far more than it holds."""
    return rng.choice([
        b"\x91" * 200_000 + b"\xc0",  # 200 000 nested arrays
        b"\xdd\xff\xff\xff\xff",  # array of 4 billion elements, none present
        b"\xdf\xff\xff\xff\xff",  # map of 4 billion pairs
        b"\xdb\xff\xff\xff\xff" + b"x" * 100,  # str of 4 GB, 100 bytes present
        b"\xc6\x7f\xff\xff\xff",  # bin of 2 GB
        msgpack.packb({str(i): [[0] * 50] for i in range(1000)}),  # wide, but within limits
        b"\xde\xff\xff" + b"\xa1a\x90" * 30_000,  # map16 with a repeated key
    ])


def _await_report(fake: FakeSender, seq: int, timeout_s: float = 10.0) -> None:
    """Read the receiver's messages until the report on ``seq`` (or give up quietly: the
    final checks say what went missing). Keeps the receiver's inbound queue short, so
    its ZMTP heartbeats are never stuck behind a backlog."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        msg = fake.recv(0.2)
        if msg is not None and msg.kind is P.Kind.REPORT and msg.seq == seq:
            return


def _rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


# --------------------------------------------------------------------------- receiver


def fuzz_receiver(tmp_path: Path, n: int, seed: int, *, process: bool) -> None:
    """``process``: the receiver as ``python -m diffstream recv`` (its own RSS); else in a
    thread of this process (no interpreter and torch start: a few seconds faster)."""
    fake = FakeSender(tmp_path, max_frame_bytes=32 * 1024)
    if process:
        recv = Proc(["recv", "--connect", fake.endpoint, "--out", "out/r", "--wait", "60",
                     "--no-dashboard"], tmp_path / "recv.log", cwd=tmp_path)
        pid = recv.pid
    else:
        # long heartbeats: sharing the GIL with this flood, the receiver may leave its
        # inbound queue full for over 1.5 s, and libzmq then sees no heartbeat (not a bug
        # of the receiver's checks, which is what this test is about)
        rx, bg = receiver(fake.endpoint, tmp_path / "out" / "r", wait_s=60.0,
                          settings=SocketSettings(heartbeat_ms=5000))
        pid = os.getpid()
    rng = random.Random(seed)
    real: set[int] = set()  # genuine, complete frames: each must be decoded, error-free
    accepted: set[int] = set()  # every fresh seq the receiver got a frame for
    history: list[list[Any]] = []
    seq = -1
    rss: list[int] = []
    try:
        fake.handshake()
        t0 = time.monotonic()
        for i in range(n):
            r = rng.random()
            genuine = False  # a frame of the real stream
            if r < 0.10:  # random bytes, 1-5 parts
                parts = [rng.randbytes(rng.randint(0, 200)) for _ in range(rng.randint(1, 5))]
            elif r < 0.16:  # truncated message: head or body cut short
                parts = fake.frame(seq + 1)
                k = rng.randrange(2)
                parts[k] = bytes(parts[k])[: rng.randrange(len(parts[k]))]
            elif r < 0.22:  # msgpack bombs as bodies of every kind
                parts = P.encode(rng.choice(list(P.Kind)), fake.session, seq + 1, 1.0, {})
                parts[1] = bomb(rng)
            elif r < 0.26:  # huge declared lengths
                parts = fake.frame(seq + 1)
                body = msgpack.unpackb(parts[1])
                body["frame_len"] = rng.choice([2**31, 2**32 - 1, 32 * 1024 + 1])
                parts[1] = msgpack.packb(body)
            elif r < 0.36 and history:  # replays
                parts = rng.choice(history)
            elif r < 0.42:  # messages that travel the other way: forged reports, hellos
                kind = rng.choice([P.Kind.REPORT, P.Kind.HELLO, P.Kind.PING, P.Kind.BYE])
                body = {P.Kind.REPORT: forged(), P.Kind.HELLO: {"name": "x", "proto": 1},
                        P.Kind.PING: {}, P.Kind.BYE: {"reason": "x"}}[kind]
                parts = P.encode(kind, fake.session, seq, time.monotonic(), body)
            elif r < 0.46:  # stray pongs, a foreign session's frames, bad WELCOMEs
                parts = rng.choice([
                    P.encode(P.Kind.PONG, 0xBAD, 0, time.monotonic(), {"t1": 1.0, "t2": 2.0}),
                    fake.frame(seq + 1, session=0xBAD),
                    P.encode(P.Kind.WELCOME, fake.session, 0, time.monotonic(),
                             fake.welcome_body(0.0, 0.0, stream_id="../../evil")),
                    # a well-formed WELCOME for a new stream that answers no HELLO of ours
                    P.encode(P.Kind.WELCOME, fake.session, 0, time.monotonic(),
                             fake.welcome_body(1.0, 2.0, stream_id=f"other{i}",
                                               next_seq=seq + 5000)),
                ])
            elif r < 0.50:  # a frame too far ahead to be believed
                parts = fake.frame(seq + MAX_JUMP + 1 + rng.randrange(10**6))
            elif r < 0.56:  # a jump within max_gap_s: valid, but it would buy many records
                seq += rng.randint(100, MAX_JUMP - 1)
                parts = fake.frame(seq)
                accepted.add(seq)
                real.add(seq)
                genuine = True
            elif r < 0.62:  # fresh seq, truncated or corrupt wire frame
                seq += 1
                parts = fake.frame(seq)
                data = bytearray(parts[2])
                if rng.random() < 0.5:
                    data[rng.randrange(len(data))] ^= 0xFF
                else:
                    del data[rng.randrange(1, len(data)):]
                parts[2] = bytes(data)
                accepted.add(seq)
            else:  # the real stream, sometimes after a small gap
                seq += 1 + (rng.random() < 0.1)
                parts = fake.frame(seq)
                accepted.add(seq)
                real.add(seq)
                genuine = True
            if len(history) < 200 and parts and len(parts) == 3:
                history.append(parts)
            fake.send(parts)
            if genuine:
                _await_report(fake, seq)  # paced like a real sender: by the reports
            else:
                fake.drain()
            if i in (n // 10, n - 1):
                rss.append(_rss(pid))
        seq += 1
        fake.send(fake.frame(seq))
        real.add(seq)
        accepted.add(seq)
        fake.end(seq)
        if process:
            assert recv.wait(120) == 0, recv.output()[-3000:]
        else:
            assert bg.join(120) == 0
        elapsed = time.monotonic() - t0
    finally:
        if process:
            recv.close()
        else:
            rx.stopping = True
        fake.close()
    assert not (tmp_path.parent / "evil").exists()
    assert len(stream_dirs(tmp_path / "out/r")) == 1  # no WELCOME started another stream
    rdir = stream_dirs(tmp_path / "out/r")[0]
    counts = read_status(rdir)["counts"]
    assert "internal_errors" not in counts, counts
    for reason in ("parts", "malformed", "oversized", "replayed", "unexpected",
                   "unknown_session", "too_far", "unsolicited"):
        assert counts.get(f"dropped_{reason}", 0) >= 1, (reason, counts)
    records = read_frames_jsonl(rdir / "frames.jsonl")
    by_seq = {r.seq: r for r in records}
    assert len(by_seq) == len(records)  # no seq twice
    assert accepted <= set(by_seq)  # every frame that arrived has its record
    for s in real:  # the real stream is intact
        assert by_seq[s].decoded and not by_seq[s].error, by_seq[s]
    lost = len(records) - len(accepted)
    bound = 2 * FPS + 1.5 * FPS * elapsed  # see diffstream/live/gaps.py
    assert lost <= bound, f"{lost} lost records in {elapsed:.1f} s (bound {bound:.0f})"
    growth = (rss[-1] - rss[0]) / 2**20
    print(f"receiver fuzz {n}: RSS +{growth:.1f} MiB, {len(records)} records "
          f"({len(accepted)} frames, {lost} lost, bound {bound:.0f}), {elapsed:.1f} s, "
          f"dropped {sum(v for k, v in counts.items() if k.startswith('dropped_'))}, "
          f"gap_unrecorded {counts.get('gap_unrecorded', 0)}")
    assert growth < 50, f"receiver RSS grew {growth:.1f} MiB"


def test_fuzz_receiver_500(tmp_path: Path) -> None:
    fuzz_receiver(tmp_path, 500, seed=11, process=False)


@pytest.mark.slow
def test_fuzz_receiver_10k(tmp_path: Path) -> None:
    fuzz_receiver(tmp_path, 10_000, seed=12, process=True)


# --------------------------------------------------------------------------- sender


def fuzz_sender(tmp_path: Path, n: int, seed: int, duration_s: float) -> None:
    ep = f"tcp://127.0.0.1:{free_port()}"
    sc = live_scenario(tmp_path, duration_s=duration_s)
    send = Proc(["send", "--scenario", str(sc), "--bind", ep, "--out", "out/s", "--wait",
                 "60", "--no-dashboard"], tmp_path / "send.log", cwd=tmp_path)
    rx, rbg = receiver(ep, tmp_path / "out" / "r", wait_s=60.0)
    ctx = zmq.Context()
    evil = ctx.socket(zmq.DEALER)
    evil.setsockopt(zmq.LINGER, 0)
    evil.setsockopt(zmq.SNDHWM, 100_000)
    evil.connect(ep)
    rng = random.Random(seed)
    sent: list[list[bytes]] = []
    rss: list[int] = []
    try:
        assert wait_for(lambda: rx.counts["frames"] >= 3, 60), send.output()[-3000:]
        gap = max(0.0, (duration_s - 2.0) / n)  # spread the messages over the stream
        for i in range(n):
            seq = rng.randrange(0, int(duration_s * FPS) + 5)
            r = rng.random()
            if r < 0.15:
                parts = [rng.randbytes(rng.randint(0, 300)) for _ in range(rng.randint(1, 6))]
            elif r < 0.40:  # forged reports for frames the real receiver is reporting on
                parts = P.encode(P.Kind.REPORT, 66, seq, time.monotonic(), forged())
            elif r < 0.50:
                parts = P.encode(P.Kind.HELLO, 66, 0, time.monotonic(),
                                 {"name": "evil", "proto": 1})
            elif r < 0.60:
                parts = P.encode(rng.choice([P.Kind.PING, P.Kind.BYE]), 66, 0,
                                 time.monotonic(), {} if rng.random() < 0.5 else
                                 {"reason": "x"})
            elif r < 0.70:  # msgpack bombs
                parts = P.encode(rng.choice(list(P.Kind)), 66, seq, 1.0, {})
                parts[1] = bomb(rng)[: 60_000]
            elif r < 0.75:  # truncated
                parts = P.encode(P.Kind.REPORT, 66, seq, time.monotonic(), forged())
                parts[1] = parts[1][: rng.randrange(len(parts[1]))]
            elif r < 0.78:  # over MAXMSGSIZE: zmq drops the connection (it reconnects)
                parts = [rng.randbytes(70_000)]
            elif r < 0.85:  # kinds the sender never accepts
                parts = P.encode(rng.choice([P.Kind.FRAME, P.Kind.WELCOME, P.Kind.END]), 66,
                                 seq, time.monotonic(), {"x": 1}, b"d" * 10)
            elif sent:  # replays of earlier messages
                parts = rng.choice(sent)
            else:
                continue
            if len(sent) < 100:
                sent.append(parts)
            try:
                evil.send_multipart(parts, flags=zmq.NOBLOCK)
            except zmq.Again:
                pass
            while evil.poll(0):
                evil.recv_multipart()
            if i in (n // 10, n - 1):
                rss.append(_rss(send.pid))
            if gap:
                time.sleep(gap)
        assert rbg.join(60) == 0
        assert send.wait(60) == 0, send.output()[-3000:]
    finally:
        rx.stopping = True
        send.close()
        evil.close(0)
        ctx.term()
    sdir, rdir = stream_dirs(tmp_path / "out/s")[0], stream_dirs(tmp_path / "out/r")[0]
    counts = read_status(sdir)["counts"]
    assert "internal_errors" not in counts, counts
    assert counts.get("hellos_refused", 0) >= 1 and "receiver_switches" not in counts
    records = read_frames_jsonl(sdir / "frames.jsonl")
    assert [r.seq for r in records] == list(range(round(duration_s * FPS)))  # bounded, whole
    assert not any(r.error == "forged" or r.psnr_db == 99.0 for r in records)
    agreement = compare_dirs(sdir, rdir)
    assert agreement.ok, agreement.describe()
    growth = (rss[-1] - rss[0]) / 2**20
    print(f"sender fuzz {n}: RSS +{growth:.1f} MiB, {len(records)} records, "
          f"dropped {sum(v for k, v in counts.items() if k.startswith('dropped_'))}, "
          f"hellos refused {counts['hellos_refused']}, monitor {read_status(sdir)['monitor']}")
    assert growth < 50, f"sender RSS grew {growth:.1f} MiB"


def test_fuzz_sender_500(tmp_path: Path) -> None:
    fuzz_sender(tmp_path, 500, seed=21, duration_s=4.0)


@pytest.mark.slow
def test_fuzz_sender_10k(tmp_path: Path) -> None:
    fuzz_sender(tmp_path, 10_000, seed=22, duration_s=20.0)
