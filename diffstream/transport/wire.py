"""The versioned wire frame: one encoded image frame as the bytes that cross the link.

A frame is a fixed 12-byte preamble, a msgpack header and the codec payload as raw bytes:

| offset          | size        | field        | meaning                                       |
|-----------------|-------------|--------------|-----------------------------------------------|
| 0               | 3           | magic        | ``b"DSF"``                                    |
| 3               | 1           | version      | u8, ``WIRE_VERSION``                          |
| 4               | 4           | header_len   | u32 big-endian: bytes of the msgpack header   |
| 8               | 4           | header_crc32 | u32 big-endian: CRC-32 of bytes 0..7 + header |
| 12              | header_len  | header       | msgpack map, the fields of ``FrameHeader``    |
| 12 + header_len | payload_len | payload      | codec bytes; the header gives their length    |
|                 |             |              | (``payload_len``) and CRC (``payload_crc32``) |

The header CRC also covers magic, version and header_len, so every single-byte error before
the payload is caught before the header is parsed; the payload has its own CRC so that a
progressive receiver can still use a verified header with a cut payload (``allow_prefix``).
A payload *prefix* cannot be checksummed (only the whole payload has a CRC): the packet
layer hands over only contiguous bytes, and the codec must reject what it cannot decode.
Both CRCs are the standard CRC-32 (zlib's), computed by ``transport.checksum.crc32``
(python-isal where installed: the same values, ~17x faster on a 768 kB payload).

Everything read from the network is untrusted: lengths are checked against the data and the
bounds before slicing, msgpack runs with explicit size limits, each header field is
type- and range-checked, and every failure is a ``WireError`` with a ``kind`` a receiver
can count (a bad frame is dropped, never fatal).

The header's ``arm`` is a fixed-width tag of the arm's label (``arm_tag``), so an arm's name
costs no bytes; the receiver knows its arm from the session and checks the tag.
"""

from __future__ import annotations

import functools
import hashlib
import math
import struct
import threading
from dataclasses import dataclass, field, fields
from typing import Any

import msgpack

from diffstream.transport.checksum import crc32

MAGIC = b"DSF"
# 2: the header's ``arm`` is ``arm_tag(label)``, not the label (version 1 sent the label)
WIRE_VERSION = 2
PREAMBLE = struct.Struct(">3sBII")  # magic, version, header_len, header_crc32
PREAMBLE_SIZE = PREAMBLE.size  # 12
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
MAX_SEQ = 2**32 - 1  # packets carry the frame seq as u32
MAX_SIDE = 16384  # largest image height/width a header may declare
MAX_META_DEPTH = 16  # nesting of lists/maps inside ``meta``
_U32 = 2**32 - 1
_I64 = 2**63 - 1

KINDS: frozenset[str] = frozenset(
    {
        "truncated",  # fewer bytes than the preamble/header/payload declare
        "bad_magic",  # not a diffstream frame
        "unknown_version",  # a frame format this build does not read
        "header_checksum",  # preamble or header bytes corrupted
        "payload_checksum",  # full-length payload does not match payload_crc32
        "malformed_header",  # header is not a valid msgpack map of well-typed fields
        "oversized",  # a declared length exceeds the receiver's bounds
        "trailing_data",  # bytes after the declared payload end
    }
)


class WireError(ValueError):
    """A frame that cannot be used; ``kind`` (one of ``KINDS``) is what receivers count."""

    def __init__(self, kind: str, message: str) -> None:
        if kind not in KINDS:
            raise AssertionError(f"unknown WireError kind {kind!r}")
        super().__init__(f"{kind}: {message}")
        self.kind = kind


@functools.lru_cache(maxsize=1024)  # asked per frame, by the sender and the receiver
def arm_tag(label: str) -> str:
    """What a frame header carries for its arm: 8 hex digits of a hash of the label.

    The label itself made an arm's name cost bytes on every frame (a byte per character),
    so two arms that differ only in name, or in how long their policy's name is, were sent
    different wire bytes: on the policy leaderboard a 1-byte longer label moved a trace's
    QoE by up to 0.9 dB through which frames the loss hit. Every label now costs the same.
    The receiver knows its arm (the session tells it) and checks the tag against it.
    """
    return hashlib.blake2s(label.encode("utf-8"), digest_size=4).hexdigest()


@dataclass
class FrameHeader:
    """What the receiver needs besides the payload; sent as a msgpack map.

    ``payload_len`` and ``payload_crc32`` are filled by ``pack_frame``. ``meta`` is the
    codec's side information (str keys; None/bool/int/float/str/bytes/list/map values);
    tuples in it come back as lists.
    """

    seq: int
    arm: str  # arm_tag(label): the same width for every arm name
    codec: str
    budget_bits: int
    capture_s: float
    send_s: float
    shape: tuple[int, int]
    skipped: bool = False
    steps: int = 1
    meta: dict[str, Any] = field(default_factory=dict)
    payload_len: int = 0
    payload_crc32: int = 0

    def __post_init__(self) -> None:
        # msgpack has no tuples; normalise so a round trip compares equal.
        if isinstance(self.shape, list):
            self.shape = tuple(self.shape)  # type: ignore[assignment]


_FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(FrameHeader))


@dataclass
class UnpackedFrame:
    """A decoded frame; ``complete`` is False only for an ``allow_prefix`` payload prefix."""

    header: FrameHeader
    payload: bytes
    complete: bool


# --------------------------------------------------------------------------- validation


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# The checks below run per frame on both sides. Each field has a fast path for the exact
# types msgpack returns (and senders normally use); anything else takes the general check,
# which accepts and rejects exactly what it always did and says why.


def _int_field(raw: dict[str, Any], name: str, lo: int, hi: int) -> int:
    value = raw[name]
    if not _is_int(value):
        raise WireError("malformed_header", f"{name} must be an int, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise WireError("malformed_header", f"{name}={value} outside [{lo}, {hi}]")
    return int(value)


def _float_field(raw: dict[str, Any], name: str) -> float:
    value = raw[name]
    if not (_is_int(value) or isinstance(value, float)):
        raise WireError("malformed_header", f"{name} must be a number, got {type(value).__name__}")
    try:
        out = float(value)
    except OverflowError:
        raise WireError("malformed_header", f"{name} is not a finite number") from None
    if not math.isfinite(out):
        raise WireError("malformed_header", f"{name} is not a finite number")
    return out


def _str_field(raw: dict[str, Any], name: str) -> str:
    value = raw[name]
    if not isinstance(value, str):
        raise WireError("malformed_header", f"{name} must be a str, got {type(value).__name__}")
    return value


def _check_meta(value: object, path: str, depth: int) -> None:
    """Allow only plain msgpack data, bounded in depth, so decoders never see odd objects."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return
    if depth >= MAX_META_DEPTH:
        raise WireError("malformed_header", f"{path} nested deeper than {MAX_META_DEPTH}")
    if type(value) in (list, tuple):  # exact: msgpack.ExtType is a namedtuple
        for i, item in enumerate(value):
            _check_meta(item, f"{path}[{i}]", depth + 1)
        return
    if type(value) is dict:
        for key, item in value.items():
            if not isinstance(key, str):
                raise WireError("malformed_header", f"{path} has a non-str key {key!r:.40}")
            _check_meta(item, f"{path}.{key}", depth + 1)
        return
    raise WireError("malformed_header", f"{path} has unsupported type {type(value).__name__}")


_PLAIN = frozenset({type(None), bool, int, float, str, bytes})


def _check_meta_map(meta: object) -> None:
    """``_check_meta(meta, "meta", 0)``; a flat map of plain values (the usual) in one pass."""
    if type(meta) is dict:
        for key, item in meta.items():
            if type(key) is not str or type(item) not in _PLAIN:
                break
        else:
            return
    _check_meta(meta, "meta", 0)


def _check_shape(shape: object) -> None:
    if (
        not isinstance(shape, (list, tuple))
        or len(shape) != 2
        or not all(_is_int(s) and 1 <= s <= MAX_SIDE for s in shape)
    ):
        raise WireError(
            "malformed_header",
            f"shape must be [h, w] with ints in [1, {MAX_SIDE}], got {shape!r:.60}",
        )


_FIELD_SET = frozenset(_FIELD_NAMES)


def _validate(raw: object, max_payload_bytes: int, *, build: bool = True) -> FrameHeader | None:
    """Turn an untrusted decoded map into a FrameHeader, or raise WireError.

    ``build=False`` (the sender checking its own header): check only, return None.
    """
    if not isinstance(raw, dict):
        raise WireError("malformed_header", f"header is a {type(raw).__name__}, not a map")
    if not _FIELD_SET <= raw.keys():
        missing = [name for name in _FIELD_NAMES if name not in raw]
        raise WireError("malformed_header", f"header lacks field(s) {', '.join(missing)}")
    payload_len = raw["payload_len"]
    if type(payload_len) is not int or not 0 <= payload_len <= _I64:
        payload_len = _int_field(raw, "payload_len", 0, _I64)
    if payload_len > max_payload_bytes:
        raise WireError(
            "oversized", f"payload_len={payload_len} exceeds the limit of {max_payload_bytes}"
        )
    shape = raw["shape"]
    if type(shape) is list and len(shape) == 2:
        h, w = shape
        if not (type(h) is int and type(w) is int and 1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
            _check_shape(shape)
    else:
        _check_shape(shape)
    skipped = raw["skipped"]
    if not isinstance(skipped, bool):
        raise WireError("malformed_header", "skipped must be a bool")
    if skipped and payload_len:
        raise WireError("malformed_header", f"skipped frame declares payload_len={payload_len}")
    meta = raw["meta"]
    if not isinstance(meta, dict):
        raise WireError("malformed_header", f"meta is a {type(meta).__name__}, not a map")
    _check_meta_map(meta)
    seq = raw["seq"]
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        seq = _int_field(raw, "seq", 0, MAX_SEQ)
    arm = raw["arm"]
    if type(arm) is not str:
        arm = _str_field(raw, "arm")
    codec = raw["codec"]
    if type(codec) is not str:
        codec = _str_field(raw, "codec")
    budget_bits = raw["budget_bits"]
    if type(budget_bits) is not int or not 0 <= budget_bits <= _I64:
        budget_bits = _int_field(raw, "budget_bits", 0, _I64)
    capture_s = raw["capture_s"]
    if type(capture_s) is not float or capture_s - capture_s != 0.0:  # not finite: nan
        capture_s = _float_field(raw, "capture_s")
    send_s = raw["send_s"]
    if type(send_s) is not float or send_s - send_s != 0.0:
        send_s = _float_field(raw, "send_s")
    steps = raw["steps"]
    if type(steps) is not int or not 0 <= steps <= _I64:
        steps = _int_field(raw, "steps", 0, _I64)
    payload_crc32 = raw["payload_crc32"]
    if type(payload_crc32) is not int or not 0 <= payload_crc32 <= _U32:
        payload_crc32 = _int_field(raw, "payload_crc32", 0, _U32)
    if not build:
        return None
    return FrameHeader(seq, arm, codec, budget_bits, capture_s, send_s,
                       (int(shape[0]), int(shape[1])), skipped, steps, meta, payload_len,
                       payload_crc32)


# --------------------------------------------------------------------------- pack

_HEAD8 = struct.Struct(">3sBI")  # the preamble's first 8 bytes: what the header CRC starts on
_tls = threading.local()


def thread_packer() -> msgpack.Packer:
    """This thread's reusable msgpack Packer (same bytes as ``packb``, without its setup;
    the wire header and the live envelope share it)."""
    try:
        return _tls.packer  # type: ignore[no-any-return]
    except AttributeError:
        _tls.packer = packer = msgpack.Packer(use_bin_type=True)
        return packer


def _header_map(header: FrameHeader) -> dict[str, Any]:
    # a shallow map: asdict's deep copy of ``meta`` was 3/4 of the cost of packing a frame
    raw = {name: getattr(header, name) for name in _FIELD_NAMES}
    if isinstance(header.shape, (tuple, list)):  # msgpack has no tuples: the wire has a list
        raw["shape"] = list(header.shape)
    return raw


def _pack_header(raw: dict[str, Any]) -> bytes:
    """Validate (so a sender bug fails at the sender, not the receiver) and msgpack it."""
    _validate(raw, DEFAULT_MAX_PAYLOAD_BYTES, build=False)
    try:
        return thread_packer().pack(raw)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:  # e.g. an int wider than 64 bits
        raise WireError("malformed_header", f"header cannot be packed: {exc}") from None


def _encode_header(header: FrameHeader) -> bytes:
    return _pack_header(_header_map(header))


def pack_frame(header: FrameHeader, payload: bytes) -> bytes:
    """Serialise one frame; fills ``payload_len``/``payload_crc32`` (the input is not changed).

    Raises WireError ("malformed_header" or "oversized") when the header is invalid or the
    frame would exceed the default receiver bounds, so no unreadable frame is ever sent.
    """
    payload = bytes(payload)  # no copy for bytes
    n = len(payload)
    if n > DEFAULT_MAX_PAYLOAD_BYTES:
        raise WireError(
            "oversized", f"payload of {n} bytes exceeds {DEFAULT_MAX_PAYLOAD_BYTES}"
        )
    raw = _header_map(header)
    raw["payload_len"] = n
    raw["payload_crc32"] = crc32(payload)
    header_bytes = _pack_header(raw)
    header_len = len(header_bytes)
    if header_len > DEFAULT_MAX_HEADER_BYTES:
        raise WireError(
            "oversized",
            f"header of {header_len} bytes exceeds {DEFAULT_MAX_HEADER_BYTES}; "
            "keep codec meta small",
        )
    header_crc = crc32(header_bytes, crc32(_HEAD8.pack(MAGIC, WIRE_VERSION, header_len)))
    return b"".join(
        (PREAMBLE.pack(MAGIC, WIRE_VERSION, header_len, header_crc), header_bytes, payload)
    )


def header_size(header: FrameHeader) -> int:
    """Bytes before the payload (preamble + msgpack header), counted as header bytes.

    Exact for a header whose ``payload_len``/``payload_crc32`` are filled in (as
    ``unpack_frame`` returns it). msgpack ints are variable-width, so for a header not yet
    packed (both 0) the real size is up to 8 bytes larger.
    """
    return PREAMBLE_SIZE + len(_encode_header(header))


# --------------------------------------------------------------------------- unpack


@functools.lru_cache(maxsize=8)
def _unpack_limits(max_header_bytes: int) -> dict[str, Any]:
    limit = max(max_header_bytes, 0)
    return dict(raw=False, strict_map_key=True, use_list=True, max_str_len=limit,
                max_bin_len=limit, max_array_len=limit, max_map_len=limit, max_ext_len=limit)


def unpack_frame(
    data: bytes,
    *,
    allow_prefix: bool = False,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> UnpackedFrame:
    """Parse and verify one frame; every failure is a WireError.

    allow_prefix: accept a payload shorter than ``payload_len`` (a progressive frame cut by
    loss or a deadline) and return it with ``complete=False``; the header must still verify.
    ``data`` must be bytes-like (a TypeError otherwise is a caller bug, not a bad frame).
    """
    view = memoryview(data).cast("B")
    size = len(view)
    if size >= PREAMBLE_SIZE:
        magic, version, header_len, header_crc = PREAMBLE.unpack_from(view)
        if magic != MAGIC:
            raise WireError("bad_magic", f"frame starts with {magic!r}, expected {MAGIC!r}")
        if version != WIRE_VERSION:
            raise WireError(
                "unknown_version",
                f"wire version {version}, this build reads version {WIRE_VERSION}",
            )
    else:
        got = bytes(view[: len(MAGIC)])
        if got != MAGIC[: len(got)]:
            raise WireError("bad_magic", f"frame starts with {got!r}, expected {MAGIC!r}")
        if size > len(MAGIC) and view[len(MAGIC)] != WIRE_VERSION:
            raise WireError(
                "unknown_version",
                f"wire version {view[len(MAGIC)]}, this build reads version {WIRE_VERSION}",
            )
        raise WireError("truncated", f"{size} bytes, the preamble alone is {PREAMBLE_SIZE}")
    if header_len > max_header_bytes:
        raise WireError(
            "oversized", f"header_len={header_len} exceeds the limit of {max_header_bytes}"
        )
    header_end = PREAMBLE_SIZE + header_len
    if size < header_end:
        raise WireError("truncated", f"{size} bytes, header ends at byte {header_end}")
    header_bytes = view[PREAMBLE_SIZE:header_end]
    if crc32(header_bytes, crc32(view[:8])) != header_crc:
        raise WireError("header_checksum", "preamble/header CRC-32 mismatch")
    try:
        raw = msgpack.unpackb(header_bytes, **_unpack_limits(max_header_bytes))
    except Exception as exc:  # untrusted bytes: any parser failure means a malformed header
        raise WireError("malformed_header", f"header is not valid msgpack: {exc!r:.200}") from None
    header = _validate(raw, max_payload_bytes)
    assert header is not None
    available = size - header_end
    if available > header.payload_len:
        raise WireError(
            "trailing_data",
            f"{available - header.payload_len} bytes after the declared payload_len="
            f"{header.payload_len}",
        )
    payload = bytes(view[header_end:])
    if available < header.payload_len:
        if allow_prefix:
            return UnpackedFrame(header=header, payload=payload, complete=False)
        raise WireError("truncated", f"payload has {available} of its {header.payload_len} bytes")
    if crc32(payload) != header.payload_crc32:
        raise WireError("payload_checksum", "payload CRC-32 mismatch")
    return UnpackedFrame(header=header, payload=payload, complete=True)
