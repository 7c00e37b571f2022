"""A byte-oriented range coder (LZMA's carry scheme) with a flush of at most 2 bytes.

Why not compressai's rANS: its ``RansEncoder`` flushes a 64-bit state in 32-bit words, so
every payload carries 4-8 bytes that hold no information (0.03-0.06 bpp at 32x32), and it
cannot be told to stop earlier. A range coder flushes by picking, inside the final
interval, the number with the fewest significant bytes: one byte of the coder's window
suffices whenever the interval is at least 2^24 wide (it always is after renormalisation),
so the stream is at most 2 bytes longer than its information content. Written by hand
because no PyPI package offers a range coder with a sub-word flush (``constriction`` and
compressai both flush 32-bit words).

The coder keeps a 32-bit window of the code value (``low``, ``rng``), LZMA's byte cache for
carries (Igor Pavlov, LZMA SDK ``RangeEnc_ShiftLow``), and codes symbols given by
(start, size) under a total of 2^``bits`` (CDF rows; raw bits use size 1 under 2^w).
The stream omits LZMA's always-zero first byte; the decoder reads zeros past the end, and a
valid stream never makes it read more than 4 bytes past the end (``MAX_OVERREAD``), which
bounds the work garbage can cause.

Decoding is monotone in the code value: the set of streams that decode to a given run of
leading symbols is an interval. ``decode`` therefore takes ``pad``: the byte read past the
end. A prefix decoded with pad 0x00 and with pad 0xFF brackets every possible
continuation, so the symbols the two decodes agree on are exactly the ones the prefix
determines (``bitstream.StepCoder.decode_prefix``).
"""

from __future__ import annotations

TOP = 1 << 24
MAX_OVERREAD = 4  # bytes a decoder of a whole valid stream reads past its end, at most
MASK32 = 0xFFFFFFFF


class RangeEncoder:
    """Symbols in, bytes out; ``finish()`` may be called at any time and again later."""

    __slots__ = ("low", "rng", "cache", "cache_size", "out")

    def __init__(self) -> None:
        self.low = 0  # up to 33 bits: bit 32 is a pending carry
        self.rng = MASK32
        self.cache = 0
        self.cache_size = 1
        self.out = bytearray()

    def copy(self) -> RangeEncoder:
        c = RangeEncoder.__new__(RangeEncoder)
        c.low, c.rng, c.cache, c.cache_size = self.low, self.rng, self.cache, self.cache_size
        c.out = bytearray(self.out)
        return c

    def _shift_low(self) -> None:
        if self.low < 0xFF000000 or self.low > MASK32:
            carry = self.low >> 32
            temp = self.cache
            while True:
                self.out.append((temp + carry) & 0xFF)
                temp = 0xFF
                self.cache_size -= 1
                if self.cache_size == 0:
                    break
            self.cache = (self.low >> 24) & 0xFF
        self.cache_size += 1
        self.low = (self.low << 8) & MASK32

    def encode(self, start: int, size: int, bits: int) -> None:
        """The symbol [start, start + size) of a total 2^bits (bits <= 16)."""
        r = self.rng >> bits
        self.low += r * start
        self.rng = r * size
        while self.rng < TOP:
            self.rng <<= 8
            self._shift_low()

    def encode_bits(self, value: int, width: int) -> None:
        """``width`` raw bits (<= 16): exactly width bits of information."""
        if width:
            self.encode(value, 1, width)

    def finish(self) -> bytes:
        """The shortest stream that decodes to everything encoded so far (the encoder can
        go on afterwards). Picks x in [low, low + rng) with the fewest non-zero window
        bytes; rng >= 2^24 makes one byte always enough."""
        for k in range(5):
            step = 1 << (32 - 8 * k)
            x = -(-self.low // step) * step
            if x < self.low + self.rng:
                break
        carry = x >> 32
        tail = bytes([(self.cache + carry) & 0xFF]) + bytes([(0xFF + carry) & 0xFF]) * (
            self.cache_size - 1) + (x & MASK32).to_bytes(4, "big")[:k]
        return (bytes(self.out) + tail)[1:]  # LZMA's first byte is always 0


class RangeDecoder:
    """The inverse of ``RangeEncoder`` over ``data`` followed by endless ``pad`` bytes."""

    __slots__ = ("data", "pos", "pad", "code", "rng", "read_past", "_r")

    def __init__(self, data: bytes, pad: int = 0) -> None:
        self.data = bytes(data)
        self.pos = 0
        self.pad = pad & 0xFF
        self.rng = MASK32
        self.read_past = 0  # bytes read past the end of ``data``
        self._r = 0
        self.code = 0
        for _ in range(4):
            self.code = (self.code << 8) | self._byte()

    def _byte(self) -> int:
        if self.pos < len(self.data):
            b = self.data[self.pos]
        else:
            b = self.pad
            self.read_past += 1
        self.pos += 1
        return b

    def _normalise(self) -> None:
        while self.rng < TOP:
            self.rng <<= 8
            self.code = ((self.code << 8) | self._byte()) & MASK32

    def target(self, bits: int) -> int:
        """The slot in [0, 2^bits] the next symbol's interval must contain (a value of
        2^bits or more means a corrupt stream: the unused top of the range)."""
        self._r = self.rng >> bits
        return self.code // self._r

    def consume(self, start: int, size: int) -> None:
        self.code -= self._r * start
        self.rng = self._r * size
        self._normalise()

    def decode_bits(self, width: int) -> int | None:
        """``width`` raw bits, or None when the code lies in the unused top of the range
        (only a corrupt stream or a padded prefix gets there)."""
        if not width:
            return 0
        v = self.target(width)
        if v >> width:
            return None
        self.consume(v, 1)
        return v
