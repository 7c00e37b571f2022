"""Sender and receiver worker processes: ``python -m diffstream.transport.worker ROLE ...``.

The sender runs the codec's encoder and packs wire frames; the receiver reassembles the
packets the simulated link delivered, unpacks and decodes the frame, decides what the viewer
sees (playout model) and scores it. They are separate OS processes so codec work on both
sides runs concurrently and a crash in one is reported, not fatal to the run.

The receiver never dies on a bad frame: every frame is handled inside a guard that turns any
failure into a counted, logged error result.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
from typing import Any

import numpy as np
import zmq

from diffstream.codecs import CodecError, create_codec
from diffstream.codecs.base import Encoded, GenerativeCodec, ProgressiveCodec
from diffstream.compute import ComputeModel
from diffstream.config import Scenario
from diffstream.content import SPEC_KEYS, FrameSource, GeneratedSequence, make_source
from diffstream.playout import InteractivePlayout, PlaybackBuffer, Slot
from diffstream.policy.base import RateQualityModel
from diffstream.transport.messages import dumps, loads
from diffstream.transport.packets import reassemble
from diffstream.transport.secure import join
from diffstream.transport.wire import FrameHeader, WireError, header_size, pack_frame, unpack_frame

log = logging.getLogger("diffstream.worker")

# the coordinator; checked while waiting for messages. Its pid comes in the environment:
# a coordinator killed while we were still importing has already made getppid() 1
PARENT = int(os.environ.get("DIFFSTREAM_COORDINATOR_PID") or os.getppid())
CALIBRATION_BPP = (0.1, 0.15, 0.25, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)
GREY = 128  # what the viewer sees before the first frame arrives


def _content(scenario: Scenario, scenario_dir: str) -> FrameSource:
    c = scenario.content
    # The schema fills defaults for every source's keys; pass on only this source's.
    spec = {k: v for k, v in c.model_dump(exclude_none=True).items() if k in SPEC_KEYS[c.source]}
    if c.source == "generated":
        spec.setdefault("seed", scenario.seed)
    return make_source(spec, scenario.frame.width, scenario.frame.height, scenario_dir)


# --------------------------------------------------------------------------- sender
class SenderWorker:
    def __init__(self, scenario: Scenario, scenario_dir: str) -> None:
        self.scenario = scenario
        self.content = _content(scenario, scenario_dir)
        self.compute = ComputeModel(scenario.compute)
        self.codecs: dict[str, Any] = {}
        self.codec_names: dict[str, str] = {}
        self.shape = (scenario.frame.height, scenario.frame.width)

    def handle(self, msg: dict[str, Any]) -> dict[str, Any]:
        op = msg["op"]
        if op == "arm":
            return self._arm(msg)
        if op == "encode":
            return self._encode(msg)
        raise ValueError(f"sender: unknown op {op!r}")

    def _arm(self, msg: dict[str, Any]) -> dict[str, Any]:
        arm, name = msg["arm"], msg["codec"]
        codec = create_codec(name, **msg.get("options", {}))
        self.codecs[arm] = codec
        self.codec_names[arm] = name
        rq = self._calibrate(codec) if msg.get("calibrate", True) else None
        return {
            "min_bits": int(codec.min_bits(self.shape)),
            "progressive": bool(codec.progressive),
            "rq": None if rq is None else [list(rq.bpp), list(rq.quality_db)],
            "header_bytes": self._typical_header(arm, name),
        }

    def _typical_header(self, arm: str, codec: str) -> int:
        h = FrameHeader(seq=0, arm=arm, codec=codec, budget_bits=10**6, payload_len=0,
                        payload_crc32=0, capture_s=0.0, send_s=0.0, shape=self.shape,
                        skipped=False, steps=1, meta={"q": 50, "probes": 7})
        return header_size(h)

    def _calibrate(self, codec: Any) -> RateQualityModel | None:
        """Measure the codec's rate-quality curve on a few frames spread over the content
        (for MPC's quality model). Returns None when fewer than two budgets decode."""
        from diffstream.metrics.quality import QualityScorer

        scorer = QualityScorer()
        metric = "psnr_db" if self.scenario.qoe.metric == "psnr" else "ssim_db"
        n = len(self.content)
        ks = sorted({0, n // 3, (2 * n) // 3})
        frames = [self.content.frame(i) for i in ks]
        pixels = self.shape[0] * self.shape[1]
        points: dict[float, list[tuple[float, float]]] = {}
        for bpp in CALIBRATION_BPP:
            if bpp > self.scenario.max_bpp:
                break
            for k, img in zip(ks, frames, strict=True):
                enc = self._code(codec, k, int(bpp * pixels))
                if enc.skipped:
                    continue
                out = codec.decode(enc.payload, enc.meta, self.shape)
                q = scorer.score(img, out)[metric]
                points.setdefault(bpp, []).append((enc.bits / pixels, q))
        xs, ys = [], []
        for bpp in sorted(points):
            pts = points[bpp]
            if len(pts) < len(frames):
                continue  # only budgets that fit every calibration frame
            x = float(np.mean([p[0] for p in pts]))
            if xs and x <= xs[-1]:
                continue
            xs.append(x)
            ys.append(float(np.mean([p[1] for p in pts])))
        if len(xs) < 2:
            return None
        return RateQualityModel(tuple(xs), tuple(ys))

    def _code(self, codec: Any, k: int, budget_bits: int) -> Encoded:
        """Frame k under the budget: generated from its request by a generative codec,
        otherwise the content's image encoded (a classic codec on generated content codes
        the reference sample: the Cascade baseline)."""
        if isinstance(self.content, GeneratedSequence) and isinstance(codec, GenerativeCodec):
            return codec.generate(self.content.request(k), budget_bits, self.shape)
        return codec.encode(self.content.frame(k), budget_bits)

    def _encode(self, msg: dict[str, Any]) -> dict[str, Any]:
        arm, seq = msg["arm"], int(msg["seq"])
        codec, name = self.codecs[arm], self.codec_names[arm]
        t0 = time.perf_counter()
        enc = self._code(codec, seq, int(msg["budget_bits"]))
        measured = time.perf_counter() - t0
        charged = self.compute.encode_s(name, measured, enc.steps)
        send_s = float(msg["start_s"]) + charged
        header = FrameHeader(seq=seq, arm=arm, codec=name, budget_bits=int(msg["budget_bits"]),
                             payload_len=0, payload_crc32=0, capture_s=float(msg["capture_s"]),
                             send_s=send_s, shape=self.shape, skipped=enc.skipped,
                             steps=int(enc.steps), meta=enc.meta)
        frame = pack_frame(header, enc.payload)
        if enc.skipped:
            log.info("arm %s frame %d skipped: %s", arm, seq, enc.reason)
        return {
            "frame": frame,
            "payload_bytes": len(enc.payload),
            "header_bytes": len(frame) - len(enc.payload),
            "skipped": enc.skipped,
            "reason": enc.reason,
            "steps": int(enc.steps),
            "encode_ms": measured * 1000.0,
            "encode_charged_s": charged,
            "send_s": send_s,
        }


# --------------------------------------------------------------------------- receiver
class ReceiverWorker:
    def __init__(self, scenario: Scenario, scenario_dir: str) -> None:
        from diffstream.metrics.quality import QualityScorer

        self.scenario = scenario
        self.content = _content(scenario, scenario_dir)
        self.compute = ComputeModel(scenario.compute)
        self.scorer = QualityScorer()
        self.shape = (scenario.frame.height, scenario.frame.width)
        self.malformed = 0
        self._reset_arm("", "", {})

    def _reset_arm(self, arm: str, codec: str, options: dict[str, Any]) -> None:
        self.arm, self.codec_name = arm, codec
        self.codec = create_codec(codec, **options) if codec else None
        self.last_image = np.full((*self.shape, 3), GREY, np.uint8)
        self.interactive = self.scenario.mode.kind == "interactive"
        self.playout: InteractivePlayout | PlaybackBuffer
        if self.interactive:
            self.playout = InteractivePlayout()
        else:
            self.playout = PlaybackBuffer(self.scenario.frame.fps, self.scenario.mode.startup_s)
        self.pending: list[dict[str, Any]] = []  # decoded, waiting for a playback decision
        self.malformed = 0

    def on_arm(self, msg: dict[str, Any]) -> None:
        self._reset_arm(msg["arm"], msg["codec"], msg.get("options", {}))

    def on_frame(self, msg: dict[str, Any]) -> list[dict[str, Any]]:
        """Handle one frame message; returns the result records it completes."""
        arm, seq = msg.get("arm"), msg.get("seq")
        if not isinstance(arm, str) or type(seq) is not int or not 0 <= seq < 2**32:
            self.malformed += 1
            log.warning("dropped a frame message with a bad arm/seq: %r/%r", arm, seq)
            return []
        if arm != self.arm:
            self.malformed += 1
            log.warning("frame for arm %r while %r is active: dropped", arm, self.arm)
            return []
        res: dict[str, Any] = {"op": "result", "arm": arm, "seq": seq, "decoded": False,
                               "partial": False, "prefix_step": None, "decode_ms": 0.0,
                               "decode_charged_s": 0.0, "decode_done_s": None, "error": ""}
        image = None
        try:
            image = self._decode(msg, res)
        except (WireError, CodecError, ValueError, KeyError, TypeError) as exc:
            self.malformed += 1
            res["error"] = f"{type(exc).__name__}: {exc}"
            log.warning("arm %s frame %d: %s", arm, seq, res["error"])
        except Exception as exc:  # a decoder bug must not take the receiver down
            self.malformed += 1
            res["error"] = f"{type(exc).__name__}: {exc}"
            log.error("arm %s frame %d: unexpected\n%s", arm, seq, traceback.format_exc())
        res["_image"] = image
        deadline = msg.get("deadline_s")
        res["_deadline"] = float(deadline) if isinstance(deadline, int | float) else None
        if self.interactive and res["_deadline"] is None:
            self.malformed += 1
            log.warning("arm %s frame %d: interactive frame without a deadline", arm, seq)
            return []
        return self._decide([res])

    def _decode(self, msg: dict[str, Any], res: dict[str, Any]) -> np.ndarray | None:
        assert self.codec is not None
        frame_len = int(msg["frame_len"])
        chunks = msg.get("chunks") or []
        deadline = msg.get("deadline_s")
        usable = chunks
        if self.codec.progressive and deadline is not None:
            # a frame cut off by its deadline still shows the prefix that arrived in time
            est = self.compute.decode_s(self.codec_name, 0.0)
            usable = [c for c in chunks if float(c[2]) <= float(deadline) - est]
        if not usable:
            return None
        data, complete = reassemble(frame_len, ((int(o), bytes(b)) for o, b, _ in usable))
        if not data or (not complete and not self.codec.progressive):
            return None  # packet loss, not a malformed frame: nothing to decode
        arrived = max(float(c[2]) for c in usable if int(c[0]) < len(data))
        try:
            frame = unpack_frame(data, allow_prefix=self.codec.progressive)
        except WireError as exc:
            if complete or exc.kind != "truncated":
                raise
            return None  # a prefix that ends inside the header: nothing arrived to decode
        h = frame.header
        if h.seq != res["seq"] or h.arm != self.arm:
            raise ValueError(f"header says arm {h.arm!r} seq {h.seq}, envelope disagrees")
        if tuple(h.shape) != self.shape:
            raise ValueError(f"frame shape {tuple(h.shape)} != scenario shape {self.shape}")
        res["arrived_s"] = arrived  # the frame holds its playback slot even without an image
        if h.skipped:
            return None
        if isinstance(self.codec, ProgressiveCodec):
            res["prefix_step"] = int(self.codec.prefix_steps(frame.payload, h.meta))
            if res["prefix_step"] == 0 and not frame.complete:
                return None  # the prefix holds no whole step yet: late, not malformed
        t0 = time.perf_counter()
        image = self.codec.decode(frame.payload, h.meta, self.shape)
        measured = time.perf_counter() - t0
        if image.shape != (*self.shape, 3):
            raise CodecError(f"decoder returned shape {image.shape}")
        res["decoded"] = True
        res["partial"] = not frame.complete
        res["decode_ms"] = measured * 1000.0
        steps = res["prefix_step"] if res["prefix_step"] is not None else h.steps
        res["decode_charged_s"] = self.compute.decode_s(self.codec_name, measured, steps)
        res["decode_done_s"] = arrived + res["decode_charged_s"]
        return image

    def _decide(self, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        if self.interactive:
            assert isinstance(self.playout, InteractivePlayout)
            for r in results:
                slot = self.playout.on_frame(r["decode_done_s"], float(r["_deadline"]))
                out.append(self._finish(r, slot))
            return out
        assert isinstance(self.playout, PlaybackBuffer)
        for r in results:
            self.pending.append(r)
            ready = r["decode_done_s"] if r["decoded"] else r.get("arrived_s")
            for slot in self.playout.on_frame(ready, showable=bool(r["decoded"])):
                out.append(self._finish(self.pending.pop(0), slot))
        return out

    def flush(self) -> list[dict[str, Any]]:
        if isinstance(self.playout, PlaybackBuffer):
            return [self._finish(self.pending.pop(0), s) for s in self.playout.flush()]
        return []

    def _finish(self, r: dict[str, Any], slot: Slot) -> dict[str, Any]:
        image = r.pop("_image")
        deadline = r.pop("_deadline")
        r.pop("arrived_s", None)
        if slot.shown and image is not None:
            self.last_image = image
        r["shown"] = slot.shown
        r["display_s"] = slot.display_s
        r["stall_s"] = slot.stall_s
        r["stall"] = (not slot.shown) or slot.stall_s > 0
        r["deadline_met"] = slot.shown if deadline is not None else slot.stall_s == 0 and slot.shown
        r.update(self.scorer.score(self.content.frame(int(r["seq"])), self.last_image))
        return r


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
            worker.malformed += 1
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
                worker.malformed += 1
                log.warning("dropped a message with unknown op %r", op)
        except Exception as exc:
            # configuration problems (unknown codec options...) are fatal for the arm
            log.error("receiver failed on %s\n%s", op, traceback.format_exc())
            push.send(dumps({"op": "fatal", "message": f"{type(exc).__name__}: {exc}"}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m diffstream.transport.worker")
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
