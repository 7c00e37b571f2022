"""The fast CRC-32 is zlib's CRC-32: same values, same running-CRC use, same inputs."""

from __future__ import annotations

import random
import zlib

import numpy as np
import pytest

from diffstream.transport import checksum
from diffstream.transport.checksum import crc32

LENGTHS = [0, 1, 2, 3, 7, 8, 15, 16, 31, 63, 64, 255, 4095, 12_288, 65_537, 786_432]


def _data(n: int, seed: int = 0) -> bytes:
    return random.Random(seed * 1_000_003 + n).randbytes(n)


def test_uses_isal_when_installed() -> None:
    pytest.importorskip("isal")
    assert checksum.IMPLEMENTATION == "isal"
    assert crc32 is not zlib.crc32


@pytest.mark.parametrize("n", LENGTHS)
def test_equals_zlib(n: int) -> None:
    data = _data(n)
    assert crc32(data) == zlib.crc32(data)
    assert crc32(data, 0) == zlib.crc32(data, 0)
    for start in (1, 0xDEADBEEF, 0xFFFFFFFF):
        assert crc32(data, start) == zlib.crc32(data, start)


def test_empty_and_known_values() -> None:
    assert crc32(b"") == 0 == zlib.crc32(b"")
    assert crc32(b"123456789") == 0xCBF43926  # the CRC-32/ISO-HDLC check value
    assert crc32(b"", 0x12345678) == 0x12345678


@pytest.mark.parametrize("n", [0, 1, 100, 12_288, 786_432])
@pytest.mark.parametrize("chunk", [1, 3, 64, 1000, 65_536])
def test_running_crc_over_chunks(n: int, chunk: int) -> None:
    data = _data(n, seed=1)
    if n > 20_000 and chunk < 64:
        data = data[:20_000]  # byte-by-byte over 768 kB adds nothing but time
    value = 0
    for i in range(0, len(data), chunk):
        value = crc32(data[i : i + chunk], value)
    assert value == zlib.crc32(data) == crc32(data)


def test_uneven_chunks_and_buffers() -> None:
    data = _data(50_000, seed=2)
    rng = random.Random(3)
    cuts = sorted(rng.sample(range(1, len(data)), 40))
    value, last = 0, 0
    view = memoryview(data)
    for cut in [*cuts, len(data)]:
        value = crc32(view[last:cut], value)  # memoryview slices: no copy needed
        last = cut
    assert value == zlib.crc32(data)
    assert crc32(bytearray(data)) == zlib.crc32(data)
    arr = np.frombuffer(data, dtype=np.uint8)
    assert crc32(arr) == zlib.crc32(arr)


def test_rejects_what_zlib_rejects() -> None:
    with pytest.raises(TypeError):
        crc32("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        zlib.crc32("text")  # type: ignore[arg-type]
