"""Which receiver a live stream belongs to, and what a HELLO from someone else gets.

The first receiver that says hello is bound to the stream. Its identity is its CURVE public
key when CURVE is on (a restarted receiver has the same key), else only its connection (the
ZeroMQ routing id; without CURVE there is nothing else to tell peers apart). Later HELLOs:

- from the bound connection: a reconnect (after a partition);
- from the bound key on a new connection, or without CURVE from any new connection, once
  the bound connection is gone: the bound receiver restarted, it continues the stream;
- anything else (another key, or a second connection while the bound one is still up):
  refused, unless the sender runs with ``--takeover``: then the newcomer takes the stream
  over and the old receiver is told (REFUSED) and exits non-zero.

Reports, pings and byes from anyone but the bound connection are dropped and counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Decision = Literal["bind", "reconnect", "restart", "takeover", "refuse"]


@dataclass(frozen=True)
class Peer:
    routing_id: bytes
    key: str | None  # CURVE public key (Z85), None without CURVE


class PeerBinding:
    def __init__(self, *, takeover: bool = False) -> None:
        self.takeover = takeover
        self.bound: Peer | None = None

    def decide(self, peer: Peer, connected: Callable[[bytes], bool]) -> Decision:
        """What a HELLO from ``peer`` gets; ``connected(routing_id)``: is that connection up?"""
        b = self.bound
        if b is None:
            return "bind"
        if peer == b:
            return "reconnect"
        same_identity = peer.key == b.key  # both None without CURVE: only the connection
        if same_identity and not connected(b.routing_id):
            return "restart"
        return "takeover" if self.takeover else "refuse"

    def bind(self, peer: Peer) -> None:
        self.bound = peer
