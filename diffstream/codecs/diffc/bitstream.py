"""DiffC payload: one check byte and one range-coded stream of chunk counts and PFR indices.

    byte 0   x_t check: the low 8 bits of the CRC-32 of the final x_t (float32 bytes); the
             decoder of a whole payload recomputes it, so float drift between the two ends
             (another device, another library build) is a decode error, not a bad image
    bytes 1- range-coded stream (``rangecoder.py``: flush <= 2 bytes)

Nothing else: the frame size and the step count travel in the wire header (``shape``, and
``meta["steps"]``), which the decoder receives; the configuration (chunking, chunk_bits,
calibration, weights) is the stream's identity, sent in ``meta["id"]`` of the first frame
and every ``IDENTITY_EVERY``-th after it (``codec.py``), not in every payload.

Chunk counts per step, three modes:
- ``image`` (default; the DiffC authors' method): the encoder knows this image's KL of the
  step and sends the count as side information: a log-count symbol r, count =
  ceil(2^(r / 8)) (steps of 2^(1/8) = 9 %, finer than adaptive's sqrt(2)). Step 0 sends r as
  8 raw bits; later steps send r_k - r_{k-1} under a fixed two-sided geometric CDF (counts
  follow the KL profile, so the differences are small). The counts do not depend on the
  frame size, so a prefix can be parsed with the payload and ``meta`` alone.
- ``table`` (the paper's App. A.5): counts from the calibrated mean KL per dimension times
  the frame's dimensions; no side information.
- ``adaptive``: the table's plan times 2^((r - 4) / 2), r one calibrated symbol per step.
``table`` and ``adaptive`` plans depend on the frame size, so their streams start with
H / 8 - 1 and W / 8 - 1 as two 8-bit symbols (``prefix_steps`` gets no shape).

Index code. A chunk's PFR index n in [0, 2^bits) is sent as its bucket b = bit_length(n)
in 0..bits under a calibrated CDF (PFR indices are roughly log-uniform up to 2^KL, so the
bucket carries the information), then the b - 1 bits below the leading one as raw bits.
Expected length ~ E[log2 n] + H(bucket).

Progressive prefixes. All steps are coded in order in ONE stream. Range decoding is
monotone in the code value, so a prefix decoded once with 0x00 and once with 0xFF padding
brackets every continuation: the symbols both decodes agree on are exact, and the steps
wholly before the first disagreement are complete (``decode_prefix``).

Integrity. A whole payload must re-encode to itself byte for byte (``decode_full``), and
its x_t check byte must match; prefixes cannot be checked that way (the transport delivers
contiguous prefixes of checksummed frames).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence

from diffstream.codecs.base import CodecError
from diffstream.codecs.diffc.rangecoder import MAX_OVERREAD, RangeDecoder, RangeEncoder

FORMAT_VERSION = 2
CHECK_BYTES = 1
PRECISION = 16
MAX_CHUNK_BITS = 16
CHUNKINGS = ("image", "table", "adaptive")
# image chunking: count = ceil(2^(r / LOG_STEPS)), r in [0, 2^FIRST_BITS)
LOG_STEPS = 8
FIRST_BITS = 8
DELTA_MAX = 64  # |r_k - r_{k-1}| <= DELTA_MAX
DELTA_DECAY = (3, 4)  # geometric CDF of the differences: p(d) ~ (3/4)^|d|
# 2^(f / 8), f = 0..7, as exact float literals (both ends: no libm pow in the protocol)
_FRAC = (1.0, 1.0905077326652577, 1.189207115002721, 1.2968395546510096,
         1.4142135623730951, 1.5422108254079407, 1.681792830507429, 1.8340080864093424)


class StreamError(CodecError):
    """A corrupt stream; ``decoded`` holds the steps decoded before the fault."""

    def __init__(self, message: str, decoded: list[Step]) -> None:
        super().__init__(message)
        self.decoded = list(decoded)
        self.size: tuple[int, int] | None = None  # the frame size decoded before the fault


def log_count(r: int) -> int:
    """Chunks of log-count symbol r: ceil(2^(r / 8)), from exact constants (ldexp)."""
    return math.ceil(math.ldexp(_FRAC[r % LOG_STEPS], r // LOG_STEPS) - 1e-9)


def log_symbol(kl_bits: float, target_bits: float) -> int:
    """Smallest r whose chunk count keeps every chunk's mean KL at most ``target_bits``."""
    need = max(1, math.ceil(kl_bits / target_bits - 1e-9))
    r = max(0, int(LOG_STEPS * math.log2(need)) - 1)
    while log_count(r) < need:
        r += 1
    return min(r, (1 << FIRST_BITS) - 1)


def quantized_cdf(counts: Sequence[int], precision: int = PRECISION) -> list[int]:
    """Integer CDF of ``counts`` (len + 1 entries, 0 .. 2^precision), every symbol >= 1 and
    none above half the mass (so every coded symbol costs at least one bit, which bounds
    what garbage can make a decoder do). Pure integers: both ends build the same table."""
    c = [max(int(v), 0) for v in counts]
    n = len(c)
    total = 1 << precision
    if n < 2 or n > total:
        raise ValueError(f"need 2..{total} symbols, got {n}")
    top = max(range(n), key=lambda i: (c[i], -i))
    rest = sum(c) - c[top]
    if c[top] > rest:  # cap the likeliest at 1/2 by lifting the others evenly
        lift = -(-(c[top] - rest) // (n - 1))
        c = [v if i == top else v + lift for i, v in enumerate(c)]
    spare = total - n
    s = sum(c)
    freqs = [1 + (v * spare) // s if s > 0 else 1 for v in c]
    for i in sorted(range(n), key=lambda i: (-c[i], i))[:total - sum(freqs)]:
        freqs[i] += 1
    cdf = [0]
    for f in freqs:
        cdf.append(cdf[-1] + f)
    assert cdf[-1] == total
    return cdf


def delta_counts() -> list[int]:
    """Weights of d = -DELTA_MAX .. DELTA_MAX: 2^20 (3/4)^|d|, integer-exact."""
    num, den = DELTA_DECAY
    return [max(1, ((1 << 20) * num ** abs(d)) // den ** abs(d))
            for d in range(-DELTA_MAX, DELTA_MAX + 1)]


ChunksOf = Callable[[int, "int | None"], int]  # (step, count symbol) -> chunk count
Step = tuple["int | None", list[int]]  # (count symbol or None, chunk indices)


class StepCoder:
    """The code of a payload's steps: per step an optional count symbol, then its chunk
    indices, each as bucket + raw bits. ``mode``: one of ``CHUNKINGS``; ``ratio_counts``
    (adaptive only) the calibrated histogram of its count symbols."""

    def __init__(self, chunk_bits: int, bucket_counts: Sequence[int], mode: str = "image",
                 ratio_counts: Sequence[int] | None = None) -> None:
        if not 1 <= chunk_bits <= MAX_CHUNK_BITS:
            raise ValueError(f"chunk_bits must be 1..{MAX_CHUNK_BITS}")
        if len(bucket_counts) != chunk_bits + 1:
            raise ValueError(f"need {chunk_bits + 1} bucket counts, got {len(bucket_counts)}")
        if mode not in CHUNKINGS:
            raise ValueError(f"chunking must be one of {CHUNKINGS}, got {mode!r}")
        if (mode == "adaptive") != (ratio_counts is not None):
            raise ValueError("adaptive chunking needs ratio_counts, the other modes none")
        self.bits = chunk_bits
        self.mode = mode
        self.bucket_cdf = quantized_cdf(bucket_counts)
        self.ratio_cdf = quantized_cdf(ratio_counts) if ratio_counts is not None else None
        self.delta_cdf = quantized_cdf(delta_counts())
        self.ratios = len(ratio_counts) if ratio_counts is not None else 0

    @property
    def sized(self) -> bool:
        """Whether the stream starts with the frame size (the table-based plans)."""
        return self.mode != "image"

    # --- encoding -----------------------------------------------------------------------
    def writer(self, size: tuple[int, int] | None = None) -> StepWriter:
        return StepWriter(self, size)

    def encode(self, steps: Sequence[Step], size: tuple[int, int] | None = None) -> bytes:
        w = self.writer(size)
        for s in steps:
            w.add(s)
        return w.finish()

    def ideal_bits(self, steps: Sequence[Step], size: tuple[int, int] | None = None) -> float:
        """-log2 of the coded symbols' probabilities (no range-coder overhead)."""
        total = 16.0 if self.sized else 0.0
        prev = None
        for ratio, indices in steps:
            if self.mode == "image":
                assert ratio is not None
                if prev is None:
                    total += FIRST_BITS
                else:
                    d = ratio - prev + DELTA_MAX
                    total -= math.log2((self.delta_cdf[d + 1] - self.delta_cdf[d]) / 2**16)
                prev = ratio
            elif self.mode == "adaptive":
                assert self.ratio_cdf is not None and ratio is not None
                total -= math.log2((self.ratio_cdf[ratio + 1] - self.ratio_cdf[ratio]) / 2**16)
            for n in indices:
                b = int(n).bit_length()
                total -= math.log2((self.bucket_cdf[b + 1] - self.bucket_cdf[b]) / 2**16)
                total += max(b - 1, 0)
        return total

    # --- decoding -----------------------------------------------------------------------
    def _decode(self, stream: bytes, n_steps: int, chunks_of: ChunksOf, max_chunks: int,
                pad: int) -> tuple[tuple[int, int] | None, list[Step]]:
        state: list[tuple[int, int] | None] = [None]
        try:
            return self._decode_into(stream, n_steps, chunks_of, max_chunks, pad, state)
        except StreamError as exc:
            exc.size = state[0]
            raise

    def _decode_into(self, stream: bytes, n_steps: int, chunks_of: ChunksOf,
                     max_chunks: int, pad: int, state: list[tuple[int, int] | None]
                     ) -> tuple[tuple[int, int] | None, list[Step]]:
        dec = RangeDecoder(stream, pad)
        out: list[Step] = []

        def sym(cdf: list[int], what: str) -> int:
            t = dec.target(PRECISION)
            if t >= cdf[-1]:
                raise StreamError(f"DiffC stream decodes outside the {what} table: corrupt",
                                  out)
            s = bisect.bisect_right(cdf, t) - 1
            dec.consume(cdf[s], cdf[s + 1] - cdf[s])
            return s

        def bits(width: int, what: str) -> int:
            v = dec.decode_bits(width)
            if v is None:
                raise StreamError(f"DiffC stream decodes outside the {what} range: corrupt",
                                  out)
            return v

        size = None
        if self.sized:
            size = ((bits(8, "frame size") + 1) * 8, (bits(8, "frame size") + 1) * 8)
            state[0] = size
        prev = None
        for k in range(n_steps):
            ratio = None
            if self.mode == "image":
                if prev is None:
                    ratio = bits(FIRST_BITS, "chunk count")
                else:
                    ratio = prev + sym(self.delta_cdf, "chunk count") - DELTA_MAX
                    if not 0 <= ratio < 1 << FIRST_BITS:
                        raise StreamError(f"DiffC step {k} decodes to count symbol {ratio}: "
                                          "corrupt", out)
                prev = ratio
            elif self.mode == "adaptive":
                assert self.ratio_cdf is not None
                ratio = sym(self.ratio_cdf, "chunk-count")
            count = chunks_of(k, ratio)
            if not 1 <= count <= max_chunks:
                raise StreamError(f"DiffC step {k} would have {count} chunks (at most "
                                  f"{max_chunks}): corrupt", out)
            indices = []
            for _ in range(count):
                b = sym(self.bucket_cdf, "bucket")
                n = (1 << (b - 1)) + bits(b - 1, "index") if b > 1 else b
                indices.append(n)
                if dec.read_past > MAX_OVERREAD:  # past any valid stream: garbage or a cut
                    raise StreamError("DiffC stream ends inside a step: truncated", out)
            out.append((ratio, indices))
        return size, out

    def decode_full(self, stream: bytes, n_steps: int, chunks_of: ChunksOf, max_chunks: int,
                    size: tuple[int, int] | None = None) -> list[Step]:
        """All steps of a complete stream; it must re-encode to itself (and, for the
        table-based plans, carry ``size``)."""
        got, steps = self._decode(stream, n_steps, chunks_of, max_chunks, 0)
        if self.sized and size is not None and got != tuple(size):
            raise CodecError(f"DiffC stream is for {got[1] if got else '?'}x"
                             f"{got[0] if got else '?'}, expected {size[1]}x{size[0]}")
        if self.encode(steps, got) != bytes(stream):
            raise CodecError("DiffC payload is not the stream of its indices (truncated, "
                             "corrupt, or coded with another chunk model)")
        return steps

    def stream_size(self, stream: bytes) -> tuple[int, int] | None:
        """The frame size a table-based stream starts with (None for image chunking or when
        the prefix is too short to tell)."""
        if not self.sized:
            return None
        sizes = []
        for pad in (0, 0xFF):
            dec = RangeDecoder(stream, pad)
            a, b = dec.decode_bits(8), dec.decode_bits(8)
            if a is None or b is None:
                return None
            sizes.append(((a + 1) * 8, (b + 1) * 8))
        return sizes[0] if sizes[0] == sizes[1] else None

    def decode_prefix(self, stream: bytes, n_steps: int, chunks_of: ChunksOf,
                      max_chunks: int) -> list[Step]:
        """The leading whole steps that ``stream`` (a prefix of the stream of ``n_steps``
        steps) determines exactly: those decoded identically under 0x00 and 0xFF padding."""
        decodes, sizes = [], []
        for pad in (0, 0xFF):
            try:
                size, steps = self._decode(stream, n_steps, chunks_of, max_chunks, pad)
            except StreamError as exc:
                size, steps = exc.size, exc.decoded
            decodes.append(steps)
            sizes.append(size)
        if sizes[0] != sizes[1]:  # the size symbols come first: nothing after is known
            return []
        good = 0
        for x, y in zip(decodes[0], decodes[1], strict=False):
            if x != y:
                break
            good += 1
        return decodes[0][:good]


class StepWriter:
    """Steps in, the stream of all steps so far out (``finish`` at any time: the encoder
    checks every step's real size without re-encoding the earlier ones)."""

    def __init__(self, coder: StepCoder, size: tuple[int, int] | None) -> None:
        self.coder = coder
        self.enc = RangeEncoder()
        self.prev: int | None = None
        if coder.sized:
            if size is None:
                raise ValueError(f"{coder.mode} chunking codes the frame size: give size")
            for side in size:
                if side % 8 or not 8 <= side <= 2048:
                    raise ValueError(f"frame sides must be multiples of 8 in 8..2048, "
                                     f"got {side}")
                self.enc.encode_bits(side // 8 - 1, 8)

    def copy(self) -> StepWriter:
        c = StepWriter.__new__(StepWriter)
        c.coder, c.enc, c.prev = self.coder, self.enc.copy(), self.prev
        return c

    def add(self, step: Step) -> None:
        c, enc = self.coder, self.enc
        ratio, indices = step
        if (ratio is None) != (c.mode == "table"):
            raise ValueError("a count symbol is needed exactly with image/adaptive chunking")
        if c.mode == "image":
            assert ratio is not None
            if not 0 <= ratio < 1 << FIRST_BITS:
                raise ValueError(f"count symbol {ratio} outside [0, {1 << FIRST_BITS})")
            if self.prev is None:
                enc.encode_bits(ratio, FIRST_BITS)
            else:
                d = ratio - self.prev
                if abs(d) > DELTA_MAX:
                    raise ValueError(f"count symbol jumps by {d} (at most {DELTA_MAX})")
                s = d + DELTA_MAX
                enc.encode(c.delta_cdf[s], c.delta_cdf[s + 1] - c.delta_cdf[s], PRECISION)
            self.prev = ratio
        elif c.mode == "adaptive":
            assert c.ratio_cdf is not None and ratio is not None
            if not 0 <= ratio < c.ratios:
                raise ValueError(f"chunk-count symbol {ratio} outside [0, {c.ratios})")
            enc.encode(c.ratio_cdf[ratio], c.ratio_cdf[ratio + 1] - c.ratio_cdf[ratio],
                       PRECISION)
        cdf = c.bucket_cdf
        for n in indices:
            n = int(n)
            if not 0 <= n < (1 << c.bits):
                raise ValueError(f"index {n} outside [0, 2^{c.bits})")
            b = n.bit_length()
            enc.encode(cdf[b], cdf[b + 1] - cdf[b], PRECISION)
            if b > 1:
                enc.encode_bits(n - (1 << (b - 1)), b - 1)

    def finish(self) -> bytes:
        return self.enc.finish()
