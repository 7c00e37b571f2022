"""Header bytes of the network-only frame by msgpack width class, without packing every one
(``sim.fastpath`` and the compiled loop's header table in ``sim.compiled``)."""

from __future__ import annotations

from diffstream.transport.checksum import crc32
from diffstream.transport.wire import FrameHeader, arm_tag, header_size

_CRC_CACHE_MAX = 1 << 14


def _width(v: int) -> int:
    """msgpack's encoding class of an int (its encoded width is a function of this)."""
    if v >= 0:
        return 0 if v < 128 else 1 if v < 256 else 2 if v < 65536 else 3 if v < 2**32 else 4
    return 5 if v >= -32 else 6 if v >= -128 else 7 if v >= -32768 else 8 if v >= -2**31 else 9


class _HeaderSizes:
    """Header bytes of ``NetworkOnlyEndpoints.encode``'s frame, without packing every one.

    The header is a msgpack map whose only varying fields are ints (seq, budget, payload
    length and CRC: width by value class) and two times (float64, or int while SimPy's clock
    is still the int 0). The real ``header_size`` is computed once per combination of those
    classes, so a change of the wire format shows up here too (and in the agreement test).
    """

    def __init__(self, arm: str, shape: tuple[int, int]) -> None:
        self.arm, self.shape = arm, shape
        self._sizes: dict[tuple[int, ...], int] = {}
        self._crc: dict[int, int] = {}

    def crc_of_zeros(self, n: int) -> int:
        crc = self._crc.get(n)
        if crc is None:
            if len(self._crc) >= _CRC_CACHE_MAX:
                self._crc.clear()
            crc = self._crc[n] = crc32(bytes(n))
        return crc

    def __call__(self, seq: int, budget_bits: int, n: int, capture_s: float,
                 send_s: float) -> int:
        return self.size(seq, budget_bits, n, self.crc_of_zeros(n), capture_s, send_s)

    def size(self, seq: int, budget_bits: int, n: int, crc: int, capture_s: float,
             send_s: float) -> int:
        """The header's size for these field values (``crc``: the payload's CRC-32)."""
        key = (_width(seq), _width(budget_bits), _width(n), _width(crc),
               type(capture_s) is float, type(send_s) is float)
        size = self._sizes.get(key)
        if size is None:
            h = FrameHeader(seq=seq, arm=arm_tag(self.arm), codec="fixed", budget_bits=budget_bits,
                            capture_s=capture_s, send_s=send_s, shape=self.shape,
                            skipped=False, steps=1, meta={}, payload_len=n, payload_crc32=crc)
            size = self._sizes[key] = header_size(h)
        return size
