"""Live sender and receiver as real processes on loopback: agreement, authentication, fuzzing.

Each test starts ``python -m diffstream send|recv`` (about 1-3 s of start-up each on a
2-core machine) and streams a few seconds of 64x64 frames.
"""

from __future__ import annotations

import random
import socket
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
import zmq

from diffstream.live import protocol as P
from diffstream.live.check import compare_dirs
from diffstream.live.schema import load_live_scenario
from diffstream.live.security import create_keys
from diffstream.output.report import read_frames_jsonl
from diffstream.sim.workers import SenderWorker
from tests.support.live_harness import Proc, read_status, stream_dirs

FPS = 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def live_scenario(tmp: Path, duration_s: float = 3.0, **live: Any) -> Path:
    data: dict[str, Any] = {
        "name": "tinylive", "seed": 1, "duration_s": duration_s,
        "frame": {"width": 64, "height": 64, "fps": FPS},
        "content": {"source": "skimage", "shot_frames": 10},
        "mode": {"kind": "interactive", "target_latency_ms": 300},
        "trace": {"kind": "constant", "mbps": 4.0, "duration_s": 20},
        "link": {"share": 0.1, "delay_ms": 20},
        "arms": [{"codec": "jpeg", "policy": {"kind": "fixed", "bpp": 1.0}}],
        "output": {"dir": "out", "plots": False},
        "live": {"heartbeat_ms": 300, "report_timeout_s": 5.0, **live},
    }
    path = tmp / "live.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --------------------------------------------------------------------------- outsiders


class Intruder:
    """A client with the wrong credentials that keeps trying to talk to the sender."""

    def __init__(self, ctx: zmq.Context, endpoint: str, server_key: bytes | None) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if server_key is not None:  # CURVE, but with a key the sender never authorised
            pub, sec = zmq.curve_keypair()
            self.sock.curve_publickey, self.sock.curve_secretkey = pub, sec
            self.sock.curve_serverkey = server_key
        self.sock.connect(endpoint)
        self.received = 0
        self.seq = 0

    def pester(self) -> None:
        """Say hello and forge a report for the next frames; count anything that comes."""
        for msg in (P.encode(P.Kind.HELLO, 66, 0, time.monotonic(), {"name": "x", "proto": 1}),
                    P.encode(P.Kind.REPORT, 66, self.seq, time.monotonic(), forged_report())):
            try:
                self.sock.send_multipart(msg, flags=zmq.NOBLOCK)
            except zmq.Again:
                pass
        self.seq += 1
        while self.sock.poll(0):
            self.sock.recv_multipart()
            self.received += 1


def forged_report() -> dict[str, Any]:
    from diffstream.live.accounting import lost_rx

    rx = lost_rx("forged")
    rx.update(decoded=True, shown=True, psnr_db=99.0, display_s=0.0, first_arrival_s=0.0,
              last_arrival_s=0.0, delivered_bytes=1, complete=True)
    return rx


def server_key(keys: Path) -> bytes:
    return (keys / "receiver" / "sender.key").read_text().split('"')[1].encode()


def test_outsiders_cannot_start_a_stream(tmp_path: Path) -> None:
    """A CURVE client with a key the sender never authorised and a client without CURVE
    knock for the whole wait: neither gets a message, and neither HELLO starts a stream."""
    create_keys(tmp_path / "keys")
    ep = f"tcp://127.0.0.1:{free_port()}"
    send = Proc(["send", "--scenario", str(live_scenario(tmp_path)), "--bind", ep, "--curve",
                 "--keys", "keys/sender", "--out", "out/s", "--wait", "3"],
                tmp_path / "send.log", cwd=tmp_path)
    ctx = zmq.Context()
    intruders = [Intruder(ctx, ep, server_key(tmp_path / "keys")), Intruder(ctx, ep, None)]
    try:
        end = time.monotonic() + 30
        while send.p.poll() is None and time.monotonic() < end:
            for i in intruders:
                i.pester()
            time.sleep(0.05)
        assert send.wait(10) == 1, send.output()
    finally:
        send.close()
        for i in intruders:
            i.sock.close(0)
        ctx.term()
    assert [i.received for i in intruders] == [0, 0]
    assert "refused" in send.output()
    sdir = stream_dirs(tmp_path / "out/s")[0]
    status = read_status(sdir)
    assert status["monitor"].get("auth_failures", 0) >= 1  # the unauthorised key
    assert status["monitor"].get("handshake_failures", 0) >= 1  # the one without CURVE
    assert status["receiver"] == "" and status["written"] == 0
    assert not any(k.startswith("dropped_") for k in status["counts"])  # nothing got in
    assert (sdir / "frames.jsonl").read_text() == ""


def test_stream_agrees_while_outsiders_pester(tmp_path: Path) -> None:
    """CURVE on loopback: the receiver with the right keys gets every frame and both logs
    agree field by field, while two outsiders keep sending HELLOs and forged reports."""
    create_keys(tmp_path / "keys")
    ep = f"tcp://127.0.0.1:{free_port()}"
    scenario = live_scenario(tmp_path, duration_s=2.0)
    send = Proc(["send", "--scenario", str(scenario), "--bind", ep, "--curve", "--keys",
                 "keys/sender", "--out", "out/s", "--wait", "60"], tmp_path / "send.log",
                cwd=tmp_path)
    recv = Proc(["recv", "--connect", ep, "--curve", "--keys", "keys/receiver", "--out",
                 "out/r", "--wait", "60"], tmp_path / "recv.log", cwd=tmp_path)
    ctx = zmq.Context()
    intruders = [Intruder(ctx, ep, server_key(tmp_path / "keys")), Intruder(ctx, ep, None)]
    try:
        end = time.monotonic() + 60
        while recv.p.poll() is None and time.monotonic() < end:
            for i in intruders:
                i.pester()
            time.sleep(0.05)
        assert recv.wait(30) == 0, recv.output()
        assert send.wait(30) == 0, send.output()
    finally:
        send.close()
        recv.close()
        for i in intruders:
            i.sock.close(0)
        ctx.term()
    assert [i.received for i in intruders] == [0, 0]
    sdir, rdir = stream_dirs(tmp_path / "out/s")[0], stream_dirs(tmp_path / "out/r")[0]
    status = read_status(sdir)
    assert status["monitor"].get("auth_failures", 0) >= 1
    assert "receiver_switches" not in status["counts"]
    assert "reports_bogus" not in status["counts"]
    assert "internal_errors" not in status["counts"]
    assert "internal_errors" not in read_status(rdir)["counts"]
    records = read_frames_jsonl(sdir / "frames.jsonl")
    assert [r.seq for r in records] == list(range(2 * FPS))
    assert not any(r.error == "forged" or r.psnr_db == 99.0 for r in records)
    agreement = compare_dirs(sdir, rdir)
    assert agreement.ok, agreement.describe()
    assert agreement.compared_fully >= 0.9 * len(records)  # loopback: (almost) no loss
    shown = [r for r in records if r.shown]
    assert len(shown) >= 0.8 * len(records) and all(r.latency_s < 0.3 for r in shown)
    assert (sdir / "summary.csv").is_file() and (rdir / "summary.csv").is_file()


def test_receiver_will_not_talk_to_a_sender_with_another_key(tmp_path: Path) -> None:
    create_keys(tmp_path / "keys")
    ctx = zmq.Context()
    rogue = ctx.socket(zmq.ROUTER)
    pub, sec = zmq.curve_keypair()
    rogue.curve_publickey, rogue.curve_secretkey, rogue.curve_server = pub, sec, True
    rogue.setsockopt(zmq.LINGER, 0)
    port = rogue.bind_to_random_port("tcp://127.0.0.1")
    recv = Proc(["recv", "--connect", f"tcp://127.0.0.1:{port}", "--curve", "--keys",
                 "keys/receiver", "--out", "out/r", "--wait", "2"], tmp_path / "recv.log",
                cwd=tmp_path)
    try:
        got = 0
        end = time.monotonic() + 20
        while recv.p.poll() is None and time.monotonic() < end:
            if rogue.poll(100):
                rogue.recv_multipart()
                got += 1
        assert recv.wait(10) == 1
    finally:
        recv.close()
        rogue.close(0)
        ctx.term()
    assert got == 0
    assert "handshakes failed" in recv.output()


# --------------------------------------------------------------------------- fuzzing


class FakeSender:
    """Test-side sender: a real handshake, then whatever the test wants to send."""

    def __init__(self, tmp: Path, max_frame_bytes: int) -> None:
        self.scenario_path = live_scenario(tmp, duration_s=600.0,
                                           max_frame_bytes=max_frame_bytes)
        self.sc, spath = load_live_scenario(self.scenario_path)
        self.worker = SenderWorker(self.sc, str(spath.parent))
        self.worker.handle({"op": "arm", "arm": "jpeg-fixed", "codec": "jpeg", "options": {},
                            "calibrate": False})
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.sock.setsockopt(zmq.SNDTIMEO, 20_000)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.session = 0x5EED
        self.epoch = time.monotonic()

    def handshake(self, timeout_s: float = 60.0) -> None:
        end = time.monotonic() + timeout_s
        welcomed = False
        while time.monotonic() < end:
            if not self.sock.poll(200):
                continue
            parts = self.sock.recv_multipart()
            self.peer = parts[0]
            msg = P.decode(parts[1:], allowed=P.TO_SENDER, max_data_bytes=0)
            now = time.monotonic()
            if msg.kind is P.Kind.HELLO:
                body = {"stream_id": "fuzz", "scenario": self.sc.model_dump(mode="json"),
                        "arm": "jpeg-fixed", "epoch": self.epoch, "next_seq": 0,
                        "frames": 10**6, "t1": msg.sent_at, "t2": now, "want": [],
                        "shaping": False}
                self.send(P.encode(P.Kind.WELCOME, self.session, 0, now, body))
                welcomed = True
            elif msg.kind is P.Kind.PING:
                self.send(P.encode(P.Kind.PONG, self.session, 0, time.monotonic(),
                                   {"t1": msg.sent_at, "t2": now}))
                if welcomed:
                    return
        raise AssertionError("the receiver never completed the handshake")

    def send(self, parts: list[Any]) -> None:
        self.sock.send_multipart([self.peer, *parts])

    def drain(self) -> None:
        while self.sock.poll(0):
            self.sock.recv_multipart()

    def frame(self, seq: int, session: int | None = None) -> list[Any]:
        capture = time.monotonic() - self.epoch
        reply = self.worker.handle({"op": "encode", "arm": "jpeg-fixed", "seq": seq,
                                    "budget_bits": 4096, "capture_s": capture,
                                    "start_s": capture})
        frame = reply["frame"]
        info = {"arm": "jpeg-fixed", "codec": "jpeg", "policy": "fixed", "capture_s": capture,
                "send_s": reply["send_s"], "deadline_s": capture + 0.3, "budget_bits": 4096,
                "payload_bytes": reply["payload_bytes"], "header_bytes": reply["header_bytes"],
                "wire_bytes": len(frame) + 40, "packets": 1,
                "bpp": reply["payload_bytes"] * 8 / 4096, "skipped": reply["skipped"],
                "skip_reason": reply["reason"], "codec_steps": 1, "encode_ms": 1.0,
                "encode_charged_s": 0.001, "throughput_est_bps": None, "capacity_bps": None,
                "queue_bytes": 0.0, "packets_dropped": 0, "packets_lost": 0,
                "throughput_pred_bps": None, "frame_len": len(frame)}
        return P.encode(P.Kind.FRAME, session or self.session, seq, time.monotonic(), info,
                        frame)

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


def fuzz_receiver(tmp_path: Path, n: int, seed: int) -> None:
    """Send ``n`` messages, mostly invalid in every way we can think of, to a real receiver
    process; it must count each bad one under its reason, log every valid frame (and the
    seqs it never got) exactly once, keep its RSS flat, and finish the stream normally."""
    max_frame = 32 * 1024
    fake = FakeSender(tmp_path, max_frame)
    recv = Proc(["recv", "--connect", f"tcp://127.0.0.1:{fake.port}", "--out", "out/r",
                 "--wait", "60"], tmp_path / "recv.log", cwd=tmp_path)
    rng = random.Random(seed)
    skipped: list[int] = []  # seqs never sent: the receiver must log them lost
    expected: dict[str, int] = {}
    corrupt = 0
    history: list[list[Any]] = []
    seq = -1
    rss: list[int] = []
    try:
        fake.handshake()
        proc = psutil.Process(recv.pid)
        for i in range(n):
            r = rng.random()
            if r < 0.15:  # garbage parts
                parts = [rng.randbytes(rng.randint(0, 120)) for _ in range(rng.randint(1, 4))]
                if len(parts) in (2, 3) and len(parts[0]) == P.HEAD_SIZE:
                    parts[0] = b"XXX" + parts[0][3:]
                why = {1: "parts", 4: "parts"}.get(len(parts)) or (
                    "bad_magic" if len(parts[0]) >= 3 else "malformed")
            elif r < 0.25:  # a valid head of a random kind with a junk body
                kind = rng.choice(list(P.Kind))
                parts = P.encode(kind, fake.session, rng.randint(0, 99), 1.0, {"x": 1},
                                 b"d" if kind is P.Kind.FRAME else None)
                why = "malformed" if kind in P.TO_RECEIVER else "unexpected"
            elif r < 0.35:  # a frame whose fields have the wrong types or ranges
                parts = fake.frame(seq + 1)
                body = msgpack_body(parts[1])
                key = rng.choice(sorted(body))
                body[key] = rng.choice(["x", -5, None, [1], {"a": 1}, 2**64 - 1, float("nan")])
                parts[1] = P.msgpack.packb(body)
                why = "malformed"
                try:
                    P.check_body(P.Kind.FRAME, body)
                    why = ""  # still valid (e.g. None where None is allowed): skip it
                except P.ProtocolError:
                    pass
                if not why:
                    continue
            elif r < 0.50 and history:  # replay of an earlier frame
                parts, why = rng.choice(history), "replayed"
            elif r < 0.55 and [s for s in skipped if seq - s < 1000]:  # never sent, older
                parts = fake.frame(rng.choice([s for s in skipped if seq - s < 1000]))
                why = "out_of_order"
            elif r < 0.60:
                parts, why = fake.frame(seq + 10**6), "too_far"
            elif r < 0.65:
                parts, why = fake.frame(seq + 1, session=0xBAD), "unknown_session"
            elif r < 0.68:  # more data than the limit
                parts = fake.frame(seq + 1)
                parts[2] = bytes(max_frame + 1)
                why = "oversized"
            elif r < 0.70:  # a small frame that claims to be huge (no buffer may follow it)
                parts = fake.frame(seq + 1)
                body = msgpack_body(parts[1])
                body["frame_len"] = rng.randint(max_frame + 1, 2**32 - 1)
                parts[1] = P.msgpack.packb(body)
                why = "oversized"
            elif r < 0.82:  # fresh seq, valid envelope, corrupt wire frame
                seq += 1
                parts = fake.frame(seq)
                data = bytearray(parts[2])
                if rng.random() < 0.5:
                    data[rng.randrange(len(data))] ^= 0xFF
                else:
                    del data[rng.randrange(1, len(data)):]
                    body = msgpack_body(parts[1])
                    body["frame_len"] = len(data)
                    parts[1] = P.msgpack.packb(body)
                parts[2] = bytes(data)
                history.append(parts)
                corrupt += 1
                why = ""
            else:  # a good frame, sometimes after a small gap
                if rng.random() < 0.2:
                    skipped.append(seq + 1)
                    seq += 1
                seq += 1
                parts = fake.frame(seq)
                history.append(parts)
                why = ""
            if why:
                expected[why] = expected.get(why, 0) + 1
            fake.send(parts)
            fake.drain()
            if i in (n // 5, n - 1):
                rss.append(proc.memory_info().rss)
        seq += 1
        fake.send(fake.frame(seq))
        fake.send(P.encode(P.Kind.END, fake.session, 0, time.monotonic(), {"last_seq": seq}))
        assert recv.wait(60) == 0, recv.output()[-3000:]
    finally:
        recv.close()
        fake.close()
    rdir = stream_dirs(tmp_path / "out/r")[0]
    counts = read_status(rdir)["counts"]
    assert "internal_errors" not in counts  # every bad message was refused on purpose
    dropped = {k.removeprefix("dropped_"): v for k, v in counts.items()
               if k.startswith("dropped_") and k != "dropped_unknown_probe"}
    assert dropped == expected
    assert counts.get("frames_corrupt", 0) == corrupt
    records = read_frames_jsonl(rdir / "frames.jsonl")
    assert [r.seq for r in records] == list(range(seq + 1))  # every seq once, gaps as lost
    assert sum(1 for r in records if r.error.startswith("lost: never received")) == len(
        skipped)
    growth = (rss[-1] - rss[0]) / 2**20
    assert growth < 25, f"receiver RSS grew {growth:.1f} MiB over the fuzzing"


def msgpack_body(raw: Any) -> dict[str, Any]:
    return P.msgpack.unpackb(bytes(raw), raw=False)


def test_fuzzed_frames_small(tmp_path: Path) -> None:
    fuzz_receiver(tmp_path, 400, seed=1)


@pytest.mark.slow
def test_fuzzed_frames_10k(tmp_path: Path) -> None:
    fuzz_receiver(tmp_path, 10_000, seed=2)
