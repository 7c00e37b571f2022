"""Live messages between sender and receiver: an envelope around the simulator's wire frame.

Every ZeroMQ message is 2 or 3 parts:

| part | contents                                                                         |
|------|----------------------------------------------------------------------------------|
| head | 32 bytes: magic ``DSL``, version u8, kind u8, 3 pad, session u64, seq u64,        |
|      | sent_at f64 (the sender's own monotonic clock), all big-endian                    |
| body | a msgpack map, at most ``MAX_BODY_BYTES``; its fields depend on the kind          |
| data | FRAME only: the wire frame (``diffstream.transport.wire``) or a prefix of it      |

``session`` is the sending process's random id (the sender's stream session, or the
receiver's instance); ``seq`` is the frame number for FRAME and REPORT, a message counter
otherwise. A FRAME's body carries the sender's half of the frame's ``FrameRecord``, so the
receiver's log holds everything the sender's does; a REPORT carries the receiver's half back.

Everything received is untrusted, even from an authenticated peer: part count, sizes and
every body field are checked before use, msgpack runs with explicit limits, and each
failure is a ``ProtocolError`` whose ``kind`` the receiving side counts.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import fields
from enum import IntEnum
from typing import Any, NamedTuple

import msgpack
import zmq

from diffstream.live.paths import check_id
from diffstream.pipeline.records import Arrival, Outcome, SenderHalf
from diffstream.transport.wire import thread_packer

MAGIC = b"DSL"
VERSION = 1
HEAD = struct.Struct(">3sBB3xQQd")
HEAD_SIZE = HEAD.size  # 32
MAX_BODY_BYTES = 256 * 1024  # a WELCOME carries the scenario; everything else is tiny
MAX_PARTS = 3
MAX_LIST = 1024  # seqs in a NEED / WELCOME
_U64 = 2**64 - 1
_U32 = 2**32 - 1
_I64 = 2**63 - 1


class Kind(IntEnum):
    FRAME = 1  # sender -> receiver: one frame
    HELLO = 2  # receiver -> sender: "I am here" (also the first clock ping)
    WELCOME = 3  # sender -> receiver: stream description (also the first clock pong)
    REPORT = 4  # receiver -> sender: what happened to one frame
    PING = 5  # receiver -> sender: clock/RTT probe
    PONG = 6  # sender -> receiver: probe answer
    NEED = 7  # sender -> receiver: resend the reports of these seqs
    END = 8  # sender -> receiver: the stream is over
    BYE = 9  # receiver -> sender: done (answer to END)
    REFUSED = 10  # sender -> receiver: the stream is bound to another receiver (or was taken)


TO_RECEIVER = frozenset({Kind.FRAME, Kind.WELCOME, Kind.PONG, Kind.NEED, Kind.END,
                         Kind.REFUSED})
TO_SENDER = frozenset({Kind.HELLO, Kind.REPORT, Kind.PING, Kind.BYE})

ERROR_KINDS = frozenset(
    {
        "bad_magic",  # not a diffstream live message
        "unknown_version",  # a protocol version this build does not speak
        "unknown_kind",  # kind byte not in Kind
        "unexpected",  # a valid kind that does not travel in this direction
        "parts",  # wrong number of parts
        "oversized",  # a part over its bound
        "malformed",  # head or body structure/field invalid
    }
)


class ProtocolError(ValueError):
    """A message that cannot be used; ``kind`` is what the receiving side counts."""

    def __init__(self, kind: str, message: str) -> None:
        if kind not in ERROR_KINDS:
            raise AssertionError(f"unknown ProtocolError kind {kind!r}")
        super().__init__(f"{kind}: {message}")
        self.kind = kind


_KIND_OF: dict[int, Kind] = {int(k): k for k in Kind}


class Message(NamedTuple):  # immutable; a tuple is built in a fraction of a dataclass's time
    kind: Kind
    session: int
    seq: int
    sent_at: float
    body: dict[str, Any]
    data: Any = None  # FRAME: bytes-like wire frame (prefix); None otherwise


# --------------------------------------------------------------------------- fields
# A body schema maps field name -> checker(value) -> cleaned value (raises ValueError).
Checker = Callable[[Any], Any]


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def num(lo: float = -math.inf, hi: float = math.inf, *, optional: bool = False,
        finite: bool = True) -> Checker:
    """A number in [lo, hi] (ints accepted); None allowed when optional; nan/inf when not
    ``finite`` (quality scores: an identical image has infinite PSNR)."""

    def check(v: Any) -> Any:
        if type(v) is float and lo <= v <= hi and v - v == 0.0:  # fast path: finite, in range
            return v
        if v is None and optional:
            return None
        if not (_is_int(v) or isinstance(v, float)):
            raise ValueError(f"must be a number, got {type(v).__name__}")
        try:
            f = float(v)
        except OverflowError:
            raise ValueError("is not a finite number") from None
        if math.isnan(f) or math.isinf(f):
            if finite:
                raise ValueError("is not a finite number")
            return f
        if not lo <= f <= hi:
            raise ValueError(f"={f:g} outside [{lo:g}, {hi:g}]")
        return f

    return check


def integer(lo: int = 0, hi: int = _I64, *, optional: bool = False) -> Checker:
    def check(v: Any) -> Any:
        if type(v) is int and lo <= v <= hi:  # fast path
            return v
        if v is None and optional:
            return None
        if not _is_int(v):
            raise ValueError(f"must be an int, got {type(v).__name__}")
        if not lo <= v <= hi:
            raise ValueError(f"={v} outside [{lo}, {hi}]")
        return int(v)

    return check


def text(max_len: int = 256) -> Checker:
    def check(v: Any) -> Any:
        if not isinstance(v, str):
            raise ValueError(f"must be a str, got {type(v).__name__}")
        if len(v) > max_len:
            raise ValueError(f"longer than {max_len} characters")
        return v

    return check


def ident(v: Any) -> Any:
    """A stream id: it names a folder on the receiver, so no path may hide in it."""
    return check_id(v)


def flag(v: Any) -> Any:
    if not isinstance(v, bool):
        raise ValueError(f"must be a bool, got {type(v).__name__}")
    return v


def seq_list(v: Any) -> Any:
    if not isinstance(v, list) or len(v) > MAX_LIST:
        raise ValueError(f"must be a list of at most {MAX_LIST} ints")
    if not all(_is_int(s) and 0 <= s <= _U32 for s in v):
        raise ValueError("must hold u32 sequence numbers")
    return v


def mapping(v: Any) -> Any:
    if not isinstance(v, dict):
        raise ValueError(f"must be a map, got {type(v).__name__}")
    return v


_T = num()
_T_OPT = num(optional=True)
_NONNEG = num(0.0)
_Q = num(optional=True, finite=False)

# Body schemas of FRAME and REPORT come from the record halves' own type hints
# (``pipeline.records``), so no field list is written twice; tighter bounds are added here.
_BY_TYPE: dict[str, Checker] = {
    "float": _T, "float | None": _T_OPT, "int": integer(), "int | None": integer(optional=True),
    "bool": flag, "str": text(1024),
}


def _schema(*halves: type, bounds: dict[str, Checker]) -> dict[str, Checker]:
    out: dict[str, Checker] = {}
    for half in halves:
        for f in fields(half):
            out[f.name] = bounds.get(f.name) or _BY_TYPE[str(f.type)]
    return out


# The sender's half of a FrameRecord, sent with each frame, plus the frame's length.
FRAME_INFO: dict[str, Checker] = {
    **_schema(SenderHalf, bounds={
        "arm": text(), "codec": text(64), "policy": text(64), "packets": integer(1),
        "bpp": _NONNEG, "encode_ms": _NONNEG, "encode_charged_s": _NONNEG,
        "throughput_est_bps": num(0.0, optional=True), "capacity_bps": num(0.0, optional=True),
        "queue_bytes": _NONNEG}),
    "frame_len": integer(0, _U32),
}

# The receiver's half of a FrameRecord plus the delivery-report fields, sent back.
REPORT_INFO: dict[str, Checker] = {
    **_schema(Arrival, Outcome, bounds={
        "decode_ms": _NONNEG, "decode_charged_s": _NONNEG, "stall_s": _NONNEG,
        "psnr_db": _Q, "ms_ssim": _Q, "ssim": _Q, "ssim_db": _Q, "error": text(2048)}),
    "throughput_bps": num(0.0, optional=True), "buffer_s": _NONNEG,
    "offset_err_s": num(0.0, optional=True), "rtt_s": num(0.0, optional=True),
}

SCHEMAS: dict[Kind, dict[str, Checker]] = {
    Kind.FRAME: FRAME_INFO,
    Kind.HELLO: {"name": text(64), "proto": integer(0, 255)},
    Kind.WELCOME: {
        "stream_id": ident, "scenario": mapping, "arm": text(), "epoch": _T,
        "next_seq": integer(0, _U32), "frames": integer(0, _U32), "t1": _T, "t2": _T,
        "want": seq_list, "shaping": flag,
    },
    Kind.REPORT: REPORT_INFO,
    Kind.PING: {},
    Kind.PONG: {"t1": _T, "t2": _T},
    Kind.NEED: {"seqs": seq_list},
    Kind.END: {"last_seq": integer(-1, _U32)},
    Kind.BYE: {"reason": text(256)},
    Kind.REFUSED: {"reason": text(256)},
}


def check_body(kind: Kind, body: Any) -> dict[str, Any]:
    """Validate a decoded body against its kind's schema: every field present and valid.

    Unknown extra fields are ignored (a newer peer may add some), never passed on.
    """
    if not isinstance(body, dict):
        raise ProtocolError("malformed", f"{kind.name} body is a {type(body).__name__}, not a map")
    out: dict[str, Any] = {}
    name = ""
    try:
        for name, checker in SCHEMAS[kind].items():
            out[name] = checker(body[name])
    except KeyError:
        raise ProtocolError("malformed", f"{kind.name} body lacks {name!r}") from None
    except ValueError as exc:
        raise ProtocolError("malformed", f"{kind.name}.{name} {exc}") from None
    return out


# --------------------------------------------------------------------------- encode


def encode(kind: Kind, session: int, seq: int, sent_at: float, body: dict[str, Any],
           data: Any = None) -> list[Any]:
    """The parts of one message (data, when given, is passed through without a copy)."""
    head = HEAD.pack(MAGIC, VERSION, kind, session, seq, sent_at)
    if data is None:
        return [head, thread_packer().pack(body)]
    return [head, thread_packer().pack(body), data]


# --------------------------------------------------------------------------- decode


_BODY_LIMITS: dict[str, Any] = dict(
    raw=False, strict_map_key=True, use_list=True, max_str_len=MAX_BODY_BYTES,
    max_bin_len=MAX_BODY_BYTES, max_array_len=MAX_LIST * 4, max_map_len=4096, max_ext_len=0)


def _buffer(part: Any) -> Any:
    """Bytes-like view of a received part (zmq.Frame or bytes) without copying."""
    return part.buffer if hasattr(part, "buffer") else part


def decode(parts: Sequence[Any], *, allowed: frozenset[Kind], max_data_bytes: int,
           validate: bool = True) -> Message:
    """Parse and check one received message (its parts, routing id already removed).

    ``allowed``: the kinds that may travel in this direction. ``validate=False`` skips the
    body schema (the caller checks it later); sizes and structure are always checked.
    """
    if not 2 <= len(parts) <= MAX_PARTS:
        raise ProtocolError("parts", f"{len(parts)} parts, expected 2 or 3")
    head = _buffer(parts[0])
    if len(head) != HEAD_SIZE:
        if len(head) >= 3 and bytes(head[:3]) != MAGIC:
            raise ProtocolError("bad_magic", "not a diffstream live message")
        raise ProtocolError("malformed", f"head of {len(head)} bytes, expected {HEAD_SIZE}")
    magic, version, kind_id, session, seq, sent_at = HEAD.unpack(head)
    if magic != MAGIC:
        raise ProtocolError("bad_magic", f"starts with {magic!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise ProtocolError("unknown_version", f"version {version}, this build speaks {VERSION}")
    kind = _KIND_OF.get(kind_id)
    if kind is None:
        raise ProtocolError("unknown_kind", f"kind {kind_id}")
    if kind not in allowed:
        raise ProtocolError("unexpected", f"{kind.name} does not travel this way")
    if not math.isfinite(sent_at):
        raise ProtocolError("malformed", "sent_at is not finite")
    if (len(parts) == 3) != (kind is Kind.FRAME):
        raise ProtocolError("parts", f"{kind.name} with {len(parts)} parts")
    raw_body = _buffer(parts[1])
    if len(raw_body) > MAX_BODY_BYTES:
        raise ProtocolError("oversized", f"body of {len(raw_body)} bytes > {MAX_BODY_BYTES}")
    try:
        body = msgpack.unpackb(raw_body, **_BODY_LIMITS)
    except Exception as exc:  # untrusted bytes: any msgpack failure is a malformed body
        raise ProtocolError("malformed", f"body is not valid msgpack: {exc!r:.120}") from None
    if validate:
        body = check_body(kind, body)
    elif not isinstance(body, dict):
        raise ProtocolError("malformed", "body is not a map")
    data = None
    if kind is Kind.FRAME:
        data = _buffer(parts[2])
        if len(data) > max_data_bytes:
            raise ProtocolError("oversized", f"frame of {len(data)} bytes > {max_data_bytes}")
    return Message(kind, session, seq, sent_at, body, data)


_SNDMORE = int(zmq.SNDMORE)


def send_parts(sock: Any, parts: Sequence[Any], flags: int = 0, *, copy: bool = True) -> Any:
    """``sock.send_multipart(parts, flags, copy=copy)`` for a fraction of its cost.

    pyzmq's send_multipart combines its enum flags once per part (IntFlag arithmetic, in
    Python) and passes keywords down two layers: about 4 us per 4-part message, as much as
    the rest of a small frame's envelope. As there, every part is checked for the buffer
    interface before any is queued (so a bad part never leaves half a message behind), and a
    NOBLOCK failure on the first part queues nothing. ``copy`` applies to the last part (the
    data); pyzmq copies the small parts before it in any case.
    """
    for part in parts:
        if type(part) is not bytes:
            memoryview(part)  # TypeError: not a buffer
    flags = int(flags)
    more = _SNDMORE | flags
    *init, last = parts
    send = sock.send
    for part in init:
        send(part, more)
    return send(last, flags, copy=copy)


def recv_parts(sock: Any, max_parts: int = MAX_PARTS + 1) -> tuple[list[Any], int]:
    """Receive one multipart message without copying; keeps at most ``max_parts`` parts.

    Extra parts are read and dropped at once, so a peer cannot make us hold an unbounded
    number of them. Returns (kept parts, total count); the caller rejects total > kept.
    """
    parts: list[Any] = []
    total = 0
    while True:
        frame = sock.recv(copy=False)
        total += 1
        if len(parts) < max_parts:
            parts.append(frame)
        if not frame.more:
            return parts, total
