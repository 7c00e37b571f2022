"""Shared randomness for DiffC: a counter-based generator that is bit-identical everywhere.

Every random number the decoder must reproduce (the PFR candidates, x_T, DiffC-A noise) is
a pure function of integers: ``normal(key, n, i)`` for candidate ``n`` and dimension ``i``
of a stream ``key``. No generator state, no ``torch.Generator``/``torch.randn``: those
differ between CPU and CUDA and between library versions.

Hash: the SplitMix64 output function (Steele, Lea & Flood 2014; the finaliser of Stafford's
"Mix13") applied to a Weyl sequence, ``h = mix64(key + k * GOLDEN)``, which is SplitMix64
itself and passes BigCrush. Integer ops only (xor, logical shift, wrapping multiply), so
torch int64 on CPU or CUDA, numpy uint64 and the fused C kernel (``fused.py``) produce the
same bits; ``tests/unit/codecs/test_diffc_prng.py`` checks that.

Normals: each 64-bit hash gives four 16-bit lanes; lane ``u`` maps to ``NORMAL_TABLE[u]``,
the conditional mean of N(0, 1) over its u-th equiprobable bin,
``E[Z | Phi(Z) in [u, u+1) / 65536]``. The result is a 65 536-atom distribution with mean
exactly 0 (the table is symmetric) and variance 1 - 1.1e-6 (the within-bin variance it
drops); its largest value is 4.42 (conditional mean of the outermost bin). The table is
computed once on the CPU in float64 (closed form: (phi(a) - phi(b)) * 65536) and rounded to
float32, so every process gets the same table whatever device it later runs on.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
LANES = 4  # 16-bit lanes (normals) per 64-bit hash
LANE_BITS = 16


def _signed(c: int) -> int:
    """uint64 constant as the int64 with the same bits (torch has no uint64 arithmetic)."""
    return c - (1 << 64) if c >= (1 << 63) else c


_S_GOLDEN, _S_M1, _S_M2 = _signed(GOLDEN), _signed(_M1), _signed(_M2)


def mix64(z: int) -> int:
    """SplitMix64's output function on a Python int (uint64 semantics)."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * _M1) & MASK64
    z = ((z ^ (z >> 27)) * _M2) & MASK64
    return z ^ (z >> 31)


def derive_key(*parts: int) -> int:
    """A stream key from integers (seed, step, chunk, purpose ...): a chained hash."""
    k = 0x6A09E667F3BCC909  # sqrt(2) digits: an arbitrary non-zero start
    for p in parts:
        k = mix64(k ^ mix64((int(p) & MASK64) + GOLDEN))
    return k


def mix64_torch(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64's output function on int64 tensors (wrapping multiply, logical shifts)."""
    z = z ^ ((z >> 30) & ((1 << 34) - 1))
    z = z * _S_M1
    z = z ^ ((z >> 27) & ((1 << 37) - 1))
    z = z * _S_M2
    return z ^ ((z >> 31) & ((1 << 33) - 1))


def hashes_torch(key: int, start: int, count: int, device: torch.device | str = "cpu"
                 ) -> torch.Tensor:
    """h_k = mix64(key + k * GOLDEN) for k in [start, start + count), as int64."""
    k = torch.arange(start, start + count, dtype=torch.int64, device=device)
    return mix64_torch(k * _S_GOLDEN + _signed(key & MASK64))


def hashes_numpy(key: int, start: int, count: int) -> np.ndarray:
    """The same hashes as uint64 numpy (reference implementation for tests)."""
    with np.errstate(over="ignore"):
        z = (np.arange(start, start + count, dtype=np.uint64) * np.uint64(GOLDEN)
             + np.uint64(key & MASK64))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
        return z ^ (z >> np.uint64(31))


@functools.lru_cache(maxsize=1)
def normal_table_f64() -> np.ndarray:
    """E[Z | Z in bin u] for the 65 536 equiprobable bins of N(0, 1) (float64, CPU)."""
    from scipy.special import ndtri

    n = 1 << LANE_BITS
    edges = ndtri(np.arange(n + 1, dtype=np.float64) / n)  # -inf .. +inf
    pdf = np.exp(-0.5 * np.square(edges)) / math.sqrt(2 * math.pi)  # 0 at +-inf
    half = (pdf[:-1] - pdf[1:]) * n
    half = 0.5 * (half - half[::-1])  # exact antisymmetry: mean exactly 0
    return half


@functools.lru_cache(maxsize=1)
def normal_table_np() -> np.ndarray:
    return normal_table_f64().astype(np.float32)


_TABLES: dict[str, torch.Tensor] = {}


def normal_table(device: torch.device | str = "cpu") -> torch.Tensor:
    """The float32 table on ``device`` (built on the CPU, then copied: same bits)."""
    key = str(torch.device(device))
    if key not in _TABLES:
        _TABLES[key] = torch.from_numpy(normal_table_np().copy()).to(device)
    return _TABLES[key]


def groups(d: int) -> int:
    """Hashes per candidate of ``d`` dimensions (four normals per hash)."""
    return (d + LANES - 1) // LANES


def normals_torch(key: int, first: int, count: int, d: int,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Candidates ``first .. first + count - 1`` of stream ``key``: count x d float32.

    Element (n, i) is lane i % 4 of hash number n * groups(d) + i // 4.
    """
    g = groups(d)
    h = hashes_torch(key, first * g, count * g, device).view(count, g, 1)
    shifts = torch.arange(0, LANES * LANE_BITS, LANE_BITS, device=h.device, dtype=torch.int64)
    lanes = (h >> shifts) & ((1 << LANE_BITS) - 1)  # count x g x 4, logical bits
    z = normal_table(h.device)[lanes.view(count, g * LANES)]
    return z[:, :d]


def normals_numpy(key: int, first: int, count: int, d: int) -> np.ndarray:
    """Reference of ``normals_torch`` in numpy uint64."""
    g = groups(d)
    h = hashes_numpy(key, first * g, count * g).reshape(count, g, 1)
    lanes = (h >> (np.arange(LANES, dtype=np.uint64) * np.uint64(LANE_BITS))) & np.uint64(0xFFFF)
    return normal_table_np()[lanes.reshape(count, g * LANES).astype(np.int64)][:, :d]


def vector(key: int, shape: tuple[int, ...], device: torch.device | str = "cpu"
           ) -> torch.Tensor:
    """One standard-normal tensor of ``shape`` from stream ``key`` (x_T, DiffC-A noise)."""
    d = int(np.prod(shape))
    return normals_torch(key, 0, 1, d, device).view(shape)


def uniforms_numpy(key: int, count: int) -> np.ndarray:
    """count uniforms in (0, 1) (float64, 53-bit) from stream ``key``."""
    h = hashes_numpy(key, 0, count)
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / (1 << 53))


def permutation(key: int, n: int) -> torch.Tensor:
    """A shared random permutation of range(n): argsort of distinct 64-bit hashes.

    The hashes of one stream are distinct (mix64 is a bijection and the Weyl sequence does
    not repeat), so the sort has no ties and any stable or unstable sort agrees.
    """
    h = hashes_numpy(key, 0, n)
    return torch.from_numpy(np.argsort(h, kind="stable").astype(np.int64))
