"""The fused PFR scoring kernel on the CPU: DiffC App. A.4's CUDA kernel, in C.

``dots[n] = m . z_n`` for a block of candidates, generating each candidate's normals from
the counter hash (``prng.py``) inside the loop and accumulating the dot product at once,
so the K x d sample matrix is never written to memory: per element it is a quarter of a
hash, one table load (the 256 KB table stays in L2) and a multiply-add. The paper's kernel
avoids materialising samples on the GPU for the same reason.

Summation order (``TREE``): the products of group j (four lanes) are summed over j by a
pairwise tree over aligned power-of-two ranges of j, lane by lane, then
``(lane0 + lane1) + (lane2 + lane3)``. The C kernel builds that tree while streaming
(a stack of partial sums, one per level); ``reference_dots`` (numpy) and
``pfr.scores_torch`` (torch, CPU or CUDA) build it level by level, vectorised. Every
operation is one IEEE float32 multiply or add (``-ffp-contract=off``, no fast-math, no FMA
anywhere), so all three give the same bits, and the selected index and the whole score
ordering are the same on every backend and thread count (``test_diffc_pfr.py``). A
sequential sum would have been simplest in C but needs one torch op per group on the
torch/CUDA side; the tree needs log2(groups).

Build and load. The source is compiled on first use with the system C compiler
(``cc -O3``, about 0.2 s) into a per-user cache folder and loaded with ctypes (which
releases the GIL during the call, so ``pfr.select`` can spread a search over threads). The
cache file's name hashes the machine architecture, the compiler's identity (first line of
``cc --version``), the source and the flags, so a cache shared between machines or
compilers never serves a foreign binary. A cached file that fails to load is rebuilt once;
a loaded kernel must reproduce ``reference_dots`` on a small input before it is used. Any
failure (no compiler, a failed build, a corrupt or foreign ``.so``, a wrong self-test)
logs a warning that says why and leaves ``available()`` False: PFR then uses the torch path
in ``pfr.py`` with the same results. ``DIFFSTREAM_DIFFC_NO_C=1`` forces the torch path.
The outcome is recorded once the attempt has finished (``reset()`` forgets it, for tests).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from diffstream.codecs.diffc import prng

log = logging.getLogger(__name__)

NO_C_ENV = "DIFFSTREAM_DIFFC_NO_C"
FLAGS = ("-O3", "-fPIC", "-shared", "-ffp-contract=off", "-fno-fast-math")
SYMBOL = "diffc_pfr_dots"

C_SOURCE = r"""
#include <stdint.h>
#define GOLDEN 0x9E3779B97F4A7C15ULL
#define LEVELS 64

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Push the four lane products of group j onto the pairwise-sum stack st (LEVELS x 4):
   merge with the complete blocks that j's trailing one bits say are on top. */
static inline void push(float st[LEVELS][4], uint64_t j, float v0, float v1, float v2,
                        float v3) {
    int l = 0;
    for (; (j >> l) & 1; l++) {
        v0 = st[l][0] + v0; v1 = st[l][1] + v1; v2 = st[l][2] + v2; v3 = st[l][3] + v3;
    }
    st[l][0] = v0; st[l][1] = v1; st[l][2] = v2; st[l][3] = v3;
}

/* The stack after g groups holds one block per set bit of g; merge right to left. */
static inline float finish(float st[LEVELS][4], uint64_t g) {
    int l = 0;
    while (!((g >> l) & 1)) l++;
    float v0 = st[l][0], v1 = st[l][1], v2 = st[l][2], v3 = st[l][3];
    for (l++; l < LEVELS; l++) {
        if ((g >> l) & 1) {
            v0 = st[l][0] + v0; v1 = st[l][1] + v1; v2 = st[l][2] + v2; v3 = st[l][3] + v3;
        }
    }
    return (v0 + v1) + (v2 + v3);
}

/* dots[n] = sum_i m[i] * z(key, first + n, i), n in [0, count), g >= 1.
   m holds 4 * g floats (zero padded); element (n, i) of the stream is lane i % 4 of
   mix64(key + ((first + n) * g + i / 4) * GOLDEN), looked up in table (65536 floats). */
void diffc_pfr_dots(const float *m, int64_t g, uint64_t key, int64_t first,
                    int64_t count, const float *table, float *dots) {
    float sa[LEVELS][4], sb[LEVELS][4];
    int64_t n = 0;
    for (; n + 1 < count; n += 2) {  /* two candidates at a time: independent chains */
        uint64_t k0 = key + (uint64_t)(first + n) * (uint64_t)g * GOLDEN;
        uint64_t k1 = k0 + (uint64_t)g * GOLDEN;
        for (int64_t j = 0; j < g; j++) {
            uint64_t h = mix64(k0), e = mix64(k1);
            const float *mm = m + 4 * j;
            k0 += GOLDEN; k1 += GOLDEN;
            push(sa, (uint64_t)j, mm[0] * table[h & 0xFFFF], mm[1] * table[(h >> 16) & 0xFFFF],
                 mm[2] * table[(h >> 32) & 0xFFFF], mm[3] * table[h >> 48]);
            push(sb, (uint64_t)j, mm[0] * table[e & 0xFFFF], mm[1] * table[(e >> 16) & 0xFFFF],
                 mm[2] * table[(e >> 32) & 0xFFFF], mm[3] * table[e >> 48]);
        }
        dots[n] = finish(sa, (uint64_t)g);
        dots[n + 1] = finish(sb, (uint64_t)g);
    }
    for (; n < count; n++) {
        uint64_t k0 = key + (uint64_t)(first + n) * (uint64_t)g * GOLDEN;
        for (int64_t j = 0; j < g; j++) {
            uint64_t h = mix64(k0);
            const float *mm = m + 4 * j;
            k0 += GOLDEN;
            push(sa, (uint64_t)j, mm[0] * table[h & 0xFFFF], mm[1] * table[(h >> 16) & 0xFFFF],
                 mm[2] * table[(h >> 32) & 0xFFFF], mm[3] * table[h >> 48]);
        }
        dots[n] = finish(sa, (uint64_t)g);
    }
}
"""

_LOCK = threading.Lock()
_LIB: ctypes.CDLL | None = None
_TRIED = False
_REASON: str | None = None  # why the kernel is unavailable (None while it is usable)


class KernelError(RuntimeError):
    """The fused kernel could not be built, loaded or verified (the message says why)."""


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "diffstream"


def forced_off() -> bool:
    return os.environ.get(NO_C_ENV, "").strip().lower() not in ("", "0", "false", "no")


def find_compiler() -> str:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise KernelError("no C compiler (CC is unset and neither cc nor gcc is on PATH)")
    return cc


def compiler_identity(cc: str) -> str:
    """First line of ``cc --version`` (e.g. 'cc (Debian 12.2.0-14) 12.2.0')."""
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise KernelError(f"C compiler {cc!r} does not run: {exc}") from exc
    lines = (out.stdout or out.stderr).strip().splitlines()
    if out.returncode != 0 or not lines:
        raise KernelError(f"`{cc} --version` failed (exit {out.returncode})")
    return lines[0].strip()


def cache_key(compiler: str, machine: str | None = None, flags: tuple[str, ...] = FLAGS,
              source: str = C_SOURCE) -> str:
    """The cache file's tag: architecture, compiler identity, source hash and flags."""
    parts = {"machine": machine if machine is not None else platform.machine(),
             "compiler": compiler, "source": hashlib.sha256(source.encode()).hexdigest(),
             "flags": list(flags)}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _writable_cache() -> Path:
    try:
        d = _cache_dir()
        d.mkdir(parents=True, exist_ok=True)
        return d
    except OSError:
        d = Path(tempfile.gettempdir()) / f"diffstream-{os.getuid()}"
        d.mkdir(parents=True, exist_ok=True)
        return d


def _compile(cc: str, so: Path) -> None:
    with tempfile.TemporaryDirectory(dir=so.parent) as tmp:
        src = Path(tmp) / "pfr.c"
        src.write_text(C_SOURCE)
        out = Path(tmp) / "pfr.so"
        try:
            res = subprocess.run([cc, *FLAGS, "-o", str(out), str(src)], capture_output=True,
                                 text=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as exc:
            raise KernelError(f"compiling with {cc!r} failed: {exc}") from exc
        if res.returncode != 0 or not out.is_file():
            err = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["no output"]
            raise KernelError(f"compiling with {cc!r} failed (exit {res.returncode}): {err[0]}")
        os.replace(out, so)  # atomic: concurrent builders never see half a file


def _load(so: Path) -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(str(so))
        f = getattr(lib, SYMBOL)
    except (OSError, AttributeError) as exc:
        raise KernelError(f"{so} does not load: {exc}") from exc
    f.restype = None
    f.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint64, ctypes.c_int64,
                  ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
    _self_test(lib, so)
    return lib


def _call(lib: ctypes.CDLL, m_padded: np.ndarray, key: int, first: int, count: int,
          table: np.ndarray, out: np.ndarray) -> None:
    lib.diffc_pfr_dots(m_padded.ctypes.data, m_padded.size // prng.LANES,
                       ctypes.c_uint64(key & prng.MASK64), first, count,
                       table.ctypes.data, out.ctypes.data)


def _self_test(lib: ctypes.CDLL, so: Path) -> None:
    """A loaded kernel must give the reference bits (catches a miscompiled or wrong .so)."""
    m = np.random.default_rng(7).standard_normal(4 * 11).astype(np.float32)
    m[-3:] = 0.0  # a zero-padded tail, as for d = 41
    key, first, count = prng.derive_key(0x7E57), 5, 9
    got = np.empty(count, dtype=np.float32)
    _call(lib, m, key, first, count, prng.normal_table_np(), got)
    ref = reference_dots(m, key, first, count)
    if not np.array_equal(got.view(np.uint32), ref.view(np.uint32)):
        raise KernelError(f"{so} loads but its scores differ from the reference")


def _build() -> ctypes.CDLL:
    cc = find_compiler()
    tag = cache_key(compiler_identity(cc))
    so = _writable_cache() / f"diffc_pfr_{tag}.so"
    if so.is_file():
        try:
            return _load(so)
        except KernelError as exc:
            log.warning("DiffC PFR kernel: the cached %s (rebuilding it)", exc)
            so.unlink(missing_ok=True)
    _compile(cc, so)
    return _load(so)


def library() -> ctypes.CDLL | None:
    """The loaded kernel, or None (the reason is logged once and kept in ``reason()``)."""
    global _LIB, _TRIED, _REASON
    with _LOCK:
        if not _TRIED:
            lib, reason = None, None
            if forced_off():
                reason = f"{NO_C_ENV} is set"
                log.info("DiffC PFR: %s, using the torch path", reason)
            else:
                try:
                    lib = _build()
                except Exception as exc:  # any failure at all means: use torch, say why
                    reason = str(exc) if isinstance(exc, KernelError) else repr(exc)
                    log.warning("DiffC PFR kernel unavailable (%s): using the torch path, "
                                "same results, slower", reason)
            _LIB, _REASON = lib, reason
            _TRIED = True  # recorded after the attempt, never before
        return _LIB


def available() -> bool:
    return library() is not None


def reason() -> str | None:
    """Why the kernel is not used (None when it is, or before the first attempt)."""
    library()
    return _REASON


def reset() -> None:
    """Forget the load attempt (the next call builds or loads again)."""
    global _LIB, _TRIED, _REASON
    with _LOCK:
        _LIB, _TRIED, _REASON = None, False, None


def tree_sum_groups(p: np.ndarray) -> np.ndarray:
    """Sum count x g x 4 products over g in the kernel's pairwise order -> count x 4."""
    while p.shape[1] > 1:
        L = p.shape[1]
        s = p[:, 0:L - 1:2] + p[:, 1:L:2]
        p = np.concatenate([s, p[:, L - 1:]], axis=1) if L % 2 else s
    return p[:, 0]


def reference_dots(m_padded: np.ndarray, key: int, first: int, count: int) -> np.ndarray:
    """The kernel's exact result in numpy (every op an IEEE float32 op): the self-test."""
    g = m_padded.size // prng.LANES
    z = prng.normals_numpy(key, first, count, g * prng.LANES).reshape(count, g, prng.LANES)
    s = tree_sum_groups(z * m_padded.reshape(1, g, prng.LANES).astype(np.float32))
    return (s[:, 0] + s[:, 1]) + (s[:, 2] + s[:, 3])


def pfr_dots(m_padded: np.ndarray, key: int, first: int, count: int, table: np.ndarray,
             out: np.ndarray) -> None:
    """out[:count] = m . z_n for candidates first .. first + count - 1 (see C_SOURCE)."""
    lib = library()
    if lib is None:
        raise RuntimeError(f"the fused DiffC kernel is not available ({_REASON})")
    assert m_padded.dtype == np.float32 and m_padded.flags.c_contiguous
    assert m_padded.size % 4 == 0 and m_padded.size > 0
    assert table.dtype == np.float32 and out.dtype == np.float32 and out.size >= count
    _call(lib, m_padded, key, first, count, table, out)
