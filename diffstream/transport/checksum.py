"""CRC-32 for the hot paths: the same function and values as ``zlib.crc32``, only faster.

``crc32(data, value=0)`` is the standard CRC-32 (ISO-HDLC, the zlib/PNG/gzip one), with
zlib's signature and running-CRC use (``crc32(b, crc32(a)) == crc32(a + b)``). It is
python-isal's ``isal_zlib.crc32`` (Intel ISA-L, SIMD folding: about 10 us for a 768 kB
frame against zlib's 170 us) where that is installed, and ``zlib.crc32`` otherwise, so the
wire format and every number computed from a checksum are the same either way.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

crc32: Callable[..., int]
try:
    from isal.isal_zlib import crc32
except ImportError:  # pragma: no cover - isal is a core dependency; keep working without it
    crc32 = zlib.crc32

IMPLEMENTATION = "isal" if crc32 is not zlib.crc32 else "zlib"

__all__ = ["IMPLEMENTATION", "crc32"]
