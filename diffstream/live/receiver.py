"""``python -m diffstream recv``: receive, decode, play out and score a live stream.

One event loop, one thread. The receiver connects (and keeps reconnecting) to the sender and
says HELLO on every new connection; the sender's WELCOME describes the stream (scenario,
arm, time base) and doubles as the first clock probe. Then, per FRAME:

1. checks: envelope and body (``protocol``), session, replay window (``replay``), sizes;
   anything wrong is dropped and counted by reason, never fatal;
2. frames that never arrived before this one (a gap in seq) are recorded lost, scored
   against what the viewer kept seeing;
3. the shared ``pipeline.receiver_core.ReceiverCore`` (the simulator's receiver too)
   reassembles, unpacks, decodes, applies the interactive playout model (deadline = capture
   + target latency, on the sender's clock through the offset estimate of ``clock``) and
   scores what the viewer saw;
4. the record is written and a REPORT goes back (kept in a ring so a restarted or
   reconnected sender can ask again with NEED).

A restarted receiver with the same ``--out`` continues the stream's log: it reads the log's
tail, records the frames it missed as lost, and answers NEED from the tail.
"""

from __future__ import annotations

import logging
import math
import secrets
import signal
import socket
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
from pydantic import ValidationError
from rich.console import Console

from diffstream.control.feedback import ThroughputEstimator
from diffstream.errors import DiffstreamError, InputError
from diffstream.live import protocol as P
from diffstream.live.accounting import fate, lost_rx, make_record, report_body, unseen_info
from diffstream.live.clock import OffsetEstimator
from diffstream.live.gaps import GapBudget, append_gap, log_idle_s
from diffstream.live.logs import (
    STATUS_NAME,
    FrameLog,
    StreamState,
    clean_json,
    read_tail,
    write_json_atomic,
)
from diffstream.live.paths import default_base, stream_folder
from diffstream.live.replay import SeqWindow
from diffstream.live.schema import LiveScenario
from diffstream.live.security import load_receiver_keys, want_curve
from diffstream.live.sockets import ConnMonitor, SocketSettings, receiver_socket
from diffstream.output.dashboard.live import Goodput, LiveDashboard
from diffstream.output.report import FRAMES_NAME
from diffstream.pipeline.receiver_core import ArrivedFrame, ReceiverCore
from diffstream.pipeline.records import Arrival, FrameRecord, Outcome
from diffstream.plugins import import_path_references
from diffstream.transport.packets import chunk_size

log = logging.getLogger("diffstream.live.receiver")

HOUSEKEEPING_S = 0.2
HELLO_EVERY_S = 1.0
MAX_PROBES = 64


@dataclass
class RecvOptions:
    connect: str
    keys_dir: Path = Path("keys/receiver")
    curve: bool | None = None
    out_base: Path | None = None  # default runs/<scenario name>/receiver
    content_root: Path | None = None  # relative content folders resolve here (default cwd)
    wait_s: float | None = None  # give up if no sender answers (None: wait forever)
    live_dashboard: bool = True
    console: Console | None = None
    name: str = ""
    settings: SocketSettings | None = None  # before the WELCOME brings the scenario's
    # Plugin import paths the sender's scenario may name. Validating a scenario imports the
    # modules it names, so a peer must not choose them: none unless the user lists them.
    allow_plugins: tuple[str, ...] = ()


class Stream:
    """One stream as this receiver knows it (a new stream id starts a new one)."""

    def __init__(self, rx: LiveReceiver, body: dict[str, Any], sc: LiveScenario) -> None:
        self.id: str = body["stream_id"]
        self.sc = sc
        self.arm = next(a for a in sc.arms if a.label == body["arm"])
        self.spec = sc.live
        self.epoch: float = body["epoch"]
        self.frames: int = body["frames"]
        self.shaping: bool = body["shaping"]
        self.session: int | None = None
        self.fps = sc.frame.fps
        self.target_s = sc.mode.target_latency_ms / 1000.0  # type: ignore[union-attr]
        self.max_jump = max(1, math.ceil(self.spec.max_gap_s * self.fps))
        self.max_scored = math.ceil(self.spec.max_scored_gap_s * self.fps)
        self.window = SeqWindow(self.spec.replay_window, self.max_jump)
        root = rx.opts.content_root or Path.cwd()
        self.core = ReceiverCore(sc, str(root))
        self.core.open_arm(self.arm.label, self.arm.codec, self.arm.codec_options)
        # our own base only: the peer's output.dir and stream id never choose a path
        base = rx.opts.out_base or default_base(sc.name, "receiver")
        self.folder = stream_folder(base, self.id)
        existing = StreamState.load(self.folder)
        self.state = existing or StreamState(self.id, sc.name, self.arm.label, 0.0, 0.0)
        self.state.finished = False
        self.state.save(self.folder)
        idle = log_idle_s(self.folder / FRAMES_NAME)  # before FrameLog touches the file
        self.log = FrameLog(self.folder)
        tail = read_tail(self.log.path, self.spec.replay_window)
        self.ring: OrderedDict[int, dict[str, Any]] = OrderedDict()
        for r in tail:
            self.remember(r.seq, rx_of(r))
        self.last_seq: int | None = tail[-1].seq if tail else None
        self.next_seq = body["next_seq"]  # where the WELCOME says the stream is
        self.last_capture: float | None = tail[-1].capture_s if tail else None
        self.resumed = bool(tail)
        self.gaps = GapBudget(self.fps, self.max_jump, idle_s=idle if tail else 0.0)
        # the simulator's sampler. Shaped, the sender's emulated link has a known base delay
        # (the loopback or LAN under it adds well under a millisecond), as in the simulator;
        # on a real path the base delay is learnt from recent frames.
        self.throughput = ThroughputEstimator(
            base_delay_s=sc.link.delay_ms / 1000.0 if self.shaping else None)
        self.done = False

    def remember(self, seq: int, rx: dict[str, Any]) -> None:
        self.ring[seq] = rx
        self.ring.move_to_end(seq)
        while len(self.ring) > self.spec.replay_window:
            self.ring.popitem(last=False)


def rx_of(r: FrameRecord) -> dict[str, Any]:
    """The receiver half of a logged record, as a REPORT body."""
    return report_body(r.arrival(), r.outcome())


class LiveReceiver:
    def __init__(self, opts: RecvOptions) -> None:
        self.opts = opts
        self.console = opts.console or Console()
        self.curve = want_curve(opts.connect, opts.curve)
        self.instance = secrets.randbits(64)
        self.name = opts.name or socket.gethostname()[:64]
        self.counts: Counter[str] = Counter()
        self.clock = OffsetEstimator()
        self.probes: OrderedDict[float, None] = OrderedDict()
        self.stream: Stream | None = None
        self.dash: LiveDashboard | None = None
        self.goodput = Goodput()
        self.sender_heard = -math.inf
        self.need_hello = True
        self.next_hello = 0.0
        self.next_ping = 0.0
        self.next_status = 0.0
        self.stopping = False
        self.exit_code = 0
        self.refused = ""  # the sender's reason when it refused our hello
        self._status: dict[str, str] = {}

    # ------------------------------------------------------------------ setup
    def _open_socket(self) -> None:
        self.ctx = zmq.Context()
        keys = load_receiver_keys(self.opts.keys_dir) if self.curve else None
        self.keys = keys
        settings = self.opts.settings or SocketSettings()
        routing_id = b"rx" + self.instance.to_bytes(8, "big")
        self.sock = receiver_socket(self.ctx, settings, keys, routing_id)
        self.monitor = ConnMonitor.attach(self.sock)
        try:
            self.sock.connect(self.opts.connect)
        except zmq.ZMQError as exc:
            raise InputError(f"--connect {self.opts.connect}: {exc}") from None
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        self.poller.register(self.monitor.socket, zmq.POLLIN)

    def _install_signals(self) -> None:
        def stop(signum: int, _frame: object) -> None:
            self.stopping = True
            self.exit_code = 130

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, stop)
            signal.signal(signal.SIGTERM, stop)

    def _describe(self) -> None:
        if self.curve:
            assert self.keys is not None
            sec = f"CURVE as {self.keys.name!r}, sender key from {self.opts.keys_dir}/"
        elif self.opts.curve is False:
            sec = "NO CURVE (--insecure): the stream crosses the network in the clear"
        else:
            sec = "no CURVE (loopback)"
        self.console.print(f"recv: connecting to {self.opts.connect}; security: {sec}",
                           highlight=False, markup=False)

    # ------------------------------------------------------------------ run
    def run(self) -> int:
        started = time.monotonic()
        self._open_socket()  # libzmq connects and shakes hands while torch loads below
        import diffstream.metrics.quality  # noqa: F401 - load before a stream can start

        self._install_signals()
        self._describe()
        try:
            while not self.stopping:
                self._poll(HOUSEKEEPING_S)
                self._housekeeping()
                if self.stream is not None and self.stream.done:
                    break
                if self.stream is None and self.opts.wait_s is not None and (
                        time.monotonic() - started > self.opts.wait_s):
                    self.console.print(self._no_sender_hint(), highlight=False, markup=False)
                    self.exit_code = 1
                    break
            if self.stream is not None and not self.stream.done:
                self._finish_stream("receiver stopped")
        finally:
            if self.dash is not None:
                self.dash.__exit__(None, None, None)
            self._close()
        return self.exit_code

    def _no_sender_hint(self) -> str:
        failed = self.monitor.get("auth_failures") + self.monitor.get("handshake_failures")
        msg = f"no sender answered at {self.opts.connect} within {self.opts.wait_s} s"
        if self.refused:
            return msg + f"; the sender refused this receiver: {self.refused}"
        if failed:
            return (msg + f"; {failed} handshakes failed: the keys do not match (is "
                    f"{self.opts.keys_dir}/sender.key the sender's public key, and this "
                    "receiver's .key in the sender's authorized/?) or CURVE is on at one end "
                    "only (--curve/--insecure)")
        if not self.monitor.get("connected"):
            return msg + "; no TCP connection: check the address, the port and the firewall"
        return msg

    def _close(self) -> None:
        try:
            self.sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self.monitor.close()
        self.sock.close(0)
        self.ctx.term()

    # ------------------------------------------------------------------ messages
    def _poll(self, timeout_s: float) -> None:
        events = dict(self.poller.poll(int(timeout_s * 1000)))
        if self.monitor.socket in events:
            for name in self.monitor.drain():
                if name == "handshakes":
                    self.need_hello = True
                    self.next_hello = 0.0
        if self.sock not in events:
            return
        for _ in range(256):
            try:
                parts, total = P.recv_parts(self.sock, P.MAX_PARTS)
            except zmq.Again:
                return
            self._handle(parts, total)
            if self.stream is not None and self.stream.done:
                return
            if not self.sock.poll(0):
                return

    def _handle(self, parts: list[Any], total: int) -> None:
        """One message; whatever it holds, the receiver carries on (bad input is counted)."""
        try:
            self._dispatch(parts, total)
        except DiffstreamError:
            raise  # our own setup failing on what the sender describes: exit with the reason
        except Exception:  # a bug handling one message must not end the stream
            self.counts["internal_errors"] += 1
            log.exception("error handling a message (counted as internal_errors)")

    def _dispatch(self, parts: list[Any], total: int) -> None:
        t_recv = time.monotonic()
        max_data = self.stream.spec.max_frame_bytes if self.stream else 64 * 1024 * 1024
        try:
            if total > len(parts):
                raise P.ProtocolError("parts", f"{total} parts")
            msg = P.decode(parts, allowed=P.TO_RECEIVER, max_data_bytes=max_data)
        except P.ProtocolError as exc:
            self._drop(exc.kind, str(exc))
            return
        if msg.kind is P.Kind.WELCOME:
            self._on_welcome(msg, t_recv)
            return
        if msg.kind is P.Kind.PONG:
            self._on_pong(msg, t_recv)
            return
        if msg.kind is P.Kind.REFUSED:
            self._on_refused(msg)
            return
        st = self.stream
        if st is None or msg.session != st.session:
            self._drop("unknown_session", f"{msg.kind.name} from session {msg.session:x}")
            return
        self.sender_heard = t_recv
        if msg.kind is P.Kind.FRAME:
            self._on_frame(st, msg, t_recv)
        elif msg.kind is P.Kind.NEED:
            self._on_need(st, msg.body["seqs"])
        elif msg.kind is P.Kind.END:
            self._on_end(st, msg.body["last_seq"])

    def _drop(self, reason: str, detail: str) -> None:
        self.counts[f"dropped_{reason}"] += 1
        if self.counts[f"dropped_{reason}"] <= 20:
            log.warning("dropped a message (%s): %.200s", reason, detail)

    def _send(self, kind: P.Kind, body: dict[str, Any], seq: int = 0) -> bool:
        parts = P.encode(kind, self.instance, seq, time.monotonic(), body)
        try:
            P.send_parts(self.sock, parts, zmq.NOBLOCK)  # a REPORT per frame
            return True
        except zmq.ZMQError:
            self.counts[f"unsent_{kind.name.lower()}"] += 1
            return False

    def _probe(self, kind: P.Kind, body: dict[str, Any]) -> None:
        """HELLO or PING: remember t1 so only answers to our own probes are used."""
        t1 = time.monotonic()
        parts = P.encode(kind, self.instance, 0, t1, body)
        try:
            self.sock.send_multipart(parts, flags=zmq.NOBLOCK)
        except zmq.ZMQError:
            self.counts[f"unsent_{kind.name.lower()}"] += 1
            return
        self.probes[t1] = None
        while len(self.probes) > MAX_PROBES:
            self.probes.popitem(last=False)

    def _clock_sample(self, t1: float, t2: float, t3: float, t4: float) -> None:
        if t1 not in self.probes:
            self.counts["dropped_unknown_probe"] += 1
            return
        del self.probes[t1]
        if self.clock.add(t1, t2, t3, t4) is None:
            self.counts["dropped_inconsistent_probe"] += 1

    def _on_pong(self, msg: P.Message, t_recv: float) -> None:
        # only an answer to one of our own probes, from the stream's sender, shows that the
        # sender still serves us (a sender that switched receivers must not keep us alive)
        if self.stream is None or msg.session != self.stream.session:
            self._drop("unknown_session", f"PONG from session {msg.session:x}")
            return
        if msg.body["t1"] in self.probes:
            self.sender_heard = t_recv
        self._clock_sample(msg.body["t1"], msg.body["t2"], msg.sent_at, t_recv)

    # ------------------------------------------------------------------ welcome
    def _on_welcome(self, msg: P.Message, t_recv: float) -> None:
        body = msg.body
        if body["t1"] not in self.probes:  # not an answer to our HELLO: a replay, or a sender
            # trying to start streams (folders, reports) faster than we say hello
            self._drop("unsolicited", f"WELCOME for stream {body['stream_id']!r}")
            return
        if self.stream is None or msg.session != self.stream.session:
            self.clock = OffsetEstimator()  # a new sender process: maybe another machine
        self._clock_sample(body["t1"], body["t2"], msg.sent_at, t_recv)
        self.sender_heard = t_recv
        self.need_hello = False
        st = self.stream
        if st is None or st.id != body["stream_id"]:
            if st is not None and not st.done:
                self._finish_stream("a new stream started", quit_after=False)
            st = self._new_stream(body)
            if st is None:
                return
            self.next_ping = 0.0  # a probe now tells the sender this receiver is ready
        if st.session != msg.session:
            if st.session is not None:
                self.counts["sender_restarts"] += 1
            st.session = msg.session
            st.window = SeqWindow(st.spec.replay_window, st.max_jump)
        else:
            self.counts["reconnects"] += 1
        st.epoch = body["epoch"]
        nxt = st.next_seq = body["next_seq"]
        log.info("WELCOME: stream %s session %x next_seq %d (last logged %s), %d reports "
                 "wanted", st.id, msg.session, nxt, st.last_seq, len(body["want"]))
        if st.last_seq is not None and nxt - 1 > st.last_seq:
            # everything below next_seq that is not still coming (held/in flight frames
            # are >= next_seq) will never come: account for it now
            self._fill_gap(st, nxt, None, "lost: never received (sender moved on)")
        for seq in body["want"]:
            rx = st.ring.get(seq)
            if rx is not None:
                self._send(P.Kind.REPORT, rx, seq)
                self.counts["reports_resent"] += 1

    def _new_stream(self, body: dict[str, Any]) -> Stream | None:
        refused = [r for r in import_path_references(body.get("scenario"))
                   if r not in self.opts.allow_plugins]
        if refused:
            self.counts["dropped_plugin_refused"] += 1
            if self.counts["dropped_plugin_refused"] <= 3:
                log.warning("refused the sender's scenario: it names plugin(s) %s by import "
                            "path; importing them would run code the sender chose. Start recv "
                            "with --allow-plugin REF for each one you trust", ", ".join(refused))
            return None
        try:
            sc = LiveScenario.model_validate(body["scenario"])
            labels = [a.label for a in sc.arms]
            if body["arm"] not in labels:
                raise ValueError(f"arm {body['arm']!r} not in {labels}")
        except (ValidationError, ValueError) as exc:
            self._drop("malformed", f"WELCOME scenario: {exc}")
            return None
        try:
            st = Stream(self, body, sc)
        except DiffstreamError:
            raise  # e.g. a content folder missing on this machine: exit 2, says which
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"cannot set up the stream the sender describes: {exc}") from None
        self.stream = st
        if self.dash is not None:
            self.dash.__exit__(None, None, None)
        self.dash = LiveDashboard(f"{sc.name} receiver", st.arm.label, st.frames,
                                  live=self.opts.live_dashboard, console=self.console,
                                  status=lambda: self._status,
                                  every_s=sc.live.status_every_s)
        self.dash.__enter__()
        verb = "continuing" if st.resumed else "receiving"
        self.console.print(f"{verb} stream {st.id} ({sc.name}, arm {st.arm.label}, "
                           f"{st.frames} frames) -> {st.folder}/", highlight=False,
                           markup=False)
        return st

    # ------------------------------------------------------------------ frames
    def stream_time(self, st: Stream, t_local: float) -> tuple[float, float | None]:
        """Local monotonic time -> the sender's stream time, and the error bound."""
        est = self.clock.estimate(t_local)
        if est is None:  # cannot happen after a WELCOME, which is itself a probe
            return t_local - st.epoch, None
        return t_local + est.theta - st.epoch, est.bound

    def _on_frame(self, st: Stream, msg: P.Message, t_recv: float) -> None:
        seq, info, data = msg.seq, msg.body, msg.data
        verdict = st.window.check(seq)
        ref = st.last_seq if st.last_seq is not None else st.next_seq - 1  # first frame: vs WELCOME
        if verdict == "new" and seq - ref > st.max_jump:
            verdict = "too_far"
        if verdict != "new":
            self._drop(verdict, f"frame {seq} (highest {st.window.highest})")
            return
        if info["frame_len"] > st.spec.max_frame_bytes:  # before anything sizes a buffer by it
            self._drop("oversized", f"frame {seq} declares {info['frame_len']} bytes")
            return
        if len(data) > info["frame_len"] or info["arm"] != st.arm.label:
            self._drop("malformed", f"frame {seq}: {len(data)} bytes of a "
                       f"{info['frame_len']}-byte frame, arm {info['arm']!r}")
            return
        st.window.accept(seq)
        t_arr, bound = self.stream_time(st, t_recv)
        self._fill_gap(st, seq, info["capture_s"], "lost: never received")
        complete = len(data) == info["frame_len"]
        mtu = st.sc.link.mtu
        delivered = info["wire_bytes"] if complete else (len(data) // chunk_size(mtu)) * mtu
        chunks = [(0, bytes(data), t_arr)] if len(data) else []
        decided = st.core.on_frame(ArrivedFrame(seq, st.arm.label, info["frame_len"], chunks,
                                                info["deadline_s"]))
        outcome = decided[0][1] if decided else Outcome.missing(
            "lost: receiver refused the frame")
        if outcome.error:
            self.counts["frames_corrupt"] += 1
        got = len(data) > 0 or complete
        arrival = Arrival(t_arr if got else None, t_arr if got else None, delivered, complete)
        rx = report_body(arrival, outcome,
                         throughput_bps=st.throughput.sample(info["send_s"], t_arr, delivered),
                         offset_err_s=bound, rtt_s=self._rtt())
        self.counts["frames"] += 1
        self.goodput.add(len(data))
        self._record(st, seq, info, rx)

    def _rtt(self) -> float | None:
        est = self.clock.estimate(time.monotonic())
        return None if est is None else est.rtt

    def _record(self, st: Stream, seq: int, info: dict[str, Any], rx: dict[str, Any]) -> None:
        record = make_record(seq, info, rx)
        st.log.append(record)
        st.remember(seq, rx)
        st.last_seq = seq
        st.last_capture = info["capture_s"]
        if self.dash is not None:
            self.dash.on_frame(record)
        self._send(P.Kind.REPORT, rx, seq)

    def _fill_gap(self, st: Stream, upto: int, next_capture: float | None, why: str) -> None:
        """Record frames (last_seq, upto) as lost: the viewer kept the last image."""
        if st.last_seq is None or upto <= st.last_seq + 1:
            return
        base, n = st.last_seq, upto - st.last_seq - 1
        c0 = st.last_capture if st.last_capture is not None else 0.0
        step = (next_capture - c0) / (upto - base) if next_capture is not None else 1.0 / st.fps
        first = upto - st.gaps.take(min(n, st.max_jump))  # bounded: see live/gaps.py
        if first > base + 1:
            self.counts["gap_unrecorded"] += first - base - 1
            append_gap(st.folder, base + 1, first - 1, why)
            log.warning("%d frames before seq %d are not in this log (gap longer than the "
                        "stream could have lost; see gaps.jsonl); the sender's log accounts "
                        "for them", first - base - 1, upto)
            st.last_seq = first - 1  # a later message must not pay for this gap again
        log.info("frames %d..%d never arrived: %s", first, upto - 1, why)
        for seq in range(first, upto):
            capture = c0 + (seq - base) * step
            info = unseen_info(st.arm.label, st.arm.codec, st.arm.policy.kind, capture,
                               st.target_s)
            scored = seq - first < st.max_scored
            rx = lost_rx(why if scored else f"{why} (not scored: gap of {n} frames)")
            if scored:
                seen = st.core.score_unseen(seq, info["deadline_s"])
                if seen is not None:  # what the viewer saw in the slot; it stays "lost"
                    rx.update(stall=seen.stall, stall_s=seen.stall_s, psnr_db=seen.psnr_db,
                              ms_ssim=seen.ms_ssim, ssim=seen.ssim, ssim_db=seen.ssim_db)
            self.counts["frames_missing"] += 1
            self._record(st, seq, info, rx)

    def _on_refused(self, msg: P.Message) -> None:
        """The sender serves another receiver: our stream was taken over (exit 1), or our
        HELLO was refused (keep trying; ``--wait`` gives up with the reason)."""
        reason = msg.body["reason"]
        st = self.stream
        if st is not None and not st.done and msg.session == st.session:
            self.console.print(f"receiver: the sender stopped streaming to us: {reason}",
                               highlight=False, markup=False)
            self.exit_code = 1
            self._finish_stream(f"taken over: {reason}")
            return
        self.counts["hello_refused"] += 1
        self.refused = reason
        if self.counts["hello_refused"] == 1:
            self.console.print(f"recv: the sender refused this receiver ({reason}); still "
                               "trying", highlight=False, markup=False)
            log.warning("the sender refused our hello: %.200s", reason)

    def _on_need(self, st: Stream, seqs: list[int]) -> None:
        for seq in seqs:
            rx = st.ring.get(seq)
            if rx is not None:
                self._send(P.Kind.REPORT, rx, seq)
                self.counts["reports_resent"] += 1

    def _on_end(self, st: Stream, last_seq: int) -> None:
        if st.last_seq is not None and last_seq > st.last_seq:
            self._fill_gap(st, last_seq + 1, None, "lost: never received (stream ended)")
        self._finish_stream("stream over")

    def _finish_stream(self, why: str, quit_after: bool = True) -> None:
        st = self.stream
        assert st is not None
        st.done = quit_after
        st.state.finished = why == "stream over"
        st.state.save(st.folder)
        self._send(P.Kind.BYE, {"reason": why})
        self._refresh_status()
        self._write_status()
        if self.dash is not None:
            self.dash.tick(force=True)
        from diffstream.output.live_report import write_live_report

        rep = write_live_report(st.sc, st.folder, None, self.console)
        tally = Counter(fate(r) for r in rep.records)
        self.console.print(
            f"receiver: {why}; {len(rep.records)} frames ({tally['delivered']} delivered, "
            f"{tally['late']} late, {tally['lost']} lost); outputs in {st.folder}/",
            highlight=False, markup=False)
        if not quit_after:
            self.stream = None
        # give the BYE a moment to leave before the socket closes
        if quit_after:
            self.sock.poll(100)

    # ------------------------------------------------------------------ housekeeping
    def _housekeeping(self) -> None:
        now = time.monotonic()
        if self.stream is not None and now - self.sender_heard > self._peer_timeout():
            self.need_hello = True
        if self.need_hello and now >= self.next_hello:
            self._probe(P.Kind.HELLO, {"name": self.name, "proto": P.VERSION})
            self.next_hello = now + HELLO_EVERY_S
        interval = self.stream.spec.ping_interval_s if self.stream else 0.5
        if self.stream is not None and now >= self.next_ping:
            self._probe(P.Kind.PING, {})
            self.next_ping = now + interval
        self._refresh_status()
        if self.stream is not None and now >= self.next_status:
            self.next_status = now + 2.0
            self._write_status()
        if self.dash is not None:
            self.dash.tick()

    def _peer_timeout(self) -> float:
        return self.stream.spec.peer_timeout_s if self.stream else 3.0

    def _refresh_status(self) -> None:
        c, mon = self.counts, self.monitor
        silent = time.monotonic() - self.sender_heard
        if self.stream is None:
            sender = f"refused: {self.refused}" if self.refused else "waiting for the sender"
        elif silent > self._peer_timeout():
            sender = f"silent {silent:.0f} s (reconnecting)"
        else:
            sender = "connected"
        est = self.clock.estimate(time.monotonic())
        clock = "–" if est is None else (
            f"offset {est.theta * 1e3:+.2f} ms ±{est.bound * 1e3:.2f} ms, "
            f"rtt {est.rtt * 1e3:.1f} ms ({est.samples} probes)")
        drops = {k.removeprefix("dropped_"): v for k, v in c.items() if k.startswith("dropped_")}
        self._status = {
            "sender": f"{self.opts.connect}: {sender}",
            "security": "CURVE" if self.curve else "none",
            "reconnects": f"{c['reconnects']} (sender restarts {c['sender_restarts']}, tcp "
                          f"disconnects {mon.get('disconnected')}, failed handshakes "
                          f"{mon.get('auth_failures') + mon.get('handshake_failures')})",
            "goodput": _rate(self.goodput.bps()),
            "clock": clock,
            "frames": f"{c['frames']} received, {c['frames_missing']} missing, "
                      f"{c['frames_corrupt']} corrupt",
            "dropped msgs": ", ".join(f"{k} {v}" for k, v in drops.items()) or "0",
        }

    def _write_status(self) -> None:
        st = self.stream
        if st is None:
            return
        est = self.clock.estimate(time.monotonic())
        data = {
            "side": "receiver", "stream_id": st.id, "session": st.session,
            "endpoint": self.opts.connect, "curve": self.curve,
            "last_seq": st.last_seq, "counts": dict(self.counts),
            "monitor": dict(self.monitor.counts),
            "clock": None if est is None else {"offset_s": est.theta, "bound_s": est.bound,
                                               "rtt_s": est.rtt, "probes": est.samples},
            "worker_malformed": st.core.malformed,
        }
        write_json_atomic(st.folder / STATUS_NAME, clean_json(data))


def _rate(bps: float) -> str:
    from diffstream.output.dashboard.sim import format_bps

    return format_bps(bps)
