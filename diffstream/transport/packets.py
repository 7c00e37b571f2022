"""Packetisation of wire frames on a simulated IP/UDP path.

Each packet carries a 12-byte packet header plus up to ``mtu - PACKET_OVERHEAD`` bytes of
the frame, so a packet's on-link size is its data plus ``PACKET_OVERHEAD``:

| bytes | field                                          |
|-------|------------------------------------------------|
| 20    | IPv4 header (no options)                       |
| 8     | UDP header                                     |
| 4     | frame seq, u32 big-endian                      |
| 4     | offset of this chunk in the frame, u32         |
| 4     | frame length, u32 (lets the receiver size it)  |
| <= mtu-40 | frame bytes ``[offset, offset + len)``  |

The link model only needs sizes and (offset, chunk) pairs, so the packet header is
accounted for, not serialised. Because offsets and lengths are u32, a frame is at most
``MAX_FRAME_BYTES`` long. Even an empty frame is sent as one (data-less) packet so that
the receiver learns the frame exists.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

IP_UDP_OVERHEAD = 28  # IPv4 (20) + UDP (8)
PACKET_HEADER_BYTES = 12  # frame seq, offset, frame length: three u32
PACKET_OVERHEAD = IP_UDP_OVERHEAD + PACKET_HEADER_BYTES  # 40
MIN_MTU = PACKET_OVERHEAD + 1  # at least one frame byte per packet
DEFAULT_MTU = 1500
MAX_FRAME_BYTES = 2**32 - 1  # offsets and lengths are u32 in the packet header
DEFAULT_MAX_REASSEMBLY_BYTES = 64 * 1024 * 1024


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def chunk_size(mtu: int = DEFAULT_MTU) -> int:
    """Frame bytes one packet can carry; rejects MTUs too small to carry any."""
    if not _is_int(mtu) or mtu < MIN_MTU:
        raise ValueError(f"mtu must be an int >= {MIN_MTU} (40 bytes of overhead), got {mtu!r}")
    return mtu - PACKET_OVERHEAD


def _packet_count(frame_len: int, chunk: int) -> int:
    return max(1, -(-frame_len // chunk))


def packetize(frame: bytes, mtu: int = DEFAULT_MTU) -> list[tuple[int, bytes]]:
    """Split a frame into ``[(offset, chunk)]`` in order; an empty frame gives one empty packet."""
    chunk = chunk_size(mtu)
    view = memoryview(frame).cast("B")
    if len(view) > MAX_FRAME_BYTES:
        raise ValueError(f"frame of {len(view)} bytes exceeds the u32 limit {MAX_FRAME_BYTES}")
    if not view:
        return [(0, b"")]
    return [(off, bytes(view[off : off + chunk])) for off in range(0, len(view), chunk)]


def on_link_sizes(frame_len: int, mtu: int = DEFAULT_MTU) -> list[int]:
    """On-link bytes of each packet of a ``frame_len``-byte frame (same split as packetize)."""
    chunk = chunk_size(mtu)
    if not _is_int(frame_len) or not 0 <= frame_len <= MAX_FRAME_BYTES:
        raise ValueError(f"frame_len must be an int in [0, {MAX_FRAME_BYTES}], got {frame_len!r}")
    n = _packet_count(frame_len, chunk)
    last = frame_len - chunk * (n - 1)
    return [chunk + PACKET_OVERHEAD] * (n - 1) + [last + PACKET_OVERHEAD]


def wire_bytes_for_payload(payload_bits: int, header_bytes: int, mtu: int = DEFAULT_MTU) -> int:
    """On-link bytes of a frame whose payload has ``payload_bits`` (rounded up to bytes).

    Policies use it to turn a byte allowance into a bit budget; it is monotone
    non-decreasing in ``payload_bits``, with a step of PACKET_OVERHEAD at each new packet.
    """
    if not _is_int(payload_bits) or payload_bits < 0:
        raise ValueError(f"payload_bits must be a non-negative int, got {payload_bits!r}")
    if not _is_int(header_bytes) or header_bytes < 0:
        raise ValueError(f"header_bytes must be a non-negative int, got {header_bytes!r}")
    return wire_bytes_trusted(payload_bits, header_bytes, chunk_size(mtu))


def wire_bytes_trusted(payload_bits: int, header_bytes: int, chunk: int) -> int:
    """``wire_bytes_for_payload`` without its argument checks, for callers that have checked
    them once (the sender's ``Observation.wire_bytes``, which policies call a dozen times a
    frame in their searches); ``chunk`` is ``chunk_size(mtu)``."""
    frame_len = header_bytes + (payload_bits + 7) // 8
    return frame_len + PACKET_OVERHEAD * _packet_count(frame_len, chunk)


def max_payload_bits(wire_budget: float, header_bytes: int, chunk: int) -> int:
    """The largest ``b >= 0`` with ``wire_bytes_trusted(b, header_bytes, chunk) <=
    wire_budget``, or -1 when not even an empty payload fits: the inverse, in closed form.

    A frame of ``f`` bytes in ``n`` packets takes ``f + PACKET_OVERHEAD * n`` on the link, and
    ``n`` packets carry frames of ``(n - 1) * chunk + 1 .. n * chunk`` bytes, so the largest
    packet count whose smallest frame fits gives the answer. Policies call it through
    ``policy.base.payload_bits_for_wire_budget``, which checks it against ``wire_bytes``.
    """
    if not wire_budget >= 0:  # also NaN
        return -1
    w = int(min(wire_budget, float(MAX_FRAME_BYTES) * 2))  # on-link bytes are whole
    step = chunk + PACKET_OVERHEAD
    n = max(1, (w - 1 + chunk) // step)  # the most packets whose first frame length fits
    frame_len = min(n * chunk, w - PACKET_OVERHEAD * n)
    if frame_len < header_bytes:
        return -1
    return 8 * (frame_len - header_bytes)


def reassemble(
    frame_len: int,
    chunks: Iterable[tuple[int, bytes]],
    *,
    max_frame_bytes: int = DEFAULT_MAX_REASSEMBLY_BYTES,
) -> tuple[bytes, bool]:
    """Rebuild a frame from the chunks that arrived, in any order.

    Returns the longest contiguous prefix from offset 0 (what a progressive decoder can
    use) and whether the whole frame arrived. Duplicates are ignored; a chunk outside
    ``[0, frame_len)`` or overlapping earlier data with different bytes raises ValueError.
    An empty frame is complete once its (empty) packet arrived.
    """
    if not _is_int(frame_len) or not 0 <= frame_len <= min(max_frame_bytes, MAX_FRAME_BYTES):
        raise ValueError(
            f"frame_len must be an int in [0, {min(max_frame_bytes, MAX_FRAME_BYTES)}], "
            f"got {frame_len!r}"
        )
    chunks = list(chunks)
    if len(chunks) == 1 and type(chunks[0]) is tuple and len(chunks[0]) == 2:
        offset, chunk = chunks[0]
        if _is_int(offset) and offset == 0 and type(chunk) is bytes and 0 < len(chunk) <= frame_len:
            # one run from offset 0 (live mode: the whole frame, or its prefix, in one
            # message): it is its own prefix, so no buffer and no two copies of a frame
            return chunk, len(chunk) == frame_len
    buf = bytearray(frame_len)
    # Disjoint, non-touching [start, end) runs of received bytes, sorted by start.
    starts: list[int] = []
    ends: list[int] = []
    seen_any = False
    for item in chunks:
        try:
            offset, chunk = item
            data = memoryview(chunk).cast("B")
        except (TypeError, ValueError):
            raise ValueError(f"a chunk must be (offset, bytes), got {item!r:.80}") from None
        if not _is_int(offset):
            raise ValueError(f"chunk offset must be an int, got {offset!r}")
        end = offset + len(data)
        if not data:
            if not 0 <= offset <= frame_len:
                raise ValueError(f"empty chunk at offset {offset} outside [0, {frame_len}]")
            seen_any = True
            continue
        if offset < 0 or end > frame_len:
            raise ValueError(f"chunk [{offset}, {end}) outside the frame [0, {frame_len})")
        seen_any = True
        # Runs that overlap or touch [offset, end): merge them all into one.
        lo = bisect.bisect_left(ends, offset)
        hi = bisect.bisect_right(starts, end)
        for s, e in zip(starts[lo:hi], ends[lo:hi], strict=True):
            a, b = max(s, offset), min(e, end)
            if a < b and buf[a:b] != data[a - offset : b - offset]:
                raise ValueError(f"chunk at offset {offset} disagrees with bytes [{a}, {b})")
        buf[offset:end] = data
        new_start = min(offset, starts[lo]) if lo < hi else offset
        new_end = max(end, ends[hi - 1]) if lo < hi else end
        starts[lo:hi] = [new_start]
        ends[lo:hi] = [new_end]
    prefix_len = ends[0] if starts and starts[0] == 0 else 0
    complete = seen_any and prefix_len == frame_len
    del buf[prefix_len:]
    return bytes(buf), complete
