"""``python -m diffstream send``: capture, budget, encode and stream frames in real time.

One event loop, one thread (plus pyzmq's ZAP thread when CURVE is on):

1. At each frame's capture time the policy gets an ``Observation`` built from the reports
   received so far (``pipeline.sender_core.SenderCore``, which the simulator's coordinator
   uses too), the codec encodes the scenario's frame to that budget
   (``pipeline.encoder.FrameEncoder``, as in the simulator's sender worker), and the frame
   is written to the journal and sent, or, when shaping, held until the emulated link would
   deliver it.
2. Receiver messages are handled between frames: HELLO (a receiver (re)connected: it gets a
   WELCOME with the stream and the seqs whose reports are missing), REPORT (settles a frame:
   its record is written, the policy's view updated), PING (answered for the clock estimate).
3. Every frame ends with a record: from its report, or ``lost`` with the reason when it could
   not be sent (no receiver, queue full) or no report came within ``report_timeout_s``.
   Records are written in seq order. When the stream is over the sender sends END, waits for
   the last reports, and writes the summary and plots.

The stream starts when the first receiver says hello. A restarted sender (``--resume``)
continues the same stream: same id, time base and log, next seq after the journal's last.
"""

from __future__ import annotations

import logging
import math
import secrets
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
from rich.console import Console

from diffstream.control.feedback import DeliveryReport
from diffstream.control.policies.base import Observation, OracleView
from diffstream.errors import InputError
from diffstream.live import protocol as P
from diffstream.live.accounting import (
    fate,
    flat,
    lost_rx,
    make_record,
    record_arrival,
    sender_half_of,
)
from diffstream.live.logs import (
    STATUS_NAME,
    FrameLog,
    Journal,
    StreamState,
    clean_json,
    latest_unfinished,
    new_stream_id,
    read_tail,
    write_json_atomic,
)
from diffstream.live.peers import Peer, PeerBinding
from diffstream.live.schema import LiveScenario
from diffstream.live.security import (
    load_sender_keys,
    start_authenticator,
    want_curve,
)
from diffstream.live.shaping import TraceShaper
from diffstream.live.sockets import ConnMonitor, SocketSettings, sender_socket
from diffstream.output.dashboard.live import Goodput, LiveDashboard
from diffstream.pipeline.encoder import FrameEncoder
from diffstream.pipeline.records import FrameRecord
from diffstream.pipeline.sender_core import LinkState, SenderCore, delivery_report
from diffstream.transport.packets import on_link_sizes

log = logging.getLogger("diffstream.live.sender")

HOUSEKEEPING_S = 0.25
NEED_EVERY_S = 1.0


@dataclass
class SendOptions:
    bind: str
    keys_dir: Path = Path("keys/sender")
    curve: bool | None = None  # None: on unless the endpoint is loopback
    shaping: bool | None = None  # None: the scenario's live.shaping
    out_base: Path | None = None  # default: <output.dir>/sender
    duration_s: float | None = None
    resume: bool = False
    wait_s: float | None = None  # give up if no receiver comes (None: wait forever)
    live_dashboard: bool = True
    console: Console | None = None
    takeover: bool = False  # a HELLO from another receiver may take the stream over


@dataclass
class Pending:
    info: dict[str, Any]
    parts: list[Any] | None  # held by the shaper until sent; None once on the wire
    sent_mono: float | None = None


class LiveSender:
    def __init__(self, scenario: LiveScenario, spath: Path, opts: SendOptions) -> None:
        self.sc = scenario
        self.spath = spath
        self.opts = opts
        self.console = opts.console or Console()
        self.arm = scenario.stream_arm
        self.spec = scenario.live
        self.shaping = scenario.live.shaping if opts.shaping is None else opts.shaping
        if getattr(self.arm.policy, "needs_future", False) is True and not self.shaping:
            raise InputError(f"the {self.arm.policy.kind} policy needs shaping (--shape or "
                             "live.shaping: true)")
        self.fps = scenario.frame.fps
        self.interval = 1.0 / self.fps
        self.target_s = scenario.mode.target_latency_ms / 1000.0  # type: ignore[union-attr]
        duration = opts.duration_s if opts.duration_s is not None else scenario.duration_s
        self.n_frames = max(1, math.floor(duration * self.fps + 1e-9))
        self.curve = want_curve(opts.bind, opts.curve)
        self.session = secrets.randbits(64)
        self.counts: Counter[str] = Counter()
        self.pending: dict[int, Pending] = {}
        self.ready: dict[int, FrameRecord] = {}
        self.goodput = Goodput()
        self.peer: bytes | None = None
        self.binding = PeerBinding(takeover=opts.takeover)
        self.peer_name = ""
        self.peer_heard = -math.inf
        self.peer_ready = False  # the receiver answered the WELCOME: its stream is set up
        self.offset_err: float | None = None
        self.rx_rtt: float | None = None
        self.stop_reason = ""
        self._status: dict[str, str] = {}
        self._stopping = False
        self._bye = False
        self._next_need = 0.0
        self._next_status = 0.0

    # ------------------------------------------------------------------ setup
    def _open_stream(self) -> None:
        """The stream folder: a new one, or with ``--resume`` the last unfinished one."""
        base = self.opts.out_base or Path(self.sc.output.dir.replace("{name}", self.sc.name)) / (
            "sender")
        self.base = base
        self.resumed = False
        folder = latest_unfinished(base, self.sc.name) if self.opts.resume else None
        if self.opts.resume and folder is None:
            raise InputError(f"--resume: no unfinished stream of {self.sc.name!r} in {base}/")
        if folder is not None:
            st = StreamState.load(folder)
            assert st is not None
            if st.arm != self.arm.label:
                raise InputError(f"--resume: {folder} streams arm {st.arm!r}, the scenario "
                                 f"now picks {self.arm.label!r}")
            self.state, self.folder, self.resumed = st, folder, True
            # a stream that never started (no receiver came) gets its time base at hello
            self.epoch = st.mono_epoch_now() if st.epoch_wall > 0 else math.nan
        else:
            sid = new_stream_id()
            self.folder = base / sid
            self.state = StreamState(sid, self.sc.name, self.arm.label, 0.0, 0.0)
            self.epoch = math.nan  # set when the first receiver says hello
        self.folder.mkdir(parents=True, exist_ok=True)
        self.state.save(self.folder)
        self.frame_log = FrameLog(self.folder)
        tail = read_tail(self.frame_log.path, 1)
        self.next_write = tail[-1].seq + 1 if tail else 0
        orphans = Journal.read(self.folder) if self.resumed else {}
        self.journal = Journal(self.folder)
        for seq in sorted(orphans):
            if seq >= self.next_write:
                self.pending[seq] = Pending(orphans[seq], None, time.monotonic())
        self.next_seq = max([self.next_write - 1, *orphans.keys()], default=-1) + 1
        self.first_seq = self.next_seq
        if self.resumed:
            log.info("resuming stream %s at seq %d; %d frames await their reports",
                     self.state.stream_id, self.next_seq, len(self.pending))

    def _open_socket(self) -> None:
        self.ctx = zmq.Context()
        self.auth = start_authenticator(self.ctx, self.keys) if self.keys else None
        settings = SocketSettings(hwm=self.spec.hwm, heartbeat_ms=self.spec.heartbeat_ms,
                                  max_frame_bytes=self.spec.max_frame_bytes)
        self.sock = sender_socket(self.ctx, settings, self.keys)
        self.monitor = ConnMonitor.attach(self.sock)
        try:
            self.sock.bind(self.opts.bind)
        except zmq.ZMQError as exc:
            self._close()
            raise InputError(f"--bind {self.opts.bind}: cannot bind ({exc}); is the port "
                             "in use or the address not on this machine?") from None
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        self.poller.register(self.monitor.socket, zmq.POLLIN)

    def _open_codec(self) -> None:
        self.encoder = FrameEncoder(self.sc, str(self.spath.parent.resolve()))
        info = self.encoder.open_arm(self.arm.label, self.arm.codec, self.arm.codec_options,
                                     self.arm.needs_rate_quality)
        self.core = SenderCore(self.sc, self.arm, info)
        self.view = self.core.view
        self.shaper = TraceShaper(self.sc, self.spath) if self.shaping else None

    # ------------------------------------------------------------------ time
    def now(self) -> float:
        """Stream time: seconds since the stream's epoch on this machine's monotonic clock."""
        return time.monotonic() - self.epoch

    def capture_s(self, seq: int) -> float:
        return self.capture0 + (seq - self.first_seq) * self.interval

    # ------------------------------------------------------------------ run
    def run(self) -> int:
        # bad input first (keys, --resume, --bind), before anything is written or bound
        self.keys = load_sender_keys(self.opts.keys_dir) if self.curve else None
        self._open_socket()
        try:
            self._open_stream()
            self._open_codec()
            self._install_signals()
            self._describe()
            self.dash = LiveDashboard(f"{self.sc.name} sender", self.arm.label, self.n_frames,
                                      live=self.opts.live_dashboard, console=self.console,
                                      status=lambda: self._status,
                                      every_s=self.spec.status_every_s)
            with self.dash:
                if not self._wait_for_receiver():
                    return 1
                self._loop()
                self._drain()
            self._finish()
        finally:
            self._write_status()
            self._close()
        return 0 if not self.stop_reason else 130

    def _install_signals(self) -> None:
        def stop(signum: int, _frame: object) -> None:
            self._stopping = True
            self.stop_reason = signal.Signals(signum).name

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, stop)
            signal.signal(signal.SIGTERM, stop)

    def _describe(self) -> None:
        if self.curve:
            assert self.keys is not None
            sec = f"CURVE: encrypted, receivers must hold a key in {self.keys.authorized}/"
        elif self.opts.curve is False:
            sec = "NO CURVE (--insecure): anyone who reaches this port can take the stream"
        else:
            sec = "no CURVE (loopback only; --curve to require keys)"
        shaping = "off"
        if self.shaper is not None:
            shaping = (f"on: {self.shaper.base_trace.name or 'trace'} x share "
                       f"{self.sc.link.share:g} "
                       f"= mean {self.shaper.trace.mean_bps / 1e3:.0f} kbit/s, delay "
                       f"{self.sc.link.delay_ms:g} ms")
        p = self.arm.policy
        lines = [
            f"send {self.sc.name}: arm {self.arm.label} ({self.arm.codec}, policy {p.kind}), "
            f"{self.sc.frame.width}x{self.sc.frame.height} @ {self.fps:g} fps, "
            f"{self.n_frames} frames, target latency {self.target_s * 1000:.0f} ms",
            f"listening on {self.opts.bind}; security: {sec}; shaping {shaping}",
            f"{'resuming' if self.resumed else 'stream'} {self.state.stream_id} -> "
            f"{self.folder}/",
        ]
        for line in lines:
            self.console.print(line, highlight=False, markup=False)

    def _wait_for_receiver(self) -> bool:
        deadline = time.monotonic() + self.opts.wait_s if self.opts.wait_s else math.inf
        if not self.dash.live:
            self.console.print("waiting for a receiver…", highlight=False)
        while not self.peer_ready:
            if self._stopping or time.monotonic() > deadline:
                self.stop_reason = self.stop_reason or "no receiver"
                why = self._no_receiver_hint() if not self._stopping else "stopped"
                self.console.print(f"no stream: {why}", highlight=False, markup=False)
                return False
            self._poll(0.2)
            self._refresh_status()
        self.state.save(self.folder)
        self.capture0 = max(self.now(), 0.0)  # first frame: as soon as the receiver is ready
        if self.shaper is not None:  # frame k meets the trace at k / fps, as in the simulator
            self.shaper.align(self.capture0 - self.first_seq * self.interval)
        return True

    def _no_receiver_hint(self) -> str:
        msg = f"no receiver connected within {self.opts.wait_s:g} s"
        refused = self.monitor.get("auth_failures") + self.monitor.get("handshake_failures")
        if refused:
            msg += (f"; {refused} connection attempts were refused (keys not in "
                    f"{self.opts.keys_dir}/authorized/, or CURVE on one side only)")
        return msg

    def _loop(self) -> None:
        k = self.next_seq
        next_house = 0.0
        while not self._stopping:
            now = self.now()
            if k < self.n_frames and now >= self.capture_s(k):
                self._produce(k, now)
                k += 1
                self.next_seq = k
            self._release_due()
            if time.monotonic() >= next_house:
                self._housekeeping()
                next_house = time.monotonic() + HOUSEKEEPING_S
            if k >= self.n_frames and (self.shaper is None or not self.shaper.held):
                return
            wake = [self.capture_s(k) if k < self.n_frames else math.inf]
            if self.shaper is not None and self.shaper.next_release() is not None:
                wake.append(self.shaper.next_release())  # type: ignore[arg-type]
            self._poll(min(max(min(wake) - self.now(), 0.0), HOUSEKEEPING_S))

    def _drain(self) -> None:
        """Tell the receiver the stream is over; wait for the last reports (bounded)."""
        last = self.next_seq - 1
        self._send_ctl(P.Kind.END, {"last_seq": last})
        deadline = time.monotonic() + (1.0 if self._stopping else self.spec.report_timeout_s)
        next_end = time.monotonic() + 1.0
        while time.monotonic() < deadline and not (self._bye and not self.pending):
            if not self.pending and self.peer is None:
                break
            self._poll(0.1)
            self._housekeeping()
            if time.monotonic() >= next_end:  # END may have been lost with a connection
                self._send_ctl(P.Kind.END, {"last_seq": last})
                next_end = time.monotonic() + 1.0
        why = "sender stopped" if self._stopping else "stream over"
        for seq in sorted(self.pending):
            self._settle(seq, lost_rx(f"lost: no report by the end ({why})"))

    def _finish(self) -> None:
        self._flush_ready(final=True)
        self.state.finished = not self._stopping
        self.state.save(self.folder)
        from diffstream.output.live_report import write_live_report

        files = write_live_report(
            self.sc, self.folder, self.shaper.trace if self.shaper else None, self.console,
            offered_bytes=self.shaper.link.offered_bytes if self.shaper else 0.0)
        self.dash.tick(force=True)
        tally = Counter(fate(r) for r in files.records)
        self.console.print(
            f"sender done: {len(files.records)} frames ({tally['delivered']} delivered, "
            f"{tally['late']} late, {tally['lost']} lost); outputs in {self.folder}/",
            highlight=False, markup=False)

    def _close(self) -> None:
        if hasattr(self, "journal"):
            self.journal.close()
        try:
            self.sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self.monitor.close()
        self.sock.close(0)
        if self.auth is not None:
            self.auth.stop()
        self.ctx.term()

    # ------------------------------------------------------------------ frames
    def _observe(self, k: int, now: float, capture: float, deadline: float) -> Observation:
        future = None
        if getattr(self.arm.policy, "needs_future", False) is True and self.shaper is not None:
            link = self.shaper.link
            qoe = self.sc.qoe
            future = OracleView(capacity_bytes=self.shaper.trace.capacity_bytes,
                                backlog_bytes=link.queue_bytes_at(now), delay_s=link.delay_s,
                                frames_total=self.n_frames,
                                duration_s=self.n_frames * self.interval,
                                switch_weight=getattr(qoe, "switch_weight", 1.0),
                                stall_weight=getattr(qoe, "stall_weight", 50.0),
                                queue_limit_bytes=link.queue_bytes,
                                finish_s=self.shaper.trace.finish_s,
                                delivery_prob=self.shaper.delivery_prob)
        return self.core.observe(k, now, capture, deadline, future=future)

    def _produce(self, k: int, now: float) -> None:
        capture = self.capture_s(k)
        deadline = capture + self.target_s
        budget = self.core.budget(self._observe(k, now, capture, deadline))
        est = self.core.throughput_estimate()
        enc = self.encoder.encode(self.arm.label, k, budget, capture, now)
        self.core.on_encoded(enc)
        frame = enc.frame
        send_s = enc.send_s
        sizes = on_link_sizes(len(frame), self.sc.link.mtu)
        # progressive codecs: the prefix in time to be decoded by the deadline, allowing for
        # the receiver's decode (before its first report: this encode's time) and for one
        # encode, during which this loop cannot release a held frame
        dec = self.core.decode_est.value
        cut = (deadline - (enc.encode_charged_s if dec is None else dec)
               - (self.core.encode_est.value or 0.0))
        shaped = (None if self.shaper is None
                  else self.shaper.admit(send_s, len(frame), cut, capture_s=capture))
        link = LinkState() if shaped is None else LinkState(
            capacity_bps=shaped.capacity_bps, queue_bytes=shaped.queue_bytes,
            packets_dropped=shaped.dropped, packets_lost=shaped.lost)
        tx = self.core.sender_half(capture_s=capture, deadline_s=deadline, budget_bits=budget,
                                   enc=enc, send_s=send_s, wire_bytes=int(sum(sizes)),
                                   packets=len(sizes), throughput_est_bps=est, link=link)
        info: dict[str, Any] = {**flat(tx), "frame_len": len(frame)}  # the FRAME body
        self.journal.add(k, info)
        self.core.on_sent(k, send_s, int(sum(sizes)), budget_bits=budget, skipped=enc.skipped)
        data = frame if shaped is None or shaped.prefix_len >= len(frame) else (
            frame[: shaped.prefix_len])
        parts = P.encode(P.Kind.FRAME, self.session, k, time.monotonic(), info, data)
        self.pending[k] = Pending(info, parts)
        if shaped is None:
            self._transmit(k)
        elif not self.shaper.hold(shaped.release_s, k):  # type: ignore[union-attr]
            self._settle(k, lost_rx("lost: shaping hold queue full"))

    def _release_due(self) -> None:
        if self.shaper is None:
            return
        for k in self.shaper.due(self.now()):
            if k in self.pending:
                self._transmit(k)

    def _transmit(self, k: int) -> None:
        p = self.pending[k]
        parts, p.parts = p.parts, None
        assert parts is not None
        if self.peer is None:
            self.counts["unsent_no_receiver"] += 1
            self._settle(k, lost_rx("lost: no receiver connected"))
            return
        try:
            P.send_parts(self.sock, [self.peer, *parts], zmq.NOBLOCK,
                         copy=len(parts[-1]) < 65536)
        except zmq.Again:
            self.counts["unsent_queue_full"] += 1
            self._settle(k, lost_rx("lost: send queue full (receiver too slow)"))
            return
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            self.counts["unsent_unreachable"] += 1
            self._settle(k, lost_rx("lost: receiver unreachable (disconnected)"))
            return
        p.sent_mono = time.monotonic()
        self.counts["frames_sent"] += 1
        self.counts["bytes_sent"] += sum(len(x) for x in parts)

    def _settle(self, seq: int, rx: dict[str, Any], *, reported: bool = False) -> None:
        """Give frame ``seq`` its final record and update what the policy sees."""
        p = self.pending.pop(seq)
        info = p.info
        record = make_record(seq, info, rx)
        if reported:
            self.core.on_report(self._delivery_report(seq, info, rx), self.now())
            if rx["decode_charged_s"]:
                self.core.on_decode_time(float(rx["decode_charged_s"]))
            if rx["offset_err_s"] is not None:
                self.offset_err = float(rx["offset_err_s"])
            if rx["rtt_s"] is not None:
                self.rx_rtt = float(rx["rtt_s"])
            self.goodput.add(int(rx["delivered_bytes"]))
        else:
            self.core.on_unreported(seq)
        self.ready[seq] = record
        self._flush_ready()

    def _delivery_report(self, seq: int, info: dict[str, Any],
                         rx: dict[str, Any]) -> DeliveryReport:
        arrival = record_arrival(rx)
        return delivery_report(
            seq, sender_half_of(info), arrival, throughput_bps=rx["throughput_bps"],
            sent_at_s=self.now(), buffer_s=float(rx["buffer_s"]),
            first_packet_bytes=min(int(info["wire_bytes"]), self.sc.link.mtu)
            if arrival.delivered_bytes else 0)

    def _flush_ready(self, final: bool = False) -> None:
        while self.next_write in self.ready:
            record = self.ready.pop(self.next_write)
            self.frame_log.append(record)
            self.dash.on_frame(record)
            self.next_write += 1
        if final and self.ready:  # cannot happen: every seq below next_seq is settled
            log.error("records %s were never written in order", sorted(self.ready)[:10])
            for seq in sorted(self.ready):
                self.frame_log.append(self.ready.pop(seq))

    # ------------------------------------------------------------------ messages
    def _poll(self, timeout_s: float) -> None:
        events = dict(self.poller.poll(int(timeout_s * 1000)))
        if self.monitor.socket in events:
            self.monitor.drain()
        if self.sock not in events:
            return
        for _ in range(256):  # bounded per call so frames keep their schedule
            try:
                parts, total = P.recv_parts(self.sock, P.MAX_PARTS + 1)
            except zmq.Again:
                return
            self._handle(parts, total)
            if not self.sock.poll(0):
                return

    def _handle(self, parts: list[Any], total: int) -> None:
        """One message; whatever it holds, the sender carries on (bad input is counted)."""
        try:
            self._dispatch(parts, total)
        except Exception:  # a bug handling one message must not end the stream
            self.counts["internal_errors"] += 1
            log.exception("error handling a message (counted as internal_errors)")

    def _dispatch(self, parts: list[Any], total: int) -> None:
        t_recv = time.monotonic()
        peer = bytes(parts[0])
        try:
            if total > len(parts):
                raise P.ProtocolError("parts", f"{total} parts")
            msg = P.decode(parts[1:], allowed=P.TO_SENDER, max_data_bytes=0)
        except P.ProtocolError as exc:
            self.counts[f"dropped_{exc.kind}"] += 1
            log.warning("dropped a message: %s", exc)
            return
        if msg.kind is P.Kind.HELLO:
            self._on_hello(peer, parts[1], msg, t_recv)
        elif peer != self.peer:  # pings too: only the bound receiver may think we serve it
            self.counts["dropped_not_active_peer"] += 1
            return
        elif msg.kind is P.Kind.PING:
            self._send_to(peer, P.Kind.PONG, {"t1": msg.sent_at, "t2": t_recv})
        elif msg.kind is P.Kind.REPORT:
            self._on_report(msg)
        elif msg.kind is P.Kind.BYE:
            self._bye = True
        if peer == self.peer:
            self.peer_heard = t_recv
            self.peer_ready = self.peer_ready or msg.kind is not P.Kind.HELLO

    def _on_hello(self, peer: bytes, frame: Any, msg: P.Message, t_recv: float) -> None:
        who = Peer(peer, self._user_id(frame))
        decision = self.binding.decide(who, self._connected)
        if decision == "refuse":
            self.counts["hellos_refused"] += 1
            if self.counts["hellos_refused"] <= 5:
                log.warning("refused a hello from %s: the stream is bound to %s",
                            msg.body["name"] or peer.hex(), self.peer_name)
            self._send_to(peer, P.Kind.REFUSED, {
                "reason": "this stream is bound to another receiver (the sender allows a "
                          "switch only with --takeover)"})
            return
        if decision == "takeover":
            self.counts["receiver_switches"] += 1
            assert self.peer is not None
            self._send_to(self.peer, P.Kind.REFUSED, {
                "reason": "another receiver took the stream over (sender --takeover)"})
        elif decision != "bind":
            self.counts["receiver_reconnects"] += 1
        self.binding.bind(who)
        key_name = self._key_name(frame)
        self.peer = peer
        self.peer_heard = t_recv
        self.peer_name = key_name or msg.body["name"]
        want = [s for s, p in self.pending.items() if p.parts is None][: P.MAX_LIST]
        held = [s for s, p in self.pending.items() if p.parts is not None]
        if math.isnan(self.epoch):  # a new stream's time starts at its first receiver
            self.epoch = time.monotonic()
            self.state.epoch_mono, self.state.epoch_wall = self.epoch, time.time()
        body = {"stream_id": self.state.stream_id,
                "scenario": self.sc.model_dump(mode="json"), "arm": self.arm.label,
                "epoch": self.epoch, "next_seq": min([self.next_seq, *held]),
                "frames": self.n_frames, "t1": msg.sent_at, "t2": t_recv, "want": want,
                "shaping": self.shaper is not None}
        self._send_to(peer, P.Kind.WELCOME, body)
        log.info("receiver %s (%s) said hello: next_seq %d, %d reports wanted",
                 self.peer_name, peer.hex(), body["next_seq"], len(want))

    def _key_name(self, frame: Any) -> str:
        """Name of the certificate the peer authenticated with (ZAP's User-Id), if any."""
        user = self._user_id(frame)
        return self.keys.names.get(user.encode(), "") if user and self.keys else ""

    def _user_id(self, frame: Any) -> str | None:
        """The peer's CURVE public key (ZAP's User-Id), None without CURVE."""
        if self.keys is None:
            return None
        try:
            return frame.get("User-Id") or None
        except (zmq.ZMQError, AttributeError):
            return None

    def _connected(self, peer: bytes) -> bool:
        """Is the connection ``peer`` still up? (ROUTER_MANDATORY: unknown ids fail)."""
        if peer == self.peer and time.monotonic() - self.peer_heard < 1.0:
            return True  # it spoke just now (a send can fail spuriously while a full pipe
            # drains; a receiver that died and restarted has been silent for seconds)
        try:
            self.sock.send_multipart([peer, *P.encode(P.Kind.NEED, self.session, 0,
                                                      time.monotonic(), {"seqs": []})],
                                     flags=zmq.NOBLOCK)
        except zmq.Again:
            return True  # its queue is full, but it is there
        except zmq.ZMQError:
            return False
        return True

    def _on_report(self, msg: P.Message) -> None:
        seq = msg.seq
        p = self.pending.get(seq)
        if p is None:
            self.counts["reports_duplicate" if seq < self.next_seq else "reports_bogus"] += 1
            return
        if p.parts is not None:  # still held by the shaper: cannot have arrived
            self.counts["reports_bogus"] += 1
            return
        self.counts["reports"] += 1
        self._settle(seq, msg.body, reported=True)

    def _send_ctl(self, kind: P.Kind, body: dict[str, Any]) -> None:
        if self.peer is not None:
            self._send_to(self.peer, kind, body)

    def _send_to(self, peer: bytes, kind: P.Kind, body: dict[str, Any]) -> None:
        parts = P.encode(kind, self.session, 0, time.monotonic(), body)
        try:
            self.sock.send_multipart([peer, *parts], flags=zmq.NOBLOCK)
        except zmq.ZMQError:  # Again or EHOSTUNREACH: control is retried by its protocol
            self.counts[f"unsent_{kind.name.lower()}"] += 1

    # ------------------------------------------------------------------ housekeeping
    def _housekeeping(self) -> None:
        now = time.monotonic()
        if self.peer is not None and now - self.peer_heard > self.spec.peer_timeout_s:
            log.warning("receiver silent for %.1f s", now - self.peer_heard)
        timeout = self.spec.report_timeout_s
        for seq in [s for s, p in self.pending.items()
                    if p.sent_mono is not None and now - p.sent_mono > timeout]:
            self._settle(seq, lost_rx(f"lost: no report within {timeout:g} s"))
        if now >= self._next_need:
            self._next_need = now + NEED_EVERY_S
            age = max(1.0, 3 * (self.rx_rtt or 0.0))
            want = [s for s, p in self.pending.items()
                    if p.sent_mono is not None and now - p.sent_mono > age][: P.MAX_LIST]
            if want:
                self._send_ctl(P.Kind.NEED, {"seqs": want})
        self.journal.maybe_compact((s, p.info) for s, p in self.pending.items())
        self._refresh_status()
        if now >= self._next_status:
            self._next_status = now + 2.0
            self._write_status()
        self.dash.tick()

    def _refresh_status(self) -> None:
        c = self.counts
        mon = self.monitor
        heard = time.monotonic() - self.peer_heard
        if self.peer is None:
            peer = "waiting for a receiver"
        elif heard > self.spec.peer_timeout_s:
            peer = f"{self.peer_name}: silent {heard:.0f} s (reconnecting?)"
        else:
            peer = f"{self.peer_name}: connected"
        drops = {k.removeprefix("dropped_"): v for k, v in c.items() if k.startswith("dropped_")}
        unsent = {k.removeprefix("unsent_"): v for k, v in c.items() if k.startswith("unsent_")}
        status = {
            "receiver": peer,
            "security": "CURVE" if self.curve else "none (loopback)" if not self.opts.curve
            else "none",
            "reconnects": f"{c['receiver_reconnects'] + c['receiver_switches']} "
                          f"(tcp disconnects {mon.get('disconnected')}, refused handshakes "
                          f"{mon.get('auth_failures') + mon.get('handshake_failures')}, "
                          f"refused hellos {c['hellos_refused']})",
            "goodput": format_rate(self.goodput.bps()),
            "shaping": "off" if self.shaper is None else
            f"trace {format_rate(self.shaper.capacity_bps(max(self.now(), 0.0)))} now, "
            f"held {len(self.shaper.held)}" if not math.isnan(self.epoch) else "on",
            "clock": "–" if self.offset_err is None else f"latency ±{self.offset_err * 1e3:.2f} ms"
            + ("" if self.rx_rtt is None else f", rtt {self.rx_rtt * 1e3:.1f} ms"),
            "awaiting reports": str(sum(1 for p in self.pending.values() if p.parts is None)),
            "unsent": ", ".join(f"{k} {v}" for k, v in unsent.items()) or "0",
            "dropped msgs": ", ".join(f"{k} {v}" for k, v in drops.items()) or "0",
        }
        self._status = status

    def _write_status(self) -> None:
        if not hasattr(self, "journal"):  # failed before the stream folder was open
            return
        data = {
            "side": "sender", "stream_id": self.state.stream_id, "session": self.session,
            "endpoint": self.opts.bind, "curve": self.curve, "shaping": self.shaper is not None,
            "frames_planned": self.n_frames, "next_seq": getattr(self, "next_seq", 0),
            "written": self.next_write, "pending": len(self.pending),
            "counts": dict(self.counts), "monitor": dict(self.monitor.counts),
            "offset_err_s": self.offset_err, "rtt_s": self.rx_rtt,
            "receiver": self.peer_name, "stop_reason": self.stop_reason,
        }
        write_json_atomic(self.folder / STATUS_NAME, clean_json(data))


def format_rate(bps: float) -> str:
    from diffstream.output.dashboard.sim import format_bps

    return format_bps(bps)
