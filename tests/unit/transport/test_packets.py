"""Packetisation: sizes, on-link accounting, and reassembly of what survived the link."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffstream.transport.packets import (
    PACKET_OVERHEAD,
    chunk_size,
    max_payload_bits,
    on_link_sizes,
    packetize,
    reassemble,
    wire_bytes_for_payload,
    wire_bytes_trusted,
)
from diffstream.transport.wire import FrameHeader, header_size, pack_frame, unpack_frame

MTUS = (1500, 576, 41)


def frame_of(n: int) -> bytes:
    return random.Random(n).randbytes(n)


def sizes_for(mtu: int) -> list[int]:
    return [0, 1, mtu - 40, mtu - 39, 100_000]


@pytest.mark.parametrize("mtu", MTUS)
def test_round_trip_sizes(mtu: int) -> None:
    for n in sizes_for(mtu):
        frame = frame_of(n)
        packets = packetize(frame, mtu)
        assert reassemble(n, packets) == (frame, True)
        assert all(len(chunk) <= mtu - PACKET_OVERHEAD for _, chunk in packets)
        # contiguous, in order, no gaps
        assert [off for off, _ in packets] == list(range(0, max(n, 1), mtu - PACKET_OVERHEAD))
        assert b"".join(chunk for _, chunk in packets) == frame
        sizes = on_link_sizes(n, mtu)
        assert sizes == [len(chunk) + PACKET_OVERHEAD for _, chunk in packets]
        assert sum(sizes) == n + PACKET_OVERHEAD * len(packets)
        assert max(sizes) <= mtu


def test_packet_counts_at_boundaries() -> None:
    assert packetize(b"") == [(0, b"")]
    assert on_link_sizes(0) == [40]
    assert len(packetize(bytes(1460))) == 1
    assert on_link_sizes(1460) == [1500]
    assert on_link_sizes(1461) == [1500, 41]
    assert len(packetize(bytes(100_000))) == 69  # ceil(100000 / 1460)


def test_bad_mtu_and_lengths() -> None:
    for mtu in (40, 0, -1, True, 1500.0):
        with pytest.raises(ValueError):
            packetize(b"x", mtu)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            on_link_sizes(1, mtu)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        on_link_sizes(-1)
    with pytest.raises(ValueError):
        wire_bytes_for_payload(-1, 10)
    with pytest.raises(ValueError):
        wire_bytes_for_payload(8, -1)


@pytest.mark.parametrize("missing", [1, 2, 5])
def test_missing_middle_packet_gives_prefix_before_hole(missing: int) -> None:
    frame = frame_of(10_000)
    packets = packetize(frame, 576)
    survived = packets[:missing] + packets[missing + 1 :]
    random.Random(missing).shuffle(survived)
    prefix, complete = reassemble(len(frame), survived)
    assert not complete
    assert prefix == frame[: packets[missing][0]]


def test_missing_first_or_last_packet() -> None:
    frame = frame_of(5000)
    packets = packetize(frame)
    assert reassemble(len(frame), packets[1:]) == (b"", False)
    assert reassemble(len(frame), packets[:-1]) == (frame[: packets[-1][0]], False)
    assert reassemble(len(frame), []) == (b"", False)
    assert reassemble(0, []) == (b"", False)  # the empty frame's one packet was lost
    assert reassemble(0, [(0, b"")]) == (b"", True)


def test_duplicates_and_consistent_overlaps_are_accepted() -> None:
    frame = frame_of(3000)
    a = packetize(frame, 1000)
    b = packetize(frame, 700)  # the same bytes cut differently
    chunks = a + b + a[::-1]
    random.Random(0).shuffle(chunks)
    assert reassemble(len(frame), chunks) == (frame, True)
    assert reassemble(len(frame), [(5, frame[5:9]), (0, frame[:6]), (9, frame[9:])])[1]


def test_bad_chunks_are_rejected() -> None:
    frame = frame_of(100)
    with pytest.raises(ValueError, match="outside"):
        reassemble(100, [(90, bytes(11))])
    with pytest.raises(ValueError, match="outside"):
        reassemble(100, [(-1, b"x")])
    with pytest.raises(ValueError, match="outside"):
        reassemble(0, [(0, b"x")])
    with pytest.raises(ValueError, match="outside"):
        reassemble(10, [(11, b"")])
    with pytest.raises(ValueError, match="disagrees"):
        reassemble(100, [(0, frame[:50]), (40, b"\x00" * 20)])
    with pytest.raises(ValueError, match="disagrees"):  # inside an earlier run, not at its edge
        reassemble(100, [(0, frame), (10, bytes([frame[10] ^ 1]))])
    with pytest.raises(ValueError):
        reassemble(100, [(0.0, b"x")])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        reassemble(100, [(0, "text")])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        reassemble(100, [(0, b"x", 1)])  # type: ignore[list-item]


def test_absurd_frame_len_is_rejected_without_allocating() -> None:
    for frame_len in (-1, 2**40, 64 * 1024 * 1024 + 1):
        with pytest.raises(ValueError, match="frame_len"):
            reassemble(frame_len, [])
    with pytest.raises(ValueError, match="frame_len"):
        reassemble(1001, [], max_frame_bytes=1000)


def test_wire_bytes_for_payload_matches_packets() -> None:
    for bits in (0, 1, 8, 9, 11_000, 11_680 * 8, 1_000_000):
        payload = (bits + 7) // 8
        for header in (0, 40, 300):
            assert wire_bytes_for_payload(bits, header) == sum(on_link_sizes(header + payload))
    assert wire_bytes_for_payload(0, 0) == 40


def test_lossy_progressive_frame_end_to_end() -> None:
    """A frame cut by loss: the packets' prefix unpacks as a verified header + payload prefix."""
    header = FrameHeader(
        seq=3, arm="a", codec="diffc", budget_bits=80_000, capture_s=0.3, send_s=0.31,
        shape=(64, 64), meta={"prefix_offsets": [100, 2000, 5000]},
    )  # fmt: skip
    payload = frame_of(9000)
    frame = pack_frame(header, payload)
    packets = packetize(frame, 1500)
    prefix, complete = reassemble(len(frame), packets[:3] + packets[4:])
    assert not complete
    out = unpack_frame(prefix, allow_prefix=True)
    hs = header_size(out.header)
    assert not out.complete and out.payload == payload[: 3 * 1460 - hs]
    assert sum(on_link_sizes(len(frame))) == wire_bytes_for_payload(len(payload) * 8, hs)


@settings(max_examples=300, deadline=None)
@given(
    a=st.integers(0, 2_000_000),
    b=st.integers(0, 2_000_000),
    header=st.integers(0, 70_000),
    mtu=st.integers(41, 9000),
)
def test_wire_bytes_for_payload_is_monotone(a: int, b: int, header: int, mtu: int) -> None:
    lo, hi = sorted((a, b))
    w_lo = wire_bytes_for_payload(lo, header, mtu)
    assert w_lo <= wire_bytes_for_payload(hi, header, mtu)
    assert wire_bytes_for_payload(lo + 1, header, mtu) >= w_lo
    assert w_lo >= header + (lo + 7) // 8 + PACKET_OVERHEAD


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(0, 5000),
    mtu=st.integers(41, 1600),
    lost=st.sets(st.integers(0, 200), max_size=5),
    seed=st.integers(0, 2**16),
)
def test_reassemble_any_loss_pattern(n: int, mtu: int, lost: set[int], seed: int) -> None:
    frame = frame_of(n)
    packets = packetize(frame, mtu)
    survived = [p for i, p in enumerate(packets) if i not in lost]
    shuffled = survived + survived[: seed % (len(survived) + 1)]  # some duplicates
    random.Random(seed).shuffle(shuffled)
    prefix, complete = reassemble(n, shuffled)
    first_lost = min((i for i in lost if i < len(packets)), default=None)
    if first_lost is None:
        assert (prefix, complete) == (frame, True)
    else:
        assert not complete and prefix == frame[: packets[first_lost][0]]


@settings(max_examples=300, deadline=None)
@given(budget=st.floats(-5, 60_000) | st.integers(0, 60_000).map(float),
       header=st.integers(0, 3000), mtu=st.integers(41, 9000))
def test_max_payload_bits_inverts_wire_bytes(budget: float, header: int, mtu: int) -> None:
    """The closed form against a bisection over ``wire_bytes_trusted`` itself."""
    chunk = chunk_size(mtu)
    got = max_payload_bits(budget, header, chunk)
    if not wire_bytes_trusted(0, header, chunk) <= budget:
        assert got == -1
        return
    lo, hi = 0, 8 * (int(budget) + 1)  # wire_bytes(hi) > budget: one byte costs >= 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if wire_bytes_trusted(mid, header, chunk) <= budget else (lo, mid)
    assert got == lo


def test_max_payload_bits_at_packet_edges() -> None:
    chunk = chunk_size(1500)  # 1460 frame bytes per packet
    assert max_payload_bits(1460 + 40, 10, chunk) == 8 * 1450  # one full packet
    assert max_payload_bits(1461 + 80 - 1, 10, chunk) == 8 * 1450  # a 2nd costs 41 more
    assert max_payload_bits(1461 + 80, 10, chunk) == 8 * 1451
    assert max_payload_bits(49.9, 10, chunk) == -1 and max_payload_bits(50, 10, chunk) == 0
    assert max_payload_bits(float("nan"), 0, chunk) == -1


def test_reassemble_one_run_from_zero_is_returned_without_a_copy() -> None:
    """Live mode hands over a frame (or its prefix) as one chunk at offset 0: the result is
    that very object, and the same as the general path's (via a bytearray chunk)."""
    frame = frame_of(5000)
    for part, whole in ((frame, True), (frame[:3000], False)):
        data, complete = reassemble(len(frame), [(0, part)])
        assert data is part and complete is whole
        assert reassemble(len(frame), [(0, bytearray(part))]) == (part, whole)
    with pytest.raises(ValueError):
        reassemble(10, [(0, bytes(11))])  # longer than the frame: the general check
