"""Wire frame: round trips, and that every kind of damage is a WireError, never a bad decode."""

from __future__ import annotations

import struct
import time
import zlib
from dataclasses import asdict, replace
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffstream.transport.wire import (
    KINDS,
    MAGIC,
    PREAMBLE_SIZE,
    WIRE_VERSION,
    FrameHeader,
    WireError,
    header_size,
    pack_frame,
    unpack_frame,
)


def make_header(**kw: Any) -> FrameHeader:
    base: dict[str, Any] = dict(
        seq=7, arm="badiff-mpc", codec="diffc", budget_bits=4096, capture_s=0.7,
        send_s=0.7125, shape=(64, 64), skipped=False, steps=12, meta={"knob": 3},
    )  # fmt: skip
    base.update(kw)
    return FrameHeader(**base)


def signed(hdr: bytes, payload: bytes = b"", version: int = WIRE_VERSION) -> bytes:
    """A frame around arbitrary header bytes with a *correct* CRC, to reach the parser."""
    head = MAGIC + struct.pack(">BI", version, len(hdr))
    return head + struct.pack(">I", zlib.crc32(hdr, zlib.crc32(head))) + hdr + payload


def raw_frame(header_map: Any, payload: bytes = b"", version: int = WIRE_VERSION) -> bytes:
    """A frame with an arbitrary header object, correctly signed, to reach the validator."""
    return signed(msgpack.packb(header_map, use_bin_type=True), payload, version)


def valid_map(payload: bytes = b"", **kw: Any) -> dict[str, Any]:
    m = asdict(make_header())
    m["shape"] = list(m["shape"])
    m.update(payload_len=len(payload), payload_crc32=zlib.crc32(payload))
    m.update(kw)
    return m


def kind_of(data: bytes, **kw: Any) -> str:
    with pytest.raises(WireError) as info:
        unpack_frame(data, **kw)
    assert info.value.kind in KINDS
    return info.value.kind


SMALL = pack_frame(make_header(meta={"q": b"\x00\x01", "l": [1, [2.5, "x"]]}), b"payload!" * 4)


# ------------------------------------------------------------------------------ round trip

ROUND_TRIPS = {
    "empty": (make_header(meta={}), b""),
    "skipped": (make_header(skipped=True, meta={"reason": "below floor"}), b""),
    "5MB": (make_header(shape=(2048, 2048)), bytes(range(256)) * (5 * 1024 * 1024 // 256)),
    "rich-meta": (
        make_header(
            arm="ärm-ü",
            meta={
                "b": b"\xff\x00",
                "n": [[1, 2], [b"x", {"k": None}]],
                "f": -1.5e-300,
                "big": 2**63,
                "neg": -(2**63),
                "t": True,
            },
        ),
        b"\x00" * 17,
    ),  # fmt: skip
}


@pytest.mark.parametrize("name", list(ROUND_TRIPS))
def test_round_trip(name: str) -> None:
    header, payload = ROUND_TRIPS[name]
    frame = pack_frame(header, payload)
    out = unpack_frame(frame)
    assert out.complete and out.payload == payload
    filled = replace(header, payload_len=len(payload), payload_crc32=zlib.crc32(payload))
    assert out.header == filled
    assert header_size(out.header) == len(frame) - len(payload)
    assert frame[:4] == MAGIC + bytes([WIRE_VERSION])
    (header_len,) = struct.unpack(">I", frame[4:8])
    assert PREAMBLE_SIZE + header_len == header_size(out.header)


def test_pack_leaves_input_alone_and_fills_lengths() -> None:
    header = make_header()
    out = unpack_frame(pack_frame(header, b"abc"))
    assert (header.payload_len, header.payload_crc32) == (0, 0)
    assert (out.header.payload_len, out.header.payload_crc32) == (3, zlib.crc32(b"abc"))
    assert out.header.shape == (64, 64) and isinstance(out.header.shape, tuple)


def test_tuples_in_meta_come_back_as_lists() -> None:
    out = unpack_frame(pack_frame(make_header(meta={"offs": (1, 2)}), b""))
    assert out.header.meta == {"offs": [1, 2]}


def test_header_size_of_unpacked_header_is_at_most_8_bytes_more() -> None:
    header = make_header()
    packed = unpack_frame(pack_frame(header, b"\x01" * 100_000)).header
    assert 0 <= header_size(packed) - header_size(header) <= 8


def test_unknown_extra_keys_are_tolerated() -> None:
    out = unpack_frame(raw_frame(valid_map(b"hi", future_field=[1, 2]), b"hi"))
    assert out.payload == b"hi" and out.header.seq == 7


def test_int_timestamps_are_accepted_as_floats() -> None:
    out = unpack_frame(raw_frame(valid_map(capture_s=3)))
    assert out.header.capture_s == 3.0 and isinstance(out.header.capture_s, float)


# ------------------------------------------------------------------------------ corruption


def test_every_bit_flip_is_detected() -> None:
    for allow_prefix in (False, True):
        for pos in range(len(SMALL)):
            for bit in range(8):
                bad = bytearray(SMALL)
                bad[pos] ^= 1 << bit
                kind_of(bytes(bad), allow_prefix=allow_prefix)


def test_every_byte_replacement_is_detected() -> None:
    for pos in range(len(SMALL)):
        for value in (0x00, 0xFF, 0x80, 0x7F):
            if SMALL[pos] == value:
                continue
            bad = bytearray(SMALL)
            bad[pos] = value
            kind_of(bytes(bad))


def test_corruption_kinds_by_region() -> None:
    hs = len(SMALL) - 32
    flip = lambda pos: SMALL[:pos] + bytes([SMALL[pos] ^ 1]) + SMALL[pos + 1 :]  # noqa: E731
    assert kind_of(flip(0)) == "bad_magic"
    assert kind_of(flip(3)) == "unknown_version"
    assert kind_of(flip(9)) == "header_checksum"
    assert kind_of(flip(PREAMBLE_SIZE + 2)) == "header_checksum"
    assert kind_of(flip(hs + 5)) == "payload_checksum"
    assert kind_of(flip(hs + 5), allow_prefix=True) == "payload_checksum"


def test_every_truncation() -> None:
    hs = len(SMALL) - 32
    payload = SMALL[hs:]
    for n in range(len(SMALL)):
        assert kind_of(SMALL[:n]) == "truncated", n
        if n < hs:
            assert kind_of(SMALL[:n], allow_prefix=True) == "truncated", n
        else:
            out = unpack_frame(SMALL[:n], allow_prefix=True)
            assert not out.complete and out.payload == payload[: n - hs]
            assert out.header.payload_len == 32
    full = unpack_frame(SMALL, allow_prefix=True)
    assert full.complete and full.payload == payload


def test_trailing_bytes_are_rejected() -> None:
    assert kind_of(SMALL + b"\x00") == "trailing_data"
    assert kind_of(SMALL + b"\x00", allow_prefix=True) == "trailing_data"


def test_unknown_version_and_bad_magic() -> None:
    # version 1 carried the arm's label where version 2 carries its tag: refused, not misread
    for version in (WIRE_VERSION + 1, 1, 0):
        assert kind_of(raw_frame(valid_map(), version=version)) == "unknown_version"
    assert kind_of(b"GIF89a" + SMALL) == "bad_magic"
    assert kind_of(b"X") == "bad_magic"
    assert kind_of(b"") == "truncated"
    assert kind_of(b"DS") == "truncated"


def test_huge_declared_lengths_fail_fast() -> None:
    t0 = time.perf_counter()
    huge_header = MAGIC + struct.pack(">BII", WIRE_VERSION, 0xFFFFFFFF, 0) + b"\x80"
    assert kind_of(huge_header) == "oversized"
    assert kind_of(huge_header, max_header_bytes=2**33) == "truncated"
    assert kind_of(raw_frame(valid_map(payload_len=2**62))) == "oversized"
    assert kind_of(raw_frame(valid_map(payload_len=2**20)), max_payload_bytes=1000) == "oversized"
    big = raw_frame(valid_map(payload_len=60 * 1024 * 1024), b"abc")
    assert kind_of(big) == "truncated"
    out = unpack_frame(big, allow_prefix=True)
    assert out.payload == b"abc" and not out.complete
    for declared in (b"\xdb\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff", b"\xdd\xff\xff\xff\xff"):
        assert kind_of(signed(b"\x81\xa1k" + declared)) == "malformed_header"
    assert time.perf_counter() - t0 < 1.0


def test_header_bigger_than_bound_is_oversized() -> None:
    frame = pack_frame(make_header(meta={"blob": b"\x00" * 2000}), b"")
    assert kind_of(frame, max_header_bytes=1000) == "oversized"
    assert unpack_frame(frame, max_header_bytes=3000).complete


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


BAD_HEADERS: dict[str, Any] = {
    "not-a-map": [1, 2, 3],
    "missing-seq": {k: v for k, v in valid_map().items() if k != "seq"},
    "missing-meta": {k: v for k, v in valid_map().items() if k != "meta"},
    "seq-str": valid_map(seq="1"),
    "seq-negative": valid_map(seq=-1),
    "seq-too-big": valid_map(seq=2**32),
    "seq-bool": valid_map(seq=True),
    "seq-float": valid_map(seq=1.0),
    "arm-bytes": valid_map(arm=b"a"),
    "codec-int": valid_map(codec=5),
    "budget-negative": valid_map(budget_bits=-8),
    "steps-negative": valid_map(steps=-1),
    "capture-nan": valid_map(capture_s=float("nan")),
    "send-inf": valid_map(send_s=float("inf")),
    "capture-str": valid_map(capture_s="0"),
    "shape-zero": valid_map(shape=[0, 64]),
    "shape-3d": valid_map(shape=[64, 64, 3]),
    "shape-huge": valid_map(shape=[16385, 64]),
    "shape-float": valid_map(shape=[64.0, 64]),
    "shape-map": valid_map(shape={"h": 1}),
    "skipped-int": valid_map(skipped=1),
    "skipped-with-payload": valid_map(b"x", skipped=True),
    "payload-len-negative": valid_map(payload_len=-1),
    "crc-too-big": valid_map(payload_crc32=2**32),
    "meta-list": valid_map(meta=[1]),
    "meta-int-key": valid_map(meta={"a": {1: 2}}),
    "meta-ext": valid_map(meta={"e": msgpack.ExtType(5, b"zz")}),
    "meta-timestamp": valid_map(meta={"t": msgpack.Timestamp(1, 0)}),
    "meta-deep": valid_map(meta={"d": nested(20)}),
}


@pytest.mark.parametrize("name", list(BAD_HEADERS))
def test_malformed_headers(name: str) -> None:
    header_map = BAD_HEADERS[name]
    payload = b"x" if name == "skipped-with-payload" else b""
    assert kind_of(raw_frame(header_map, payload)) == "malformed_header"


def test_non_msgpack_header_bytes_are_malformed() -> None:
    for hdr in (
        b"",
        b"\xc1",
        b"\x81\xa1",
        b"\x80\x80",
        b"\xa2\xff\xfe",
        b"\x81\x01\x02",
        b"\x91" * 5000,
        b"\x81\xa1k" + b"\x91" * 3000 + b"\xc0",
    ):
        assert kind_of(signed(hdr)) == "malformed_header", hdr[:8]


@pytest.mark.parametrize(
    "kw",
    [dict(seq=-1), dict(shape=(0, 1)), dict(meta={"x": object()}), dict(meta={1: 2}),
     dict(meta={"x": 2**64}), dict(capture_s=float("nan")), dict(steps=1.5)],
)  # fmt: skip
def test_pack_rejects_invalid_headers(kw: dict[str, Any]) -> None:
    with pytest.raises(WireError) as info:
        pack_frame(make_header(**kw), b"")
    assert info.value.kind == "malformed_header"


def test_pack_rejects_skipped_with_payload_and_huge_meta() -> None:
    with pytest.raises(WireError, match="malformed_header"):
        pack_frame(make_header(skipped=True), b"x")
    with pytest.raises(WireError) as info:
        pack_frame(make_header(meta={"blob": b"\x00" * 70_000}), b"")
    assert info.value.kind == "oversized"


def test_wire_error_is_a_value_error_with_kind() -> None:
    with pytest.raises(ValueError, match="truncated"):
        unpack_frame(SMALL[:5])


# ------------------------------------------------------------------------------ fuzzing

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
# header maps are small (a dozen fields, up to 3 edits): 3000 cover them, at a third of
# the 10k run's 106 s of CI time
SLOW_HEADERS = settings(SLOW, max_examples=3_000)


def _only_wire_errors(data: bytes, allow_prefix: bool) -> None:
    try:
        out = unpack_frame(data, allow_prefix=allow_prefix)
    except WireError as exc:
        assert exc.kind in KINDS
        return
    # A success must be self-consistent: a checked payload, or a prefix when allowed.
    assert len(out.payload) <= out.header.payload_len
    if out.complete:
        assert zlib.crc32(out.payload) == out.header.payload_crc32
    else:
        assert allow_prefix


def _mutate(frame: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    """Apply (op, position, value) edits: overwrite, insert, delete, truncate."""
    buf = bytearray(frame)
    for op, pos, value in ops:
        at = pos % (len(buf) + 1)
        if op == 0 and at < len(buf):
            buf[at] = value
        elif op == 1:
            buf.insert(at, value)
        elif op == 2 and at < len(buf):
            del buf[at]
        elif op == 3:
            del buf[at:]
    return bytes(buf)


def _resign(frame: bytes) -> bytes:
    """Recompute the header CRC so a mutated header reaches msgpack and the validator."""
    if len(frame) < PREAMBLE_SIZE:
        return frame
    (header_len,) = struct.unpack(">I", frame[4:8])
    hdr = frame[PREAMBLE_SIZE : PREAMBLE_SIZE + header_len]
    crc = zlib.crc32(hdr, zlib.crc32(frame[:8]))
    return frame[:8] + struct.pack(">I", crc) + frame[PREAMBLE_SIZE:]


FRAMES = [pack_frame(h, p) for h, p in ROUND_TRIPS.values() if len(p) < 1000] + [SMALL]
edit_ops = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 10_000), st.integers(0, 255)), max_size=8
)
meta_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text()
    | st.binary(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)  # fmt: skip


def _fuzz_arbitrary(data: bytes, prefix: bool, allow_prefix: bool) -> None:
    if prefix:
        data = MAGIC + bytes([WIRE_VERSION]) + data
    _only_wire_errors(data, allow_prefix)


def _fuzz_mutated(index: int, ops: list[tuple[int, int, int]], resign: bool, ap: bool) -> None:
    frame = _mutate(FRAMES[index % len(FRAMES)], ops)
    _only_wire_errors(_resign(frame) if resign else frame, ap)


def _fuzz_header_maps(header_map: dict[str, Any], allow_prefix: bool) -> None:
    try:
        frame = raw_frame(header_map, b"p")
    except (TypeError, ValueError, OverflowError):
        return  # not packable, nothing to send
    _only_wire_errors(frame, allow_prefix)


fuzz_arbitrary_args = (st.binary(max_size=300), st.booleans(), st.booleans())
fuzz_mutated_args = (st.integers(0, 100), edit_ops, st.booleans(), st.booleans())
fuzz_header_args = (
    st.builds(
        lambda base, extra, drop: {
            **{k: v for k, v in base.items() if k not in drop},
            **extra,
        },
        st.just(valid_map(b"p")),
        st.dictionaries(st.sampled_from(list(valid_map())) | st.text(max_size=3), meta_values,
                        max_size=3),
        st.sets(st.sampled_from(list(valid_map())), max_size=2),
    ),
    st.booleans(),
)  # fmt: skip


@FAST
@given(*fuzz_arbitrary_args)
def test_fuzz_arbitrary_bytes(data: bytes, prefix: bool, allow_prefix: bool) -> None:
    _fuzz_arbitrary(data, prefix, allow_prefix)


@FAST
@given(*fuzz_mutated_args)
def test_fuzz_mutated_frames(index: int, ops: list, resign: bool, allow_prefix: bool) -> None:
    _fuzz_mutated(index, ops, resign, allow_prefix)


@FAST
@given(*fuzz_header_args)
def test_fuzz_header_fields(header_map: dict[str, Any], allow_prefix: bool) -> None:
    _fuzz_header_maps(header_map, allow_prefix)


@FAST
@given(meta=st.dictionaries(st.text(max_size=8), meta_values, max_size=5))
def test_fuzz_meta_round_trip(meta: dict[str, Any]) -> None:
    header = make_header(meta=meta)
    try:
        frame = pack_frame(header, b"z")
    except WireError as exc:
        assert exc.kind == "malformed_header"  # e.g. an int wider than msgpack's 64 bits
        return
    out = unpack_frame(frame).header.meta
    # NaN != NaN, so compare the msgpack encodings instead of the objects.
    assert msgpack.packb(out, use_bin_type=True) == msgpack.packb(meta, use_bin_type=True)


@pytest.mark.slow
@SLOW
@given(*fuzz_arbitrary_args)
def test_fuzz_arbitrary_bytes_slow(data: bytes, prefix: bool, allow_prefix: bool) -> None:
    _fuzz_arbitrary(data, prefix, allow_prefix)


@pytest.mark.slow
@SLOW
@given(*fuzz_mutated_args)
def test_fuzz_mutated_frames_slow(index: int, ops: list, resign: bool, allow_prefix: bool) -> None:
    _fuzz_mutated(index, ops, resign, allow_prefix)


@pytest.mark.slow
@SLOW_HEADERS
@given(*fuzz_header_args)
def test_fuzz_header_fields_slow(header_map: dict[str, Any], allow_prefix: bool) -> None:
    _fuzz_header_maps(header_map, allow_prefix)
