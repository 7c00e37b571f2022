"""The fused PFR scoring kernel on the CPU: DiffC App. A.4's CUDA kernel, in C.

``dots[n] = m . z_n`` for a block of candidates, generating each candidate's normals from
the counter hash (``prng.py``) inside the loop and accumulating the dot product at once,
so the K x d sample matrix is never written to memory: per element it is a quarter of a
hash, one table load (the 256 KB table stays in L2) and a multiply-add. The paper's kernel
avoids materialising samples on the GPU for the same reason.

The C source below is compiled on first use with the system C compiler (``cc -O3``, about
0.2 s) into a per-user cache folder and loaded with ctypes; no Python build step, no
torch extension toolchain. ``-ffp-contract=off`` and no fast-math keep the float32
summation order fixed, so the same machine code choice gives the same scores anywhere.
Only the encoder uses the scores (the decoder regenerates the one selected candidate with
``prng.normals_torch``), so this kernel never needs to agree bit for bit with torch.

Without a compiler (or with ``DIFFSTREAM_DIFFC_NO_C=1``) ``available()`` is False and PFR
falls back to the blocked torch path in ``pfr.py``, which selects the same candidates up to
float summation order (slower, same memory bound).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

C_SOURCE = r"""
#include <stdint.h>
#define GOLDEN 0x9E3779B97F4A7C15ULL

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* dots[n] = sum_i m[i] * z(key, first + n, i), n in [0, count).
   m holds 4 * g floats (zero padded); element (n, i) of the stream is lane i % 4 of
   mix64(key + ((first + n) * g + i / 4) * GOLDEN), looked up in table (65536 floats). */
void diffc_pfr_dots(const float *m, int64_t g, uint64_t key, int64_t first,
                    int64_t count, const float *table, float *dots) {
    int64_t n = 0;
    for (; n + 1 < count; n += 2) {  /* two candidates at a time: independent chains */
        uint64_t k0 = key + (uint64_t)(first + n) * (uint64_t)g * GOLDEN;
        uint64_t k1 = k0 + (uint64_t)g * GOLDEN;
        float a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
        for (int64_t j = 0; j < g; j++) {
            uint64_t h = mix64(k0), e = mix64(k1);
            const float *mm = m + 4 * j;
            k0 += GOLDEN; k1 += GOLDEN;
            a0 += mm[0] * table[h & 0xFFFF];
            a1 += mm[1] * table[(h >> 16) & 0xFFFF];
            a2 += mm[2] * table[(h >> 32) & 0xFFFF];
            a3 += mm[3] * table[h >> 48];
            b0 += mm[0] * table[e & 0xFFFF];
            b1 += mm[1] * table[(e >> 16) & 0xFFFF];
            b2 += mm[2] * table[(e >> 32) & 0xFFFF];
            b3 += mm[3] * table[e >> 48];
        }
        dots[n] = (a0 + a1) + (a2 + a3);
        dots[n + 1] = (b0 + b1) + (b2 + b3);
    }
    for (; n < count; n++) {
        uint64_t k0 = key + (uint64_t)(first + n) * (uint64_t)g * GOLDEN;
        float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        for (int64_t j = 0; j < g; j++) {
            uint64_t h = mix64(k0);
            const float *mm = m + 4 * j;
            k0 += GOLDEN;
            a0 += mm[0] * table[h & 0xFFFF];
            a1 += mm[1] * table[(h >> 16) & 0xFFFF];
            a2 += mm[2] * table[(h >> 32) & 0xFFFF];
            a3 += mm[3] * table[h >> 48];
        }
        dots[n] = (a0 + a1) + (a2 + a3);
    }
}
"""

_LOCK = threading.Lock()
_LIB: ctypes.CDLL | None = None
_TRIED = False


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "diffstream"


def _build() -> ctypes.CDLL | None:
    if os.environ.get("DIFFSTREAM_DIFFC_NO_C"):
        return None
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        log.info("no C compiler: DiffC PFR uses the blocked torch path")
        return None
    flags = ["-O3", "-fPIC", "-shared", "-ffp-contract=off", "-fno-fast-math"]
    tag = hashlib.sha256((C_SOURCE + " ".join(flags) + cc).encode()).hexdigest()[:16]
    try:
        d = _cache_dir()
        d.mkdir(parents=True, exist_ok=True)
    except OSError:
        d = Path(tempfile.gettempdir()) / f"diffstream-{os.getuid()}"
        d.mkdir(parents=True, exist_ok=True)
    so = d / f"diffc_pfr_{tag}.so"
    if not so.is_file():
        with tempfile.TemporaryDirectory(dir=d) as tmp:
            src = Path(tmp) / "pfr.c"
            src.write_text(C_SOURCE)
            out = Path(tmp) / "pfr.so"
            try:
                subprocess.run([cc, *flags, "-o", str(out), str(src)], check=True,
                               capture_output=True, timeout=120)
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning("compiling the DiffC PFR kernel failed (%s): using torch", exc)
                return None
            os.replace(out, so)  # atomic: concurrent builders never see half a file
    lib = ctypes.CDLL(str(so))
    f = lib.diffc_pfr_dots
    f.restype = None
    f.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint64, ctypes.c_int64,
                  ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
    return lib


def library() -> ctypes.CDLL | None:
    global _LIB, _TRIED
    with _LOCK:
        if not _TRIED:
            _TRIED = True
            _LIB = _build()
        return _LIB


def available() -> bool:
    return library() is not None


def pfr_dots(m_padded: np.ndarray, key: int, first: int, count: int, table: np.ndarray,
             out: np.ndarray) -> None:
    """out[:count] = m . z_n for candidates first .. first + count - 1 (see C_SOURCE)."""
    lib = library()
    if lib is None:
        raise RuntimeError("the fused DiffC kernel is not available (no C compiler)")
    assert m_padded.dtype == np.float32 and m_padded.flags.c_contiguous
    assert m_padded.size % 4 == 0 and table.dtype == np.float32 and out.dtype == np.float32
    assert out.size >= count
    lib.diffc_pfr_dots(m_padded.ctypes.data, m_padded.size // 4,
                       ctypes.c_uint64(key & ((1 << 64) - 1)), first, count,
                       table.ctypes.data, out.ctypes.data)
