"""DiffC payload: a 5-byte header and one compressai rANS stream of PFR chunk indices.

    byte 0   version (high 3 bits) | adaptive chunking (1 bit) | chunk_bits - 1 (low 4 bits)
    byte 1   schedule id (which calibrated schedule / KL table both ends use)
    byte 2   steps: how many schedule steps the stream holds (1..255)
    byte 3   H / 8 - 1
    byte 4   W / 8 - 1
    bytes 5- rANS stream (compressai RansEncoder: 64-bit state, 32-bit words, 16-bit CDFs)

Chunk counts. With ``table`` chunking (the default, the paper's App. A.5) a step's chunk
count comes from the calibrated KL table alone. With ``adaptive`` chunking each step starts
with a symbol r that scales the table's plan by 2^((r - 4) / 2) (x 1/4 .. x 16, half
octaves), so the decoder derives the count from the table and r; the encoder picks the
smallest r whose chunks carry at most the chunk target.

Index code. A chunk's PFR index n in [0, 2^bits) is sent as its bucket
b = bit_length(n) in 0..bits under a calibrated CDF (PFR indices are roughly log-uniform up
to 2^KL, so the bucket carries the information and the bits below the leading one are close
to uniform), then those b - 1 low bits under exact uniform CDFs, at most 8 per symbol.
Expected length ~ E[log2 n] + H(bucket).

Progressive prefixes. The steps are coded in order in ONE rANS stream (one 8-byte flush for
the whole payload instead of one per step, which at 32x32 would cost more than the steps).
A rANS decoder reads the stream front to back, so a prefix decodes every symbol whose
decoding did not read past it. ``complete_steps`` finds that point exactly: it decodes the
prefix twice, padded once with zero words and once with 0xFFFEFFFE words; the first symbol
that read padding gets slot 0 in one decode and slot 0xFFFE in the other, which are
different symbols in every CDF here, so the first disagreement marks the first symbol that
is not backed by real bytes; everything before it is exact. Steps wholly before it are
complete. The padding also bounds what the (unchecked) C++ decoder can read.

Integrity. A full payload (its length is in ``meta``) must re-encode to itself byte for
byte, so corrupted or spliced payloads raise ``CodecError``; prefixes cannot be checked
that way (the transport delivers contiguous prefixes of checksummed frames).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from compressai.ans import RansDecoder, RansEncoder

from diffstream.codecs.base import CodecError

FORMAT_VERSION = 1
HEADER_BYTES = 5
PRECISION = 16
MANTISSA_PIECE = 8  # bits per uniform mantissa symbol
MAX_CHUNK_BITS = 16
PAD_A, PAD_B = b"\x00\x00\x00\x00", struct.pack("<I", 0xFFFEFFFE)
# rows of the CDF table: 0 = bucket, 1..8 = uniform on 2^w symbols, 9 = zero-cost filler,
# 10 = chunk-count symbol
FILLER_ROW = MANTISSA_PIECE + 1
RATIO_ROW = MANTISSA_PIECE + 2  # adaptive chunking: the chunk-count symbol of a step
MIN_SYMBOLS = 2  # compressai's encoder buffer holds one word per symbol: never fewer than 2


class StreamError(CodecError):
    """A corrupt rANS stream; ``decoded`` holds the indices decoded before the fault."""

    def __init__(self, message: str, decoded: list[int]) -> None:
        super().__init__(message)
        self.decoded = list(decoded)


@dataclass(frozen=True)
class Header:
    adaptive: bool
    chunk_bits: int
    schedule_id: int
    steps: int
    height: int
    width: int

    def pack(self) -> bytes:
        if not 1 <= self.chunk_bits <= MAX_CHUNK_BITS:
            raise ValueError(f"chunk_bits must be 1..{MAX_CHUNK_BITS}")
        if not 0 < self.steps <= 255:
            raise ValueError(f"steps must be 1..255, got {self.steps}")
        for side in (self.height, self.width):
            if side % 8 or not 8 <= side <= 2048:
                raise ValueError(f"frame sides must be multiples of 8 in 8..2048, got {side}")
        return bytes([(FORMAT_VERSION << 5) | (int(self.adaptive) << 4) | (self.chunk_bits - 1),
                      self.schedule_id & 0xFF,
                      self.steps, self.height // 8 - 1, self.width // 8 - 1])

    @classmethod
    def unpack(cls, payload: bytes) -> Header:
        if len(payload) < HEADER_BYTES:
            raise CodecError(f"DiffC payload of {len(payload)} bytes is shorter than its "
                             f"{HEADER_BYTES}-byte header: truncated")
        b = payload[:HEADER_BYTES]
        version = b[0] >> 5
        if version != FORMAT_VERSION:
            raise CodecError(f"DiffC payload format {version}, expected {FORMAT_VERSION}: "
                             "corrupt or from another codec")
        if b[2] == 0:
            raise CodecError("DiffC header says 0 steps: corrupt")
        return cls(adaptive=bool(b[0] & 0x10), chunk_bits=(b[0] & 0xF) + 1,
                   schedule_id=b[1], steps=b[2],
                   height=(b[3] + 1) * 8, width=(b[4] + 1) * 8)


def quantized_cdf(counts: Sequence[int], precision: int = PRECISION) -> list[int]:
    """Integer-only CDF (compressai layout: symbols, then one overflow symbol, then 2^p).

    Every symbol gets at least 1; the overflow (never emitted) gets exactly 1, at the top
    slot. Pure integer arithmetic, so both ends build the same table on any machine.
    """
    n = len(counts)
    total = 1 << precision
    spare = total - 1 - n  # after one unit per symbol and one for the overflow
    if spare < 0:
        raise ValueError("too many symbols for the CDF precision")
    s = sum(int(c) for c in counts)
    freqs = [1 + (int(c) * spare) // s if s > 0 else 1 for c in counts]
    rem = total - 1 - sum(freqs)  # 0 <= rem <= n: one more unit to the rem likeliest
    for i in sorted(range(n), key=lambda i: (-int(counts[i]), i))[:rem]:
        freqs[i] += 1
    cdf = [0]
    for f in freqs:
        cdf.append(cdf[-1] + f)
    cdf.append(total)  # overflow symbol [total - 1, total)
    assert cdf[-2] == total - 1
    return cdf


ChunksOf = Callable[[int, "int | None"], int]  # (step, ratio symbol) -> chunk count
Step = tuple["int | None", list[int]]  # (ratio symbol or None, chunk indices)


class StepCoder:
    """The rANS code of a payload's steps: per step an optional chunk-count symbol
    (adaptive chunking) then its chunk indices, each as bucket + mantissa."""

    def __init__(self, chunk_bits: int, bucket_counts: Sequence[int],
                 ratio_counts: Sequence[int] | None = None) -> None:
        if not 1 <= chunk_bits <= MAX_CHUNK_BITS:
            raise ValueError(f"chunk_bits must be 1..{MAX_CHUNK_BITS}")
        if len(bucket_counts) != chunk_bits + 1:
            raise ValueError(f"need {chunk_bits + 1} bucket counts, got {len(bucket_counts)}")
        self.bits = chunk_bits
        rows = [quantized_cdf(bucket_counts)]
        rows += [quantized_cdf([1] * (1 << w)) for w in range(1, MANTISSA_PIECE + 1)]
        rows.append(quantized_cdf([1]))  # filler: one symbol of mass 65535 / 65536
        self.ratios = len(ratio_counts) if ratio_counts else 0
        if ratio_counts:
            if len(ratio_counts) < 2:
                raise ValueError("need two or more chunk-count symbols")
            rows.append(quantized_cdf(ratio_counts))
        width = max(len(r) for r in rows)
        self._cdfs = [r + [0] * (width - len(r)) for r in rows]
        self._lens = [len(r) for r in rows]
        self._offs = [0] * len(rows)

    # --- symbols ------------------------------------------------------------------------
    @staticmethod
    def _pieces(bucket: int) -> list[int]:
        """Widths of the mantissa symbols of a bucket (b - 1 bits, <= 8 per symbol)."""
        rest = max(bucket - 1, 0)
        out = []
        while rest > 0:
            w = min(rest, MANTISSA_PIECE)
            out.append(w)
            rest -= w
        return out

    def symbols(self, steps: Sequence[Step]) -> tuple[list[int], list[int]]:
        syms: list[int] = []
        rows: list[int] = []
        for ratio, indices in steps:
            if (ratio is None) != (self.ratios == 0):
                raise ValueError("a chunk-count symbol is needed exactly with adaptive chunking")
            if ratio is not None:
                if not 0 <= ratio < self.ratios:
                    raise ValueError(f"chunk-count symbol {ratio} outside [0, {self.ratios})")
                syms.append(int(ratio))
                rows.append(RATIO_ROW)
            for n in indices:
                n = int(n)
                if not 0 <= n < (1 << self.bits):
                    raise ValueError(f"index {n} outside [0, 2^{self.bits})")
                b = n.bit_length()
                syms.append(b)
                rows.append(0)
                rest = n - (1 << (b - 1)) if b > 0 else 0
                shift = max(b - 1, 0)
                for w in self._pieces(b):
                    shift -= w
                    syms.append((rest >> shift) & ((1 << w) - 1))
                    rows.append(w)
        while len(syms) < MIN_SYMBOLS:
            syms.append(0)
            rows.append(FILLER_ROW)
        return syms, rows

    def ideal_bits(self, steps: Sequence[Step]) -> float:
        """-log2 of the coded symbols' probabilities under the tables (no rANS overhead)."""
        import math

        syms, rows = self.symbols(steps)
        total = 0.0
        for sym, row in zip(syms, rows, strict=True):
            cdf = self._cdfs[row]
            total -= math.log2((cdf[sym + 1] - cdf[sym]) / (1 << PRECISION))
        return total

    def encode(self, steps: Sequence[Step]) -> bytes:
        syms, rows = self.symbols(steps)
        return RansEncoder().encode_with_indexes(syms, rows, self._cdfs, self._lens,
                                                 self._offs)

    # --- decoding -----------------------------------------------------------------------
    def _decode(self, stream: bytes, n_steps: int, chunks_of: ChunksOf,
                max_chunks: Sequence[int], pad: bytes) -> list[Step]:
        if len(stream) % 4:
            raise CodecError(f"DiffC rANS stream of {len(stream)} bytes is not whole 32-bit "
                             "words: truncated or corrupt")
        # Each symbol reads at most one word on renormalisation, and bypass (overflow) runs
        # read a bounded number of 4-bit groups: zero pads end them at once, 0xFFFEFFFE
        # pads after at most ~40 groups. 48 words per symbol is far above either.
        per_index = 1 + (self.bits + MANTISSA_PIECE - 2) // MANTISSA_PIECE
        n_sym = sum(1 + max_chunks[k] * per_index for k in range(n_steps)) + 2
        dec = RansDecoder()
        dec.set_stream(stream + pad * (48 * n_sym + 64))
        out: list[Step] = []

        def one(row: int) -> int:
            return dec.decode_stream([row], self._cdfs, self._lens, self._offs)[0]

        for k in range(n_steps):
            ratio = None
            if self.ratios:
                ratio = one(RATIO_ROW)
                if not 0 <= ratio < self.ratios:
                    raise StreamError(f"DiffC stream decodes to chunk-count symbol {ratio}: "
                                      "corrupt", out)
            count = chunks_of(k, ratio)
            if not 1 <= count <= max_chunks[k]:
                raise StreamError(f"DiffC step {k} would have {count} chunks: corrupt", out)
            indices = []
            for _ in range(count):
                b = one(0)
                if not 0 <= b <= self.bits:
                    raise StreamError(f"DiffC stream decodes to bucket {b} > chunk_bits "
                                      f"{self.bits}: corrupt", out)
                n = (1 << (b - 1)) if b > 0 else 0
                widths = self._pieces(b)
                if widths:
                    vals = dec.decode_stream(widths, self._cdfs, self._lens, self._offs)
                    rest = 0
                    for w, v in zip(widths, vals, strict=True):
                        if not 0 <= v < (1 << w):
                            raise StreamError("DiffC stream decodes to an out-of-range "
                                              "mantissa: corrupt", out)
                        rest = (rest << w) | v
                    n += rest
                indices.append(n)
            out.append((ratio, indices))
        return out

    def decode_full(self, stream: bytes, n_steps: int, chunks_of: ChunksOf,
                    max_chunks: Sequence[int]) -> list[Step]:
        """All steps of a complete stream; the stream must re-encode to itself."""
        steps = self._decode(stream, n_steps, chunks_of, max_chunks, PAD_A)
        if self.encode(steps) != stream:
            raise CodecError("DiffC payload is not the rANS stream of its indices (truncated, "
                             "corrupt, or coded with another chunk model)")
        return steps

    def decode_prefix(self, stream: bytes, n_steps: int, chunks_of: ChunksOf,
                      max_chunks: Sequence[int]) -> list[Step]:
        """The leading whole steps that ``stream`` (a prefix of the stream of ``n_steps``
        steps) determines exactly: those decoded identically under two paddings.

        The prefix is cut to whole 32-bit words and must hold the 8-byte initial state;
        after that, padding enters the decoder only through renormalisation reads, which
        put a whole word in the low bits, so the next symbol's slot is 0 under one pad and
        0xFFFE under the other: symbol 0 versus the last regular symbol of its CDF row (all
        rows that carry information have two or more). So the first step that differs
        between the two decodes is the first one not wholly backed by real bytes.
        """
        usable = len(stream) - len(stream) % 4
        if usable < 8:
            return []
        stream = stream[:usable]
        decodes = []
        for pad in (PAD_A, PAD_B):
            try:
                decodes.append(self._decode(stream, n_steps, chunks_of, max_chunks, pad))
            except StreamError as exc:
                decodes.append(exc.decoded)
        good = 0
        for x, y in zip(decodes[0], decodes[1], strict=False):
            if x != y:
                break
            good += 1
        return decodes[0][:good]
