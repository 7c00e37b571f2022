"""Live transport throughput over loopback: our framing vs raw ZeroMQ, in the same run.

    python benchmarks/bench_transport.py [--trials 3] [--quick]

For 64x64 and 512x512 RGB payloads (12 288 and 786 432 bytes), with and without CURVE:

- raw: PUSH -> PULL of the payload bytes, default socket options, nothing else;
- ours: what live mode does per frame minus the codec: the sender packs the wire frame
  (msgpack header, CRCs), wraps it in the live envelope (head + FRAME body with the sender's
  half of the record) and sends it on the live ROUTER socket (our HWM, heartbeats, size
  limits, ZAP authentication with CURVE); the receiver takes it off the live DEALER, checks
  the envelope and body, runs the replay window and verifies the wire frame (header and
  payload CRCs).

The sender runs in its own process, the receiver in this one; the clock runs from the first
frame received to the last. Trials alternate raw and ours and the median is reported, so the
two see the same machine. The ROUTER sends blocking here (live mode sends NOBLOCK and counts
a full queue as a lost frame); that measures the path's capacity rather than its drop rate.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq

SIZES = {"64x64": 64 * 64 * 3, "512x512": 512 * 512 * 3}
COUNTS = {"64x64": 20_000, "512x512": 1_000}


# --------------------------------------------------------------------------- raw


def _raw_sender(port: int, size: int, n: int, keys: tuple[bytes, bytes, bytes] | None) -> None:
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUSH)
    if keys is not None:
        s.curve_publickey, s.curve_secretkey, s.curve_serverkey = keys
    s.connect(f"tcp://127.0.0.1:{port}")
    payload = os.urandom(size)
    for _ in range(n):
        s.send(payload, copy=size < 65536)
    s.send(b"")  # end marker
    time.sleep(1.0)
    s.close(linger=1000)
    ctx.term()


def run_raw(size: int, n: int, curve: bool) -> float:
    """Messages per second received."""
    ctx = zmq.Context()
    r = ctx.socket(zmq.PULL)
    keys = None
    if curve:
        spub, ssec = zmq.curve_keypair()
        cpub, csec = zmq.curve_keypair()
        r.curve_publickey, r.curve_secretkey, r.curve_server = spub, ssec, True
        keys = (cpub, csec, spub)
    port = r.bind_to_random_port("tcp://127.0.0.1")
    p = mp.get_context("spawn").Process(target=_raw_sender, args=(port, size, n, keys))
    p.start()
    r.recv(copy=False)
    t0 = time.perf_counter()
    got = 1
    while True:
        m = r.recv(copy=False)
        if len(m) == 0:
            break
        got += 1
    dt = time.perf_counter() - t0
    p.join()
    r.close(0)
    ctx.term()
    assert got == n, f"raw: {got} of {n}"
    return (got - 1) / dt


# --------------------------------------------------------------------------- ours


def _info(frame_len: int) -> dict[str, Any]:
    from diffstream.live.accounting import unseen_info

    info = unseen_info("jpeg-rate", "jpeg", "rate", 1.0, 0.2)
    info.update(budget_bits=8 * frame_len, payload_bytes=frame_len, header_bytes=60,
                wire_bytes=frame_len + 40, frame_len=frame_len)
    return info


def _our_sender(port: int, size: int, n: int, keydir: str | None, hwm: int) -> None:
    from diffstream.live import protocol as P
    from diffstream.live.security import load_sender_keys, start_authenticator
    from diffstream.live.sockets import SocketSettings, sender_socket
    from diffstream.transport.wire import FrameHeader, pack_frame

    ctx = zmq.Context()
    keys = load_sender_keys(Path(keydir) / "sender") if keydir else None
    auth = start_authenticator(ctx, keys) if keys else None
    settings = SocketSettings(hwm=hwm, max_frame_bytes=max(16 << 20, 2 * size))
    s = sender_socket(ctx, settings, keys)
    s.bind(f"tcp://127.0.0.1:{port}")
    peer = s.recv_multipart()[0]  # the receiver's HELLO: its routing id
    payload = os.urandom(size)
    side = (512, 512) if size > 100_000 else (64, 64)
    session = 12345
    for seq in range(n):
        header = FrameHeader(seq=seq, arm="jpeg-rate", codec="jpeg", budget_bits=8 * size,
                             capture_s=seq / 30, send_s=seq / 30 + 0.001, shape=side,
                             meta={"q": 50})
        frame = pack_frame(header, payload)
        info = _info(len(frame))
        parts = P.encode(P.Kind.FRAME, session, seq, time.monotonic(), info, frame)
        P.send_parts(s, [peer, *parts], copy=size < 65536)  # as the live sender does
    s.send_multipart([peer, *P.encode(P.Kind.END, session, 0, 0.0, {"last_seq": n - 1})])
    time.sleep(1.0)
    s.close(linger=1000)
    if auth is not None:
        auth.stop()
    ctx.term()


def run_ours(size: int, n: int, keydir: str | None, hwm: int = 32) -> float:
    from diffstream.live import protocol as P
    from diffstream.live.replay import SeqWindow
    from diffstream.live.security import load_receiver_keys
    from diffstream.live.sockets import SocketSettings, receiver_socket
    from diffstream.transport.wire import unpack_frame

    ctx = zmq.Context()
    keys = load_receiver_keys(Path(keydir) / "receiver") if keydir else None
    settings = SocketSettings(hwm=hwm, max_frame_bytes=max(16 << 20, 2 * size))
    r = receiver_socket(ctx, settings, keys, b"bench-rx")
    with _free_port() as port:
        pass
    p = mp.get_context("spawn").Process(target=_our_sender, args=(port, size, n, keydir, hwm))
    p.start()
    r.connect(f"tcp://127.0.0.1:{port}")
    hello = P.encode(P.Kind.HELLO, 1, 0, time.monotonic(), {"name": "bench", "proto": 1})
    while True:  # IMMEDIATE: nothing is queued until the connection is up
        try:
            r.send_multipart(hello, flags=zmq.NOBLOCK)
            break
        except zmq.Again:
            time.sleep(0.01)
    window = SeqWindow(1024, 10**6)
    got = 0
    t0 = 0.0
    while True:
        parts, total = P.recv_parts(r)
        msg = P.decode(parts, allowed=P.TO_RECEIVER, max_data_bytes=settings.max_frame_bytes)
        if msg.kind is P.Kind.END:
            break
        if window.check(msg.seq) != "new":
            raise AssertionError("replay window refused a fresh frame")
        window.accept(msg.seq)
        unpack_frame(msg.data)  # header + payload CRC verified
        got += 1
        if got == 1:
            t0 = time.perf_counter()
    dt = time.perf_counter() - t0
    p.join()
    r.close(0)
    ctx.term()
    assert got == n, f"ours: {got} of {n}"
    return (got - 1) / dt


class _free_port:  # noqa: N801 - a tiny context manager
    def __enter__(self) -> int:
        import socket

        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        return int(self.s.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.s.close()


# --------------------------------------------------------------------------- breakdown


def breakdown(size: int, reps: int) -> dict[str, float]:
    """Microseconds per frame of each framing step, in this process (no sockets)."""
    from diffstream.live import protocol as P
    from diffstream.live.replay import SeqWindow
    from diffstream.transport.checksum import IMPLEMENTATION, crc32
    from diffstream.transport.wire import FrameHeader, pack_frame, unpack_frame

    payload = os.urandom(size)
    side = (512, 512) if size > 100_000 else (64, 64)

    def header(seq: int) -> FrameHeader:
        return FrameHeader(seq=seq, arm="jpeg-rate", codec="jpeg", budget_bits=8 * size,
                           capture_s=seq / 30, send_s=seq / 30, shape=side, meta={"q": 50})

    frame = pack_frame(header(0), payload)
    parts = P.encode(P.Kind.FRAME, 1, 0, 0.0, _info(len(frame)), frame)
    window = SeqWindow(1024, 10**9)
    steps = {
        "send: wire frame (header, CRC, copy)": lambda i: pack_frame(header(i), payload),
        "send: envelope (head + record body)":
            lambda i: P.encode(P.Kind.FRAME, 1, i, 0.0, _info(len(frame)), frame),
        "recv: envelope checks": lambda i: P.decode(parts, allowed=P.TO_RECEIVER,
                                                    max_data_bytes=1 << 30),
        "recv: replay window": lambda i: (window.check(i), window.accept(i)),
        "recv: wire frame verify (header, copy, CRC)": lambda i: unpack_frame(frame),
        f"  of which payload CRC-32 ({IMPLEMENTATION}, each side)": lambda i: crc32(payload),
    }
    out = {}
    for name, fn in steps.items():
        t0 = time.perf_counter()
        for i in range(reps):
            fn(i)
        out[name] = (time.perf_counter() - t0) / reps * 1e6
    return out


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=3, help="alternating trials (median shown)")
    ap.add_argument("--quick", action="store_true", help="a tenth of the frames, one trial")
    ap.add_argument("--sizes", default=",".join(SIZES), help="subset, e.g. 512x512")
    ap.add_argument("--curve", choices=("both", "off", "on"), default="both")
    ap.add_argument("--hwm", type=int, default=32, help="our HWM (live default 32)")
    args = ap.parse_args(argv)
    trials = 1 if args.quick else args.trials
    from diffstream.live.security import create_keys

    tmp = tempfile.TemporaryDirectory(prefix="bench-transport-")
    create_keys(Path(tmp.name))
    rows = []
    for name in args.sizes.split(","):
        size = SIZES[name]
        n = COUNTS[name] // (10 if args.quick else 1)
        for curve in {"both": (False, True), "off": (False,), "on": (True,)}[args.curve]:
            raw, ours = [], []
            for _ in range(trials):
                raw.append(run_raw(size, n, curve))
                ours.append(run_ours(size, n, tmp.name if curve else None, args.hwm))
            r, o = statistics.median(raw), statistics.median(ours)
            rows.append((name, "on" if curve else "off", n, r, o))
            print(f"  {name} CURVE {'on ' if curve else 'off'}: raw {r:8.0f}/s  ours "
                  f"{o:8.0f}/s  ({trials} trials of {n} frames)", file=sys.stderr, flush=True)
    print()
    print(f"{'payload':<8} {'CURVE':<5} {'frames':>6}  {'raw frames/s':>12} {'raw MB/s':>9}  "
          f"{'ours frames/s':>13} {'ours MB/s':>9}  {'framing cost':>12}")
    for name, curve, n, r, o in rows:
        mb = SIZES[name] / 1e6
        cost = 1.0 - o / r
        print(f"{name:<8} {curve:<5} {n:>6}  {r:>12.0f} {r * mb:>9.1f}  {o:>13.0f} "
              f"{o * mb:>9.1f}  {cost:>11.1%}")
    print("\nframing cost = 1 - ours / raw (same payload bytes, same run); target <= 10 %")
    print("\nwhere the framing time goes (us per frame, one process, no sockets):")
    names = args.sizes.split(",")
    costs = {name: breakdown(SIZES[name], 2000 if SIZES[name] < 100_000 else 200)
             for name in names}
    print(f"{'step':<46}" + "".join(f"{name:>10}" for name in names))
    for step in costs[names[0]]:
        print(f"{step:<46}" + "".join(f"{costs[name][step]:>10.1f}" for name in names))
    tmp.cleanup()
    print(f"\nmax framing cost: {max(1.0 - o / r for *_, r, o in rows):.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
