"""DiffC payload: header, rANS step code, bit accounting, prefixes, corruption."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diffstream.codecs.base import CodecError
from diffstream.codecs.diffc.bitstream import (
    HEADER_BYTES,
    PRECISION,
    Header,
    StepCoder,
    quantized_cdf,
)

BITS = 12
BUCKETS = [40, 10, 12, 20, 30, 40, 55, 60, 70, 75, 70, 60, 40]
RATIOS = [1, 2, 5, 20, 60, 80, 60, 20, 5, 2, 1, 1, 1]


def chunks_of(k: int, ratio: int | None) -> int:
    return 1 + (k % 3) + (0 if ratio is None else ratio // 4)


def random_steps(rng: np.random.Generator, n_steps: int, adaptive: bool):
    out = []
    for k in range(n_steps):
        ratio = int(rng.integers(0, 13)) if adaptive else None
        idx = [int(min(2 ** rng.uniform(0, BITS), 2**BITS - 1))
               for _ in range(chunks_of(k, ratio))]
        out.append((ratio, idx))
    return out


def test_header_roundtrip_and_rejects():
    h = Header(True, 12, 7, 18, 32, 64)
    b = h.pack()
    assert len(b) == HEADER_BYTES and Header.unpack(b + b"xyz") == h
    with pytest.raises(CodecError, match="shorter than its"):
        Header.unpack(b[:3])
    with pytest.raises(CodecError, match="format"):
        Header.unpack(bytes([0xE0 | b[0] & 0x1F]) + b[1:])
    with pytest.raises(CodecError, match="0 steps"):
        Header.unpack(b[:2] + b"\x00" + b[3:])
    with pytest.raises(ValueError, match="multiples of 8"):
        Header(False, 12, 1, 3, 30, 32).pack()


def test_quantized_cdf_is_valid_and_integer():
    for counts in ([1], [5, 0, 3], [1] * 256, BUCKETS):
        cdf = quantized_cdf(counts)
        assert cdf[0] == 0 and cdf[-1] == 1 << PRECISION and cdf[-2] == (1 << PRECISION) - 1
        assert all(b > a for a, b in zip(cdf[:-1], cdf[1:], strict=False))
        assert len(cdf) == len(counts) + 2


@pytest.mark.parametrize("adaptive", [False, True])
def test_roundtrip_and_bit_accounting(adaptive):
    coder = StepCoder(BITS, BUCKETS, RATIOS if adaptive else None)
    rng = np.random.default_rng(0)
    for trial in range(30):
        steps = random_steps(rng, int(rng.integers(1, 12)), adaptive)
        stream = coder.encode(steps)
        maxc = [chunks_of(k, 12 if adaptive else None) for k in range(len(steps))]
        assert coder.decode_full(stream, len(steps), chunks_of, maxc) == steps
        # real bytes vs the information in the symbols: rANS adds its 64-bit state flush
        # and rounds up to 32-bit words, nothing else
        ideal = coder.ideal_bits(steps)
        assert len(stream) % 4 == 0
        assert ideal - 1 <= 8 * len(stream) <= ideal + 64 + 32, (trial, ideal, len(stream))
        # the information is about log2(index) + the bucket's entropy, never above the
        # fixed-length code by more than the bucket cost
        n_idx = sum(len(i) for _, i in steps)
        assert ideal < n_idx * (BITS + 8) + 4 * len(steps)


@pytest.mark.parametrize("adaptive", [False, True])
def test_every_prefix_decodes_exact_whole_steps(adaptive):
    coder = StepCoder(BITS, BUCKETS, RATIOS if adaptive else None)
    rng = np.random.default_rng(1)
    for _ in range(15):
        steps = random_steps(rng, int(rng.integers(1, 10)), adaptive)
        stream = coder.encode(steps)
        maxc = [chunks_of(k, 12 if adaptive else None) for k in range(len(steps))]
        prev = 0
        for cut in range(len(stream) + 1):
            got = coder.decode_prefix(stream[:cut], len(steps), chunks_of, maxc)
            assert got == steps[:len(got)]  # exact whenever decoded
            assert len(got) >= prev  # more bytes never fewer steps
            prev = len(got)
        assert prev == len(steps)
        # a standalone stream of the first j steps is what a budget-limited encode sends
        j = max(1, len(steps) // 2)
        alone = coder.encode(steps[:j])
        assert coder.decode_full(alone, j, chunks_of, maxc) == steps[:j]


def test_corrupt_and_truncated_full_streams_are_rejected():
    coder = StepCoder(BITS, BUCKETS, RATIOS)
    rng = np.random.default_rng(2)
    steps = random_steps(rng, 8, True)
    stream = coder.encode(steps)
    maxc = [chunks_of(k, 12) for k in range(8)]
    with pytest.raises(CodecError, match="32-bit"):
        coder.decode_full(stream[:-1], 8, chunks_of, maxc)
    with pytest.raises(CodecError):
        coder.decode_full(stream[:-4], 8, chunks_of, maxc)
    rejected = 0
    for pos in range(0, len(stream)):
        for bit in range(8):
            bad = bytearray(stream)
            bad[pos] ^= 1 << bit
            try:
                other = coder.decode_full(bytes(bad), 8, chunks_of, maxc)
            except CodecError:
                rejected += 1
                continue
            # not caught: then it IS the canonical stream of other indices (rANS has no
            # redundancy; the transport's CRC32 is what guards whole frames)
            assert other != steps and coder.encode(other) == bytes(bad)
    assert rejected >= 0.8 * 8 * len(stream)
    for _ in range(200):  # garbage never crashes, only CodecError or a prefix
        junk = rng.bytes(int(rng.integers(0, 80)))
        try:
            coder.decode_full(junk, 8, chunks_of, maxc)
        except CodecError:
            pass
        coder.decode_prefix(junk, 8, chunks_of, maxc)


def test_ideal_bits_of_uniform_mantissa_is_exact():
    coder = StepCoder(BITS, BUCKETS)
    one = coder.ideal_bits([(None, [2**11 + 5])])  # bucket 12 + 11 uniform bits
    p12 = (quantized_cdf(BUCKETS)[13] - quantized_cdf(BUCKETS)[12]) / 2**16
    # the 11 bits below the leading one cost 11 bits (+ < 0.01 for the overflow slots)
    assert 11 <= one + math.log2(p12) <= 11.01
