"""ZeroMQ sockets for live mode: one TCP port, bounded queues, heartbeats, reconnects.

The sender binds a ROUTER, the receiver connects a DEALER: frames and control go one way,
reports and probes the other, over a single connection (one port through the firewall).
Everything that libzmq already does well is left to it:

- ``SNDHWM``/``RCVHWM``: at most ``hwm`` messages queued per direction; the sender sends with
  ``NOBLOCK`` under ``ROUTER_MANDATORY``, so a full queue or a vanished receiver is an error
  it counts (the frame is recorded lost), never an unbounded backlog or a silent drop.
- ``MAXMSGSIZE``: a peer sending a bigger part is disconnected before it is buffered (the
  sender accepts only control-sized messages, the receiver frames up to the limit).
- ``HEARTBEAT_IVL/TIMEOUT/TTL``: ZMTP pings detect a dead or partitioned connection within
  ~3 intervals on both sides; the DEALER then reconnects every ``RECONNECT_IVL`` (backing
  off to ``RECONNECT_IVL_MAX``), and ``ROUTER_HANDOVER`` lets the receiver's reconnection
  (same ``ROUTING_ID``) take over a half-open old one.
- The socket monitor reports connects, disconnects and failed handshakes (wrong keys), which
  the dashboards show.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import zmq
from zmq.utils.monitor import parse_monitor_message

from diffstream.live.security import ReceiverKeys, SenderKeys, make_client, make_server

BODY_SLACK = 512 * 1024  # MAXMSGSIZE headroom over the largest frame (head and body parts)


CONTROL_HWM = 4096  # reports, probes: small messages, in bursts after a gap or a NEED
CONTROL_MAX_BYTES = 64 * 1024  # largest message a sender accepts (reports are < 1 kB)


@dataclass(frozen=True)
class SocketSettings:
    hwm: int = 32
    heartbeat_ms: int = 500
    max_frame_bytes: int = 16 * 1024 * 1024
    reconnect_ms: int = 100
    reconnect_max_ms: int = 2000


def _common(sock: zmq.Socket, s: SocketSettings, *, frames_out: bool) -> None:
    """Frames (large, few) flow sender -> receiver; control (small, bursty) the other way,
    so each direction gets its own queue bound and the sender accepts only small messages:
    worst-case queued memory is hwm x max_frame_bytes + CONTROL_HWM x CONTROL_MAX_BYTES."""
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, s.hwm if frames_out else CONTROL_HWM)
    sock.setsockopt(zmq.RCVHWM, CONTROL_HWM if frames_out else s.hwm)
    sock.setsockopt(zmq.MAXMSGSIZE, CONTROL_MAX_BYTES if frames_out else
                    s.max_frame_bytes + BODY_SLACK)
    sock.setsockopt(zmq.HEARTBEAT_IVL, s.heartbeat_ms)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * s.heartbeat_ms)
    sock.setsockopt(zmq.HEARTBEAT_TTL, min(3 * s.heartbeat_ms, 6_553_599))
    sock.setsockopt(zmq.RECONNECT_IVL, s.reconnect_ms)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, max(s.reconnect_ms, s.reconnect_max_ms))


def sender_socket(ctx: zmq.Context, s: SocketSettings, keys: SenderKeys | None) -> zmq.Socket:
    """ROUTER for the sender (bind it); CURVE server when ``keys`` is given."""
    sock = ctx.socket(zmq.ROUTER)
    _common(sock, s, frames_out=True)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
    if keys is not None:
        make_server(sock, keys)
    return sock


def receiver_socket(ctx: zmq.Context, s: SocketSettings, keys: ReceiverKeys | None,
                    routing_id: bytes) -> zmq.Socket:
    """DEALER for the receiver (connect it); CURVE client when ``keys`` is given."""
    sock = ctx.socket(zmq.DEALER)
    _common(sock, s, frames_out=False)
    sock.setsockopt(zmq.ROUTING_ID, routing_id)
    # nothing is queued for a connection that is not up: probes and reports made while
    # disconnected would arrive stale in a burst (reports are re-sent on demand instead)
    sock.setsockopt(zmq.IMMEDIATE, 1)
    # a SYN lost in a partition is retried by zmq at once, not after the OS's backoff
    sock.setsockopt(zmq.CONNECT_TIMEOUT, max(1000, 2 * s.heartbeat_ms))
    if keys is not None:
        make_client(sock, keys)
    return sock


# --------------------------------------------------------------------------- monitor

_NAMES = {
    zmq.EVENT_CONNECTED: "connected",
    zmq.EVENT_ACCEPTED: "accepted",
    zmq.EVENT_DISCONNECTED: "disconnected",
    zmq.EVENT_HANDSHAKE_SUCCEEDED: "handshakes",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "auth_failures",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "handshake_failures",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake_failures",
}


@dataclass
class ConnMonitor:
    """Counts a socket's connection events; ``socket`` goes into the caller's poller."""

    socket: zmq.Socket
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def attach(cls, sock: zmq.Socket) -> ConnMonitor:
        events = 0
        for ev in _NAMES:
            events |= ev
        return cls(sock.get_monitor_socket(events))

    def drain(self) -> list[str]:
        """Read every pending event; returns their names in order (for the caller to act)."""
        out: list[str] = []
        while self.socket.poll(0):
            try:
                ev = parse_monitor_message(self.socket.recv_multipart())
            except (zmq.ZMQError, ValueError, KeyError):
                break
            name = _NAMES.get(ev["event"])
            if name is not None:
                self.counts[name] = self.counts.get(name, 0) + 1
                out.append(name)
        return out

    def get(self, name: str) -> int:
        return self.counts.get(name, 0)

    def close(self) -> None:
        self.socket.close(0)
