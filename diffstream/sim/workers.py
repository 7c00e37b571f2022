"""Sender and receiver worker processes: ``python -m diffstream.sim.workers ROLE ...``.

Thin adapters: the sender worker runs ``pipeline.encoder.FrameEncoder`` and the receiver
worker ``pipeline.receiver_core.ReceiverCore`` (the same code the live sender and receiver
call directly) behind msgpack messages from the coordinator. They are separate OS processes
so codec work on both sides runs concurrently and a crash in one is reported, not fatal to
the run.

The receiver never dies on a bad message: a message whose arm or seq does not check out is
counted and dropped, and the core turns any failure on a frame into an error outcome.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from dataclasses import asdict
from typing import Any

import zmq

from diffstream.pipeline.encoder import FrameEncoder
from diffstream.pipeline.receiver_core import ArrivedFrame, ReceiverCore
from diffstream.scenario.schema import Scenario
from diffstream.sim.messages import dumps, loads
from diffstream.sim.secure import join

log = logging.getLogger("diffstream.worker")

# the coordinator; checked while waiting for messages. Its pid comes in the environment:
# a coordinator killed while we were still importing has already made getppid() 1
PARENT = int(os.environ.get("DIFFSTREAM_COORDINATOR_PID") or os.getppid())


# --------------------------------------------------------------------------- sender
class SenderWorker:
    """``{"op": "arm"|"encode", ...}`` messages onto the shared encoder."""

    def __init__(self, scenario: Scenario, scenario_dir: str) -> None:
        self.encoder = FrameEncoder(scenario, scenario_dir)
        self.content = self.encoder.content

    def handle(self, msg: dict[str, Any]) -> dict[str, Any]:
        op = msg["op"]
        if op == "arm":
            info = self.encoder.open_arm(msg["arm"], msg["codec"], msg.get("options", {}),
                                         msg.get("calibrate", True),
                                         int(msg.get("motion_ages", 0)))
            out = asdict(info)
            out["rq"] = None if info.rq is None else [list(info.rq[0]), list(info.rq[1])]
            return out
        if op == "encode":
            return asdict(self.encoder.encode(msg["arm"], int(msg["seq"]),
                                              int(msg["budget_bits"]), float(msg["capture_s"]),
                                              float(msg["start_s"])))
        raise ValueError(f"sender: unknown op {op!r}")


# --------------------------------------------------------------------------- receiver
class ReceiverWorker:
    """``{"op": "frame", ...}`` messages onto the shared receiver core; results as dicts."""

    def __init__(self, scenario: Scenario, scenario_dir: str) -> None:
        self.core = ReceiverCore(scenario, scenario_dir)
        self.content = self.core.content
        self.shape = self.core.shape
        self.bad_messages = 0

    @property
    def codec(self) -> Any:
        return self.core.codec

    @property
    def arm(self) -> str:
        return self.core.arm

    @property
    def malformed(self) -> int:
        return self.core.malformed + self.bad_messages

    def on_arm(self, msg: dict[str, Any]) -> None:
        self.core.open_arm(msg["arm"], msg["codec"], msg.get("options", {}))
        self.bad_messages = 0

    def on_frame(self, msg: dict[str, Any]) -> list[dict[str, Any]]:
        """Handle one frame message; returns the result records it completes."""
        arm, seq = msg.get("arm"), msg.get("seq")
        if not isinstance(arm, str) or type(seq) is not int or not 0 <= seq < 2**32:
            self.bad_messages += 1
            log.warning("dropped a frame message with a bad arm/seq: %r/%r", arm, seq)
            return []
        deadline = msg.get("deadline_s")
        # fields of the wrong type fail inside the core's guard: an error outcome, counted
        frame_len: Any = msg.get("frame_len")
        f = ArrivedFrame(seq=seq, arm=arm, frame_len=frame_len, chunks=msg.get("chunks") or [],
                         deadline_s=float(deadline) if isinstance(deadline, int | float)
                         else None)
        return [self._result(s, o) for s, o in self.core.on_frame(f)]

    def flush(self) -> list[dict[str, Any]]:
        return [self._result(s, o) for s, o in self.core.flush()]

    def _result(self, seq: int, outcome: Any) -> dict[str, Any]:
        return {"op": "result", "arm": self.core.arm, "seq": seq, **outcome.to_dict()}


# --------------------------------------------------------------------------- main loops
class Orphaned(RuntimeError):
    """The coordinator that started this worker is gone (e.g. killed with SIGKILL)."""


def _recv(sock: zmq.Socket, parent: int) -> bytes:
    """Receive, waking every second to exit if the parent died: a worker must never outlive
    its coordinator (a SIGKILL gives the coordinator no chance to say bye)."""
    while not sock.poll(1000):
        if os.getppid() != parent:
            raise Orphaned(f"parent {parent} exited")
    return sock.recv()


def _hello(sock: zmq.Socket, *, reply: bool) -> tuple[Scenario, str]:
    msg = loads(_recv(sock, PARENT))
    if msg["op"] != "hello":
        raise RuntimeError(f"expected hello, got {msg['op']!r}")
    scenario = Scenario.model_validate(msg["scenario"])
    return scenario, str(msg["scenario_dir"])


def run_sender(endpoint: str) -> int:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REP)
    sock.setsockopt(zmq.LINGER, 0)
    join(sock)  # tcp: CURVE with the coordinator's per-run key
    sock.connect(endpoint)
    scenario, sdir = _hello(sock, reply=True)
    worker = SenderWorker(scenario, sdir)
    sock.send(dumps({"op": "ok", "pid": os.getpid()}))
    while True:
        msg = loads(_recv(sock, PARENT))
        if msg["op"] == "bye":
            sock.send(dumps({"op": "ok"}))
            return 0
        try:
            reply = worker.handle(msg)
            reply["op"] = "ok"
        except Exception as exc:
            log.error("sender failed on %s\n%s", msg.get("op"), traceback.format_exc())
            reply = {"op": "error", "message": f"{type(exc).__name__}: {exc}"}
        sock.send(dumps(reply))


def run_receiver(inbound: str, outbound: str) -> int:
    ctx = zmq.Context.instance()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    join(pull)
    pull.connect(inbound)
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 5000)
    join(push)
    push.connect(outbound)
    scenario, sdir = _hello(pull, reply=False)
    worker = ReceiverWorker(scenario, sdir)
    push.send(dumps({"op": "ready", "pid": os.getpid()}))
    log.info("receiver ready")
    while True:
        raw = _recv(pull, PARENT)
        try:
            msg = loads(raw)
        except ValueError as exc:
            worker.bad_messages += 1
            log.warning("dropped a malformed control message: %s", exc)
            continue
        op = msg["op"]
        try:
            if op == "frame":
                for res in worker.on_frame(msg):
                    push.send(dumps(res))
            elif op == "arm":
                worker.on_arm(msg)
            elif op == "end_arm":
                for res in worker.flush():
                    push.send(dumps(res))
                push.send(dumps({"op": "arm_done", "arm": worker.arm,
                                 "malformed": worker.malformed}))
            elif op == "bye":
                return 0
            else:
                worker.bad_messages += 1
                log.warning("dropped a message with unknown op %r", op)
        except Exception as exc:
            # configuration problems (unknown codec options...) are fatal for the arm
            log.error("receiver failed on %s\n%s", op, traceback.format_exc())
            push.send(dumps({"op": "fatal", "message": f"{type(exc).__name__}: {exc}"}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m diffstream.sim.workers")
    sub = p.add_subparsers(dest="role", required=True)
    s = sub.add_parser("sender")
    s.add_argument("--endpoint", required=True)
    r = sub.add_parser("receiver")
    r.add_argument("--inbound", required=True)
    r.add_argument("--outbound", required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s {args.role}[%(process)d] %(levelname)s %(message)s")
    import torch

    torch.set_num_threads(1)  # two workers share the machine's cores
    try:
        if args.role == "sender":
            return run_sender(args.endpoint)
        return run_receiver(args.inbound, args.outbound)
    except Orphaned as exc:
        log.warning("exiting: %s", exc)
        return 3


if __name__ == "__main__":
    raise SystemExit(main())
