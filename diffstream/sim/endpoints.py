"""The coordinator's side of the sender and receiver.

``WorkerEndpoints`` starts the two worker processes and talks to them over ZeroMQ (ipc
sockets in a private temp folder, or tcp on loopback). ``NetworkOnlyEndpoints`` replaces the
codec with fixed-size payloads in-process, for network-only runs (benchmarks, sweeps of
policies, fast tests): the wire format and the link are the same, only the codec and the
quality scoring are gone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import zmq

from diffstream.errors import DiffstreamError
from diffstream.pipeline.encoder import ArmInfo
from diffstream.pipeline.receiver_core import ArrivedFrame, ReceiverCore
from diffstream.pipeline.records import Outcome
from diffstream.plugins import child_pythonpath
from diffstream.scenario.schema import Scenario
from diffstream.sim.messages import dumps, loads
from diffstream.sim.secure import ENV_KEY, RunKey, serve
from diffstream.transport.wire import FrameHeader, arm_tag, header_size, pack_frame


class WorkerError(DiffstreamError):
    """A worker process failed or stopped answering."""


class Endpoints(Protocol):
    def start_arm(self, arm: str, codec: str, options: dict[str, Any],
                  calibrate: bool, motion_ages: int = 0) -> ArmInfo: ...

    def encode(self, arm: str, seq: int, budget_bits: int, capture_s: float,
               start_s: float) -> dict[str, Any]: ...

    def deliver(self, msg: dict[str, Any]) -> None: ...

    def poll_results(self) -> list[dict[str, Any]]: ...

    def finish_arm(self, arm: str) -> tuple[list[dict[str, Any]], int]: ...

    def close(self) -> None: ...


class WorkerEndpoints:
    """Sender and receiver as separate OS processes (``diffstream.sim.workers``)."""

    def __init__(self, scenario: Scenario, scenario_dir: Path, *, transport: str = "ipc",
                 log_path: Path | None = None, timeout_s: float = 600.0) -> None:
        self.timeout_s = timeout_s
        self.ctx = zmq.Context()
        self._tmp = tempfile.TemporaryDirectory(prefix="diffstream-")
        self.req = self.ctx.socket(zmq.REQ)
        self.push = self.ctx.socket(zmq.PUSH)
        self.pull = self.ctx.socket(zmq.PULL)
        for s in (self.req, self.push, self.pull):
            s.setsockopt(zmq.LINGER, 0)
        if transport == "ipc":
            base = self._tmp.name
            eps = [f"ipc://{base}/sender", f"ipc://{base}/rx-in", f"ipc://{base}/rx-out"]
            for sock, ep in zip((self.req, self.push, self.pull), eps, strict=True):
                sock.bind(ep)
        elif transport == "tcp":
            eps = []
            key = RunKey.new()  # any local process can reach these ports: see secure.py
            for sock in (self.req, self.push, self.pull):
                serve(sock, key)
                port = sock.bind_to_random_port("tcp://127.0.0.1")
                eps.append(f"tcp://127.0.0.1:{port}")
        else:
            raise ValueError(f"transport must be 'ipc' or 'tcp', not {transport!r}")
        self._log = open(log_path or os.devnull, "ab")  # noqa: SIM115 - lives with the workers
        # PYTHONPATH: the workers import what this process can (a plugin codec found on its
        # sys.path: the script's folder, the scenario's folder, PYTHONPATH; docs/plugins.md)
        env = dict(os.environ, PYTHONUNBUFFERED="1", DIFFSTREAM_COORDINATOR_PID=str(os.getpid()),
                   PYTHONPATH=child_pythonpath())
        env.pop(ENV_KEY, None)
        if transport == "tcp":
            env.update(key.env())
        py = [sys.executable, "-m", "diffstream.sim.workers"]
        self.procs = {
            "sender": subprocess.Popen([*py, "sender", "--endpoint", eps[0]],
                                       stdout=self._log, stderr=self._log, env=env),
            "receiver": subprocess.Popen([*py, "receiver", "--inbound", eps[1],
                                          "--outbound", eps[2]],
                                         stdout=self._log, stderr=self._log, env=env),
        }
        self.log_path = log_path
        hello = {"op": "hello", "scenario": scenario.model_dump(mode="json"),
                 "scenario_dir": str(scenario_dir)}
        try:
            self._call(hello)
            self.push.send(dumps(hello))
            ready = self._recv(self.pull, "receiver")
            if ready["op"] != "ready":
                raise WorkerError(f"receiver did not start: {ready}")
        except BaseException:  # Ctrl-C, SIGTERM or a failed start: no worker may outlive us
            self.close(grace_s=0.0)
            raise
        self._results: list[dict[str, Any]] = []

    # -- plumbing ------------------------------------------------------------------
    def _check_alive(self) -> None:
        for role, p in self.procs.items():
            if p.poll() is not None:
                where = f"; see {self.log_path}" if self.log_path else ""
                raise WorkerError(f"the {role} process exited with code {p.returncode}"
                                  f"{self._last_log_line()}{where}")

    def _last_log_line(self) -> str:
        """The worker's last words (usually the exception), to put in the error message."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        self._log.flush()
        lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        return f": {lines[-1].strip()}" if lines else ""

    def _recv(self, sock: zmq.Socket, role: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout_s
        while not sock.poll(500):
            self._check_alive()
            if time.monotonic() > deadline:
                raise WorkerError(f"the {role} process did not answer within {self.timeout_s} s")
        return loads(sock.recv())

    def _call(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.req.send(dumps(msg))
        reply = self._recv(self.req, "sender")
        if reply.get("op") == "error":
            raise WorkerError(f"sender: {reply.get('message')}")
        return reply

    # -- Endpoints -------------------------------------------------------------------
    def start_arm(self, arm: str, codec: str, options: dict[str, Any],
                  calibrate: bool, motion_ages: int = 0) -> ArmInfo:
        msg = {"op": "arm", "arm": arm, "codec": codec, "options": options,
               "calibrate": calibrate, "motion_ages": motion_ages}
        reply = self._call(msg)
        self.push.send(dumps(msg))
        rq, steps = reply.get("rq"), reply.get("rq_steps")
        return ArmInfo(int(reply["min_bits"]), bool(reply["progressive"]),
                       None if rq is None else (tuple(rq[0]), tuple(rq[1])),
                       int(reply["header_bytes"]),
                       rq_steps=None if steps is None else tuple(steps),
                       floor_source=str(reply.get("floor_source", "codec")),
                       motion_mse=None if reply.get("motion_mse") is None
                       else tuple(tuple(float(x) for x in row) for row in reply["motion_mse"]),
                       frame_floors=None if reply.get("frame_floors") is None
                       else tuple(int(x) for x in reply["frame_floors"]))

    def encode(self, arm: str, seq: int, budget_bits: int, capture_s: float,
               start_s: float) -> dict[str, Any]:
        return self._call({"op": "encode", "arm": arm, "seq": seq, "budget_bits": budget_bits,
                           "capture_s": capture_s, "start_s": start_s})

    def deliver(self, msg: dict[str, Any]) -> None:
        self.push.send(dumps(msg))

    def poll_results(self) -> list[dict[str, Any]]:
        out = []
        while self.pull.poll(0):
            msg = loads(self.pull.recv())
            if msg["op"] == "fatal":
                raise WorkerError(f"receiver: {msg.get('message')}")
            out.append(msg)
        return out

    def finish_arm(self, arm: str) -> tuple[list[dict[str, Any]], int]:
        self.push.send(dumps({"op": "end_arm", "arm": arm}))
        results = []
        while True:
            msg = self._recv(self.pull, "receiver")
            if msg["op"] == "fatal":
                raise WorkerError(f"receiver: {msg.get('message')}")
            if msg["op"] == "arm_done":
                return results, int(msg.get("malformed", 0))
            results.append(msg)

    def close(self, grace_s: float = 5.0) -> None:
        """Say bye and wait up to ``grace_s`` per worker, then kill it; remove the folder."""
        try:
            if grace_s > 0 and self.procs["sender"].poll() is None:
                self.req.send(dumps({"op": "bye"}))
                self.req.poll(2000)
            if grace_s > 0 and self.procs["receiver"].poll() is None:
                # NOBLOCK: a receiver that never connected must not hang the cleanup
                self.push.send(dumps({"op": "bye"}), flags=zmq.NOBLOCK)
        except zmq.ZMQError:
            pass
        for p in self.procs.values():
            try:
                p.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.ctx.destroy(linger=0)
        self._log.close()
        self._tmp.cleanup()


class NetworkOnlyEndpoints:
    """Fixed-size payloads, in-process: network results without codec or quality work.

    The payload is ``payload_bytes`` long whatever the budget (``None``: exactly the budget),
    so the same wire frames and packets cross the same link model, and the receiver's
    playout decisions come from the same ``ReceiverCore`` (without a codec or scoring).
    """

    def __init__(self, scenario: Scenario, payload_bytes: int | None = None,
                 on_result: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.scenario = scenario
        self.payload_bytes = payload_bytes
        self.shape = (scenario.frame.height, scenario.frame.width)
        self._results: list[dict[str, Any]] = []
        self._core = ReceiverCore(scenario, network_only=True)
        self._on_result = on_result

    def start_arm(self, arm: str, codec: str, options: dict[str, Any],
                  calibrate: bool, motion_ages: int = 0) -> ArmInfo:
        self._results = []
        self._core.open_arm(arm, "", {})
        h = FrameHeader(seq=0, arm=arm_tag(arm), codec="fixed", budget_bits=0, payload_len=0,
                        payload_crc32=0, capture_s=0.0, send_s=0.0, shape=self.shape,
                        skipped=False, steps=1, meta={})
        return ArmInfo(min_bits=0, progressive=False, rq=None, header_bytes=header_size(h))

    def encode(self, arm: str, seq: int, budget_bits: int, capture_s: float,
               start_s: float) -> dict[str, Any]:
        n = self.payload_bytes if self.payload_bytes is not None else budget_bits // 8
        payload = bytes(n)
        header = FrameHeader(seq=seq, arm=arm_tag(arm), codec="fixed", budget_bits=budget_bits,
                             payload_len=0, payload_crc32=0, capture_s=capture_s, send_s=start_s,
                             shape=self.shape, skipped=False, steps=1, meta={})
        frame = pack_frame(header, payload)
        return {"frame": frame, "payload_bytes": n, "header_bytes": len(frame) - n,
                "skipped": False, "reason": "", "steps": 1, "encode_ms": 0.0,
                "encode_charged_s": 0.0, "send_s": start_s}

    def deliver(self, msg: dict[str, Any]) -> None:
        f = ArrivedFrame(seq=msg["seq"], arm=msg["arm"], frame_len=int(msg["frame_len"]),
                         chunks=msg.get("chunks") or [], deadline_s=msg["deadline_s"])
        self._emit(self._core.on_frame(f))

    def _emit(self, outcomes: list[tuple[int, Outcome]]) -> None:
        for seq, o in outcomes:
            self._results.append({"op": "result", "arm": self._core.arm, "seq": seq,
                                  **o.to_dict()})

    def poll_results(self) -> list[dict[str, Any]]:
        out, self._results = self._results, []
        return out

    def finish_arm(self, arm: str) -> tuple[list[dict[str, Any]], int]:
        self._emit(self._core.flush())
        return self.poll_results(), 0

    def close(self) -> None:
        pass
