"""Control messages between the simulation coordinator and the worker processes.

The coordinator (which owns SimPy time and the simulated link) talks to two separate OS
processes over ZeroMQ:

  coordinator --REQ/REP--> sender     hello | arm | encode | bye
  coordinator --PUSH-----> receiver   hello | arm | frame | end_arm | bye
  receiver    --PUSH-----> coordinator ready | result | arm_done | fatal

Every message is one msgpack map with an ``op`` key. Encoded frames travel inside ``frame``
messages as the wire-format packets that survived the simulated link, each with its virtual
arrival time, so the receiver does the real reassembly, unpacking and decoding.
"""

from __future__ import annotations

from typing import Any

import msgpack

# Bounds for unpacking control messages: generous for frames, never unbounded.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024


def dumps(msg: dict[str, Any]) -> bytes:
    return msgpack.packb(msg, use_bin_type=True)


def loads(data: bytes) -> dict[str, Any]:
    """Decode a control message; raises ValueError on anything that is not a map with 'op'."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError(f"control message of {len(data)} bytes exceeds the bound")
    try:
        msg = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ValueError(f"not a msgpack message: {exc}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("op"), str):
        raise ValueError("control message must be a map with an 'op' string")
    return msg
