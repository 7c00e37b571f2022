"""Poisson functional representation (Theis & Ahmed 2022, Alg. 4; DiffC App. A.1, A.4).

Send x ~ q using p when q = N(mu_q, s^2 I) and p = N(mu_p, s^2 I) share their per-dimension
variance (the DiffC case). In whitened coordinates z = (x - mu_p) / s, p = N(0, I) and
q = N(m, I) with m = (mu_q - mu_p) / s, so

    log q(z) / p(z) = m . z - |m|^2 / 2,   KL(q || p) = |m|^2 / 2 nats.

PFR draws candidates z_n ~ p (shared randomness, ``prng.py``) and arrival times t_n of a
unit-rate Poisson process, and picks n* = argmin_n t_n p(z_n) / q(z_n)
= argmax_n (m . z_n - log t_n). Deviation from Alg. 4 (as in the DiffC paper's
implementation): the search is bounded to K = 2^bits candidates instead of stopping on the
w_min criterion, so the index fits a fixed alphabet; with KL well below ``bits`` the
truncation almost never binds (measured in tests/benchmarks).

Only the encoder runs the search; the decoder regenerates candidate n* alone. The arrival
times are drawn from the same counter generator (a separate stream) so the encoder is
deterministic too; they use ``log`` in float64 and need not be bit-identical across
machines because the decoder never sees them.

Blocks. Candidates are scored ``block`` at a time, so memory is O(block + d), never O(K d):
with the fused C kernel (``fused.py``) the samples are not even materialised per block.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from diffstream.codecs.diffc import fused, prng

DEFAULT_BLOCK = 4096
TIME_PURPOSE = 0x7449  # stream tag of the arrival times (candidates use the chunk key)


@functools.lru_cache(maxsize=32)
def log_arrival_times(key: int, count: int) -> np.ndarray:
    """log t_n, n = 0..count-1: t_n = sum of n + 1 unit exponentials (float64)."""
    u = prng.uniforms_numpy(prng.derive_key(key, TIME_PURPOSE), count)
    t = np.cumsum(-np.log(u))
    out = np.log(t)
    out.setflags(write=False)
    return out


def _pad4(m: np.ndarray) -> np.ndarray:
    d = m.size
    out = np.zeros(prng.groups(d) * prng.LANES, dtype=np.float32)
    out[:d] = m
    return out


def scores_fused(m: np.ndarray, key: int, first: int, count: int,
                 out: np.ndarray | None = None) -> np.ndarray:
    """m . z_n for candidates first .. first + count - 1 with the fused C kernel."""
    buf = np.empty(count, dtype=np.float32) if out is None else out
    fused.pfr_dots(_pad4(np.asarray(m, dtype=np.float32)), key, first, count,
                   prng.normal_table_np(), buf)
    return buf[:count]


def scores_torch(m: np.ndarray, key: int, first: int, count: int) -> np.ndarray:
    """The same dots with torch ops on one block (samples materialised for the block only)."""
    z = prng.normals_torch(key, first, count, m.size)
    return (z @ torch.from_numpy(np.asarray(m, dtype=np.float32))).numpy()


def select(m: np.ndarray, key: int, bits: int, block: int = DEFAULT_BLOCK,
           backend: str = "auto") -> int:
    """PFR over K = 2^bits candidates of stream ``key``: the index n* in [0, K).

    ``m`` is the whitened mean difference (float32, length d). ``backend``: "fused" (C
    kernel), "torch" (blocked torch), or "auto" (fused when a compiler is available).
    """
    K = 1 << int(bits)
    m = np.ascontiguousarray(m, dtype=np.float32)
    use_fused = backend == "fused" or (backend == "auto" and fused.available())
    if backend not in ("auto", "fused", "torch"):
        raise ValueError(f"unknown PFR backend {backend!r}")
    log_t = log_arrival_times(key, K)
    padded = _pad4(m) if use_fused else None
    table = prng.normal_table_np()
    buf = np.empty(min(block, K), dtype=np.float32)
    best, best_n = -math.inf, 0
    for first in range(0, K, block):
        count = min(block, K - first)
        if use_fused:
            assert padded is not None
            fused.pfr_dots(padded, key, first, count, table, buf)
            dots = buf[:count]
        else:
            dots = scores_torch(m, key, first, count)
        s = dots.astype(np.float64) - log_t[first:first + count]
        i = int(np.argmax(s))
        if s[i] > best:
            best, best_n = float(s[i]), first + i
    return best_n


def select_naive(m: np.ndarray, key: int, bits: int) -> int:
    """The same selection materialising all K x d samples at once (benchmark baseline)."""
    K = 1 << int(bits)
    z = prng.normals_torch(key, 0, K, m.size)  # K x d float32 in memory
    dots = (z @ torch.from_numpy(np.asarray(m, dtype=np.float32))).numpy()
    return int(np.argmax(dots.astype(np.float64) - log_arrival_times(key, K)))


def candidate(key: int, n: int, d: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Candidate z_n (d float32 normals): what the decoder regenerates from an index."""
    return prng.normals_torch(key, int(n), 1, int(d), device)[0]


def select_1d(norm: float, key: int, bits: int) -> int:
    """PFR when only |m| matters: m . z_n ~ |m| g_n with g_n iid N(0, 1) (rotation
    invariance of p), so the index distribution of a chunk depends on its KL alone. Used
    to simulate index statistics cheaply (the bucket model); same arrival times."""
    K = 1 << int(bits)
    g = prng.normals_numpy(key, 0, 1, K)[0].astype(np.float64)
    return int(np.argmax(norm * g - log_arrival_times(key, K)))
