"""Test-side peers for the adversarial suite: a scripted sender, and the real live sender and
receiver run in threads of the test process (no 5 s interpreter + torch start per peer)."""

from __future__ import annotations

import io
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
import zmq
from rich.console import Console

from diffstream.live import protocol as P
from diffstream.live.schema import load_live_scenario
from diffstream.sim.workers import SenderWorker

FPS = 20
ARM = "jpeg-fixed"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def live_scenario(tmp: Path, duration_s: float = 3.0, *, name: str = "advlive",
                  output_dir: str = "out", **live: Any) -> Path:
    data: dict[str, Any] = {
        "name": name, "seed": 1, "duration_s": duration_s,
        "frame": {"width": 64, "height": 64, "fps": FPS},
        "content": {"source": "skimage", "shot_frames": 10},
        "mode": {"kind": "interactive", "target_latency_ms": 300},
        "trace": {"kind": "constant", "mbps": 4.0, "duration_s": 20},
        "link": {"share": 0.1, "delay_ms": 20},
        "arms": [{"codec": "jpeg", "policy": {"kind": "fixed", "bpp": 1.0}}],
        "output": {"dir": output_dir, "plots": False},
        "live": {"heartbeat_ms": 300, "report_timeout_s": 5.0, **live},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


def console_text(console: Console) -> str:
    f = console.file
    return f.getvalue() if isinstance(f, io.StringIO) else ""


@dataclass
class Background:
    """A callable run in a daemon thread; ``result`` is its return value (or exception)."""

    thread: threading.Thread
    box: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(cls, fn: Any, name: str) -> Background:
        box: dict[str, Any] = {}

        def go() -> None:
            try:
                box["result"] = fn()
            except BaseException as exc:  # noqa: BLE001 - reported to the test
                box["error"] = exc

        t = threading.Thread(target=go, name=name, daemon=True)
        t.start()
        return cls(t, box)

    def join(self, timeout: float) -> Any:
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise TimeoutError("still running")
        if "error" in self.box:
            raise self.box["error"]
        return self.box.get("result")


def receiver(connect: str, out_base: Path | None, *, wait_s: float | None = 30.0,
             **opts: Any) -> tuple[Any, Background]:
    """A real ``LiveReceiver`` in a thread (stop it with ``rx.stopping = True``)."""
    from diffstream.live.receiver import LiveReceiver, RecvOptions

    rx = LiveReceiver(RecvOptions(connect=connect, out_base=out_base, wait_s=wait_s,
                                  live_dashboard=False, console=quiet(), **opts))
    return rx, Background.start(rx.run, "receiver")


def sender(scenario: Path, bind: str, out_base: Path, **opts: Any) -> tuple[Any, Background]:
    """A real ``LiveSender`` in a thread."""
    from diffstream.live.sender import LiveSender, SendOptions

    sc, spath = load_live_scenario(scenario)
    tx = LiveSender(sc, spath, SendOptions(bind=bind, out_base=out_base, live_dashboard=False,
                                           console=quiet(), **opts))
    return tx, Background.start(tx.run, "sender")


class FakeSender:
    """A scripted sender on a ROUTER: answers the receiver's HELLO with whatever WELCOME the
    test wants, then sends whatever frames and control messages the test wants."""

    def __init__(self, tmp: Path, **live: Any) -> None:
        self.scenario_path = live_scenario(tmp, duration_s=600.0, **live)
        self.sc, spath = load_live_scenario(self.scenario_path)
        self.worker = SenderWorker(self.sc, str(spath.parent))
        self.worker.handle({"op": "arm", "arm": ARM, "codec": "jpeg", "options": {},
                            "calibrate": False})
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.sock.setsockopt(zmq.SNDTIMEO, 20_000)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.session = 0x5EED
        self.epoch = time.monotonic()
        self.peer = b""
        self.got: list[P.Message] = []

    def welcome_body(self, sent_at: float, now: float, **over: Any) -> dict[str, Any]:
        body = {"stream_id": "advstream", "scenario": self.sc.model_dump(mode="json"),
                "arm": ARM, "epoch": self.epoch, "next_seq": 0, "frames": 10**6,
                "t1": sent_at, "t2": now, "want": [], "shaping": False}
        body.update(over)
        return body

    def handshake(self, timeout_s: float = 60.0, *, wait_ping: bool = True,
                  **welcome: Any) -> None:
        """Answer HELLOs with a WELCOME (and PINGs with PONGs) until the receiver pings."""
        end = time.monotonic() + timeout_s
        welcomed = False
        while time.monotonic() < end:
            msg = self.recv(0.2)
            if msg is None:
                continue
            now = time.monotonic()
            if msg.kind is P.Kind.HELLO:
                self.send(P.encode(P.Kind.WELCOME, self.session, 0, now,
                                   self.welcome_body(msg.sent_at, now, **welcome)))
                welcomed = True
                if not wait_ping:
                    return
            elif msg.kind is P.Kind.PING:
                self.pong(msg)
                if welcomed:
                    return
        raise AssertionError("the receiver never completed the handshake")

    def recv(self, timeout_s: float) -> P.Message | None:
        if not self.sock.poll(int(timeout_s * 1000)):
            return None
        parts = self.sock.recv_multipart()
        self.peer = parts[0]
        try:
            msg = P.decode(parts[1:], allowed=P.TO_SENDER, max_data_bytes=0)
        except P.ProtocolError:
            return None
        self.got.append(msg)
        return msg

    def pong(self, msg: P.Message, session: int | None = None) -> None:
        self.send(P.encode(P.Kind.PONG, self.session if session is None else session, 0,
                           time.monotonic(), {"t1": msg.sent_at, "t2": time.monotonic()}))

    def send(self, parts: list[Any]) -> None:
        # ROUTER_MANDATORY says "host unreachable" for a moment after a full pipe drains
        # (libzmq re-activates it asynchronously): retry, the receiver is still there
        end = time.monotonic() + 20.0
        while True:
            try:
                self.sock.send_multipart([self.peer, *parts])
                return
            except zmq.ZMQError as exc:
                if exc.errno not in (zmq.EHOSTUNREACH, zmq.EAGAIN) or time.monotonic() > end:
                    raise
                time.sleep(0.01)

    def drain(self) -> None:
        while self.sock.poll(0):
            self.sock.recv_multipart()

    def info(self, seq: int, frame: bytes, capture: float) -> dict[str, Any]:
        return {"arm": ARM, "codec": "jpeg", "policy": "fixed", "capture_s": capture,
                "send_s": capture, "deadline_s": capture + 0.3, "budget_bits": 4096,
                "payload_bytes": max(0, len(frame) - 60), "header_bytes": 60,
                "wire_bytes": len(frame) + 40, "packets": 1, "bpp": 0.5, "skipped": False,
                "skip_reason": "", "codec_steps": 1, "encode_ms": 1.0,
                "encode_charged_s": 0.001, "throughput_est_bps": None, "capacity_bps": None,
                "queue_bytes": 0.0, "packets_dropped": 0, "packets_lost": 0,
                "throughput_pred_bps": None, "frame_len": len(frame)}

    def frame(self, seq: int, session: int | None = None) -> list[Any]:
        capture = time.monotonic() - self.epoch
        reply = self.worker.handle({"op": "encode", "arm": ARM, "seq": seq,
                                    "budget_bits": 4096, "capture_s": capture,
                                    "start_s": capture})
        frame = reply["frame"]
        info = self.info(seq, frame, capture)
        info.update(payload_bytes=reply["payload_bytes"], header_bytes=reply["header_bytes"],
                    send_s=reply["send_s"], skipped=reply["skipped"],
                    skip_reason=reply["reason"])
        return P.encode(P.Kind.FRAME, session or self.session, seq, time.monotonic(), info,
                        frame)

    def end(self, last_seq: int) -> None:
        self.send(P.encode(P.Kind.END, self.session, 0, time.monotonic(),
                           {"last_seq": last_seq}))

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()
