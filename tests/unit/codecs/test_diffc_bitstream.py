"""DiffC payload: the range coder, the step code in its three chunkings, bit accounting,
exact prefixes, corruption."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diffstream.codecs.base import CodecError
from diffstream.codecs.diffc.bitstream import (
    PRECISION,
    StepCoder,
    delta_counts,
    log_count,
    log_symbol,
    quantized_cdf,
)
from diffstream.codecs.diffc.rangecoder import RangeDecoder, RangeEncoder

BITS = 12
BUCKETS = [40, 10, 12, 20, 30, 40, 55, 60, 70, 75, 70, 60, 40]
RATIOS = [1, 2, 5, 20, 60, 80, 60, 20, 5, 2, 1, 1, 1]
SIZE = (32, 64)
MODES = ("image", "table", "adaptive")


def coder_for(mode: str) -> StepCoder:
    return StepCoder(BITS, BUCKETS, mode, RATIOS if mode == "adaptive" else None)


def chunks_of_for(mode: str):
    if mode == "image":
        return lambda k, r: log_count(r)
    return lambda k, r: 1 + (k % 3) + (0 if r is None else r // 4)


def random_steps(rng: np.random.Generator, n_steps: int, mode: str):
    out, r = [], int(rng.integers(0, 30))
    chunks_of = chunks_of_for(mode)
    for k in range(n_steps):
        if mode == "image":
            r = max(0, r + int(rng.integers(-4, 5)))
            ratio = r
        else:
            ratio = int(rng.integers(0, 13)) if mode == "adaptive" else None
        idx = [int(min(2 ** rng.uniform(0, BITS), 2**BITS - 1))
               for _ in range(chunks_of(k, ratio))]
        out.append((ratio, idx))
    return out


def size_of(mode: str):
    return None if mode == "image" else SIZE


def test_range_coder_roundtrip_and_flush_within_two_bytes():
    rng = np.random.default_rng(5)
    cdf = quantized_cdf([1, 7, 30, 100, 3])
    for trial in range(60):
        n = int(rng.integers(0, 300))
        syms = rng.integers(0, 5, n)
        raw = [(int(rng.integers(0, 1 << w)), int(w)) for w in rng.integers(0, 17, n)]
        enc = RangeEncoder()
        info = 0.0
        for s, (v, w) in zip(syms, raw, strict=True):
            enc.encode(cdf[s], cdf[s + 1] - cdf[s], PRECISION)
            enc.encode_bits(v, w)
            info += w - math.log2((cdf[s + 1] - cdf[s]) / 2**16)
        data = enc.finish()
        assert 8 * len(data) <= info + 16, (trial, len(data), info)  # flush <= 2 bytes
        dec = RangeDecoder(data)
        for s, (v, w) in zip(syms, raw, strict=True):
            t = dec.target(PRECISION)
            got = max(i for i in range(5) if cdf[i] <= t)
            assert got == s
            dec.consume(cdf[s], cdf[s + 1] - cdf[s])
            assert dec.decode_bits(w) == v
        assert dec.read_past <= 4
    assert RangeEncoder().finish() == b""


def test_log_counts():
    assert [log_count(r) for r in (0, 1, 8, 16, 24)] == [1, 2, 2, 4, 8]
    counts = [log_count(r) for r in range(200)]
    assert counts == sorted(counts)
    assert all(b <= a * 2 ** (1 / 8) + 1 for a, b in zip(counts, counts[1:], strict=False))
    for kl in (0.5, 9.0, 100.0, 1234.5):
        r = log_symbol(kl, 9.0)
        assert kl / log_count(r) <= 9.0 and (r == 0 or kl / log_count(r - 1) > 9.0)


def test_quantized_cdf_is_valid_and_integer():
    for counts in ([1, 1], [5, 0, 3], [1] * 256, BUCKETS, [10**6, 1, 1], delta_counts()):
        cdf = quantized_cdf(counts)
        assert cdf[0] == 0 and cdf[-1] == 1 << PRECISION and len(cdf) == len(counts) + 1
        assert all(b > a for a, b in zip(cdf[:-1], cdf[1:], strict=False))
        assert max(b - a for a, b in zip(cdf[:-1], cdf[1:], strict=False)) <= 1 << 15


@pytest.mark.parametrize("mode", MODES)
def test_roundtrip_and_bit_accounting(mode):
    coder = coder_for(mode)
    rng = np.random.default_rng(0)
    for trial in range(30):
        steps = random_steps(rng, int(rng.integers(1, 12)), mode)
        stream = coder.encode(steps, size_of(mode))
        got = coder.decode_full(stream, len(steps), chunks_of_for(mode), 10**6, size_of(mode))
        assert got == steps
        # real bytes vs the information in the symbols: at most the 2-byte flush
        ideal = coder.ideal_bits(steps, size_of(mode))
        assert ideal - 8 <= 8 * len(stream) <= ideal + 16, (trial, ideal, len(stream))
        # incremental writing gives the same bytes at every step
        w = coder.writer(size_of(mode))
        for j, s in enumerate(steps):
            w.add(s)
            assert w.finish() == coder.encode(steps[:j + 1], size_of(mode))


@pytest.mark.parametrize("mode", MODES)
def test_every_prefix_decodes_exact_whole_steps(mode):
    coder = coder_for(mode)
    chunks_of = chunks_of_for(mode)
    rng = np.random.default_rng(1)
    for _ in range(15):
        steps = random_steps(rng, int(rng.integers(1, 10)), mode)
        stream = coder.encode(steps, size_of(mode))
        prev = 0
        for cut in range(len(stream) + 1):
            got = coder.decode_prefix(stream[:cut], len(steps), chunks_of, 10**6)
            assert got == steps[:len(got)]  # exact whenever decoded
            assert len(got) >= prev  # more bytes never fewer steps
            prev = len(got)
        # the whole stream's last symbols are confirmed only by its end (decode_full)
        assert prev >= len(steps) - 1
        j = max(1, len(steps) // 2)  # a j-step stream: what a budget-limited encode sends
        alone = coder.encode(steps[:j], size_of(mode))
        assert coder.decode_full(alone, j, chunks_of, 10**6, size_of(mode)) == steps[:j]


def test_table_modes_carry_the_frame_size_and_image_mode_does_not():
    rng = np.random.default_rng(3)
    steps = random_steps(rng, 4, "table")
    coder = coder_for("table")
    stream = coder.encode(steps, SIZE)
    assert coder.stream_size(stream) == SIZE
    with pytest.raises(CodecError, match="expected 48x16"):
        coder.decode_full(stream, 4, chunks_of_for("table"), 10**6, (16, 48))
    img = coder_for("image")
    s2 = random_steps(rng, 4, "image")
    assert img.stream_size(img.encode(s2)) is None
    assert 8 * len(img.encode(s2)) <= img.ideal_bits(s2) + 16  # no size bits


def test_corrupt_and_truncated_full_streams_are_rejected():
    for mode in MODES:
        coder = coder_for(mode)
        chunks_of = chunks_of_for(mode)
        rng = np.random.default_rng(2)
        steps = random_steps(rng, 8, mode)
        stream = coder.encode(steps, size_of(mode))
        with pytest.raises(CodecError):
            coder.decode_full(stream[:-3], 8, chunks_of, 10**6, size_of(mode))
        rejected, total = 0, 0
        for pos in range(0, len(stream)):
            for bit in range(8):
                bad = bytearray(stream)
                bad[pos] ^= 1 << bit
                total += 1
                try:
                    other = coder.decode_full(bytes(bad), 8, chunks_of, 10**6, size_of(mode))
                except CodecError:
                    rejected += 1
                    continue
                # not caught: then it IS the canonical stream of other indices (no
                # redundancy; the x_t check byte and the transport's CRC32 guard frames)
                assert other != steps and coder.encode(other, size_of(mode)) == bytes(bad)
        assert rejected >= 0.5 * total, (mode, rejected, total)
        for _ in range(200):  # garbage never crashes or runs away: CodecError or a prefix
            junk = rng.bytes(int(rng.integers(0, 80)))
            try:
                coder.decode_full(junk, 8, chunks_of, 10**6, size_of(mode))
            except CodecError:
                pass
            coder.decode_prefix(junk, 8, chunks_of, 10**6)


def test_ideal_bits_of_raw_mantissa_is_exact():
    coder = StepCoder(BITS, BUCKETS, "table")
    one = coder.ideal_bits([(None, [2**11 + 5])], SIZE)  # size + bucket 12 + 11 raw bits
    cdf = quantized_cdf(BUCKETS)
    p12 = (cdf[13] - cdf[12]) / 2**16
    assert one == pytest.approx(16 + 11 - math.log2(p12))
