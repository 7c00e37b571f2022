"""The wire bytes do not move: golden frames, and pack_frame against the format as specified.

Header sizes feed every simulated figure (wire bytes, packets, loss), so a faster packer
must produce the same bytes for the same input. The golden frames were packed by the
implementation before its hot path was reworked (zlib CRCs, ``dataclasses.replace``,
``msgpack.packb``); the reference packer below is the docstring's table written out.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from diffstream.transport.wire import (
    MAGIC,
    WIRE_VERSION,
    FrameHeader,
    arm_tag,
    header_size,
    pack_frame,
    unpack_frame,
)

GOLDEN_RICH = bytes.fromhex(
    "44534602000000b712b067588ca373657107a361726da83763633236333963a5636f646563a564696666"
    "63ab6275646765745f62697473cd1000a9636170747572655f73cb3fe6666666666666a673656e645f73"
    "cb3fe6cccccccccccda57368617065924030a7736b6970706564c2a573746570730ca46d65746186a46b"
    "6e6f6203a162c402ff00a16c920192cb4004000000000000a178a16ec0a36e6567fba174c3ab7061796c"
    "6f61645f6c656e20ad7061796c6f61645f6372633332ceabb79b687061796c6f6164217061796c6f6164"
    "217061796c6f6164217061796c6f616421"
)
GOLDEN_SKIPPED = bytes.fromhex(
    "44534602000000806fad3b2d8ca3736571ceffffffffa361726da178a5636f646563a46a706567ab6275"
    "646765745f6269747300a9636170747572655f7303a673656e645f73cb7e37e43c8800759ca573686170"
    "6592cd400001a7736b6970706564c3a5737465707300a46d65746180ab7061796c6f61645f6c656e00ad"
    "7061796c6f61645f637263333200"
)


def rich_header() -> FrameHeader:
    return FrameHeader(
        seq=7, arm=arm_tag("badiff-mpc"), codec="diffc", budget_bits=4096, capture_s=0.7,
        send_s=0.7125, shape=(64, 48), skipped=False, steps=12,
        meta={"knob": 3, "b": b"\xff\x00", "l": [1, [2.5, "x"]], "n": None, "neg": -5, "t": True},
    )  # fmt: skip


def skipped_header() -> FrameHeader:
    # an int capture time stays an int on the wire; a list shape is sent as it is
    return FrameHeader(seq=2**32 - 1, arm="x", codec="jpeg", budget_bits=0, capture_s=3,
                       send_s=1e300, shape=[16384, 1], skipped=True, steps=0, meta={})  # type: ignore[arg-type]


def test_golden_frames_are_byte_identical() -> None:
    assert pack_frame(rich_header(), b"payload!" * 4) == GOLDEN_RICH
    assert pack_frame(skipped_header(), b"") == GOLDEN_SKIPPED


def test_golden_frames_unpack_to_their_headers() -> None:
    out = unpack_frame(GOLDEN_RICH)
    assert out.complete and out.payload == b"payload!" * 4
    assert out.header.shape == (64, 48) and out.header.meta["l"] == [1, [2.5, "x"]]
    assert header_size(out.header) == len(GOLDEN_RICH) - 32
    skipped = unpack_frame(GOLDEN_SKIPPED)
    assert skipped.header.skipped and skipped.header.capture_s == 3.0  # an int came back float
    assert skipped.payload == b"" and skipped.header.shape == (16384, 1)


def reference_pack(header: FrameHeader, payload: bytes) -> bytes:
    """The format as the module docstring specifies it, written out with zlib and packb."""
    fields: dict[str, Any] = {
        "seq": header.seq, "arm": header.arm, "codec": header.codec,
        "budget_bits": header.budget_bits, "capture_s": header.capture_s,
        "send_s": header.send_s, "shape": list(header.shape), "skipped": header.skipped,
        "steps": header.steps, "meta": header.meta, "payload_len": len(payload),
        "payload_crc32": zlib.crc32(payload),
    }  # fmt: skip
    body = msgpack.packb(fields, use_bin_type=True)
    head = MAGIC + struct.pack(">BI", WIRE_VERSION, len(body))
    return head + struct.pack(">I", zlib.crc32(body, zlib.crc32(head))) + body + payload


_plain = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False), st.text(max_size=20), st.binary(max_size=20),
)  # fmt: skip
_meta = st.dictionaries(
    st.text(max_size=8),
    st.recursive(_plain, lambda inner: st.lists(inner, max_size=3)
                 | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8),
    max_size=5,
)
_number = st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                    st.integers(-(2**53), 2**53))


@settings(max_examples=300, deadline=None)
@given(
    seq=st.integers(0, 2**32 - 1), arm=st.text(max_size=12), codec=st.text(max_size=12),
    budget=st.integers(0, 2**63 - 1), capture=_number, send=_number,
    shape=st.tuples(st.integers(1, 16384), st.integers(1, 16384)), steps=st.integers(0, 2**40),
    meta=_meta, payload=st.binary(max_size=3000), skipped=st.booleans(),
)  # fmt: skip
def test_pack_frame_matches_the_reference_packer(
    seq: int, arm: str, codec: str, budget: int, capture: float, send: float,
    shape: tuple[int, int], steps: int, meta: dict[str, Any], payload: bytes, skipped: bool,
) -> None:  # fmt: skip
    if skipped:
        payload = b""
    header = FrameHeader(seq=seq, arm=arm, codec=codec, budget_bits=budget, capture_s=capture,
                         send_s=send, shape=shape, skipped=skipped, steps=steps, meta=meta)
    frame = pack_frame(header, payload)
    assert frame == reference_pack(header, payload)
    assert unpack_frame(frame).payload == payload
