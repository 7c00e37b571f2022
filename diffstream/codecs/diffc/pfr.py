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
deterministic too; they are computed on the CPU (numpy ``log``, float64) on every backend.

Backends, all with the same bits (the summation order is fixed, ``fused.py``): the fused
C kernel (CPU, optionally spread over threads: ctypes releases the GIL), and torch on the
mean's device (a CPU fallback without a compiler; on CUDA the integer hashing runs on the
GPU as is). The scores are float32 dots minus float64 log t_n; the selected index is the
first maximum, so every backend and thread count selects the same candidate.

Blocks. Candidates are scored ``block`` at a time, so memory is O(block + d), never O(K d):
with the fused C kernel the samples are not even materialised per block.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from diffstream.codecs.diffc import fused, prng

DEFAULT_BLOCK = 4096
TIME_PURPOSE = 0x7449  # stream tag of the arrival times (candidates use the chunk key)
THREADS_ENV = "DIFFSTREAM_DIFFC_THREADS"
MIN_SPLIT = 1024  # fewest candidates worth a thread of their own
# torch path: elements (candidates x padded dims) per block, bounding its memory
TORCH_ELEMS = {"cpu": 1 << 21, "cuda": 1 << 25}
BACKENDS = ("auto", "fused", "torch")

MeanLike = np.ndarray | torch.Tensor


@functools.lru_cache(maxsize=32)
def log_arrival_times(key: int, count: int) -> np.ndarray:
    """log t_n, n = 0..count-1: t_n = sum of n + 1 unit exponentials (float64)."""
    u = prng.uniforms_numpy(prng.derive_key(key, TIME_PURPOSE), count)
    t = np.cumsum(-np.log(u))
    out = np.log(t)
    out.setflags(write=False)
    return out


def default_threads() -> int:
    """``DIFFSTREAM_DIFFC_THREADS`` when set, else the cores this process may use."""
    env = os.environ.get(THREADS_ENV, "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"{THREADS_ENV}={env!r}: give a positive integer") from None
        if n < 1:
            raise ValueError(f"{THREADS_ENV}={env!r}: give a positive integer")
        return n
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


_POOLS: dict[int, tuple[int, ThreadPoolExecutor]] = {}
_POOL_LOCK = threading.Lock()


def _pool(n: int) -> ThreadPoolExecutor:
    """One executor per size, per process (a forked child builds its own)."""
    with _POOL_LOCK:
        pid, ex = _POOLS.get(n, (-1, None))
        if ex is None or pid != os.getpid():
            ex = ThreadPoolExecutor(max_workers=n, thread_name_prefix="diffc-pfr")
            _POOLS[n] = (os.getpid(), ex)
        return ex


def _pad4(m: np.ndarray) -> np.ndarray:
    d = m.size
    out = np.zeros(prng.groups(d) * prng.LANES, dtype=np.float32)
    out[:d] = m
    return out


def _as_numpy(m: MeanLike) -> np.ndarray:
    if isinstance(m, torch.Tensor):
        m = m.detach().to("cpu", torch.float32).numpy()
    return np.ascontiguousarray(m, dtype=np.float32).reshape(-1)


def scores_fused(m: np.ndarray, key: int, first: int, count: int,
                 out: np.ndarray | None = None) -> np.ndarray:
    """m . z_n for candidates first .. first + count - 1 with the fused C kernel."""
    buf = np.empty(count, dtype=np.float32) if out is None else out
    fused.pfr_dots(_pad4(_as_numpy(m)), key, first, count, prng.normal_table_np(), buf)
    return buf[:count]


def _tree_sum_torch(p: torch.Tensor) -> torch.Tensor:
    """``fused.tree_sum_groups`` in torch: count x g x 4 -> count x 4, same order."""
    while p.shape[1] > 1:
        L = p.shape[1]
        s = p[:, 0:L - 1:2] + p[:, 1:L:2]
        p = torch.cat([s, p[:, L - 1:]], dim=1) if L % 2 else s
    return p[:, 0]


def _dots_torch(m4: torch.Tensor, key: int, first: int, count: int) -> torch.Tensor:
    """Dots of candidates first .. first + count - 1 on m4's device (g x 4, zero padded),
    bit-identical to the C kernel: elementwise float32 products, the kernel's tree."""
    g = m4.shape[0]
    h = prng.hashes_torch(key, first * g, count * g, m4.device).view(count, g, 1)
    shifts = torch.arange(0, prng.LANES * prng.LANE_BITS, prng.LANE_BITS,
                          device=m4.device, dtype=torch.int64)
    lanes = (h >> shifts) & ((1 << prng.LANE_BITS) - 1)  # count x g x 4
    p = prng.normal_table(m4.device)[lanes] * m4  # one rounding per product
    s = _tree_sum_torch(p)
    return (s[:, 0] + s[:, 1]) + (s[:, 2] + s[:, 3])


def _m4(m: MeanLike, device: torch.device) -> torch.Tensor:
    if isinstance(m, torch.Tensor):
        flat = m.detach().reshape(-1).to(device, torch.float32)
    else:
        flat = torch.from_numpy(_as_numpy(m)).to(device)
    g = prng.groups(flat.numel())
    m4 = torch.zeros(g * prng.LANES, dtype=torch.float32, device=device)
    m4[:flat.numel()] = flat
    return m4.view(g, prng.LANES)


def scores_torch(m: MeanLike, key: int, first: int, count: int,
                 device: torch.device | str | None = None) -> np.ndarray:
    """The same dots with torch ops (on ``device``, default m's device or the CPU); the
    samples of the block are materialised."""
    dev = torch.device(device if device is not None else
                       (m.device if isinstance(m, torch.Tensor) else "cpu"))
    return _dots_torch(_m4(m, dev), key, first, count).cpu().numpy()


def _torch_rows(g: int, block: int, device: torch.device) -> int:
    """Candidates per torch block: ``block`` on the CPU; on a GPU as many as the memory
    cap allows (``block`` is a CPU cache size; small GPU blocks are launch-bound)."""
    cap = TORCH_ELEMS.get(device.type, TORCH_ELEMS["cuda"])
    rows = cap // (g * prng.LANES)
    return max(1, rows if device.type != "cpu" else min(block, rows))


def _select_torch(m: MeanLike, key: int, K: int, block: int, device: torch.device) -> int:
    m4 = _m4(m, device)
    rows = _torch_rows(m4.shape[0], block, device)
    log_t = torch.from_numpy(log_arrival_times(key, K).copy()).to(device)  # CPU bits
    vals, args = [], []
    for first in range(0, K, rows):
        count = min(rows, K - first)
        s = _dots_torch(m4, key, first, count).double() - log_t[first:first + count]
        v, i = torch.max(s, dim=0)  # the first maximum (torch.max / argmax contract)
        vals.append(v)
        args.append(i + first)
    # blocks in order: the first block holding the maximum wins, as in one argmax
    j = int(torch.argmax(torch.stack(vals)))
    return int(args[j])


def _best_range(padded: np.ndarray, key: int, lo: int, hi: int, block: int,
                log_t: np.ndarray) -> tuple[float, int]:
    """(best score, its index) over candidates [lo, hi): the first maximum."""
    table = prng.normal_table_np()
    buf = np.empty(min(block, hi - lo), dtype=np.float32)
    best, best_n = -math.inf, lo
    for first in range(lo, hi, block):
        count = min(block, hi - first)
        fused.pfr_dots(padded, key, first, count, table, buf)
        s = buf[:count].astype(np.float64) - log_t[first:first + count]
        i = int(np.argmax(s))
        if s[i] > best:
            best, best_n = float(s[i]), first + i
    return best, best_n


def _select_fused(m: np.ndarray, key: int, K: int, block: int, threads: int) -> int:
    padded = _pad4(m)
    log_t = log_arrival_times(key, K)
    parts = max(1, min(threads, K // MIN_SPLIT))
    if parts == 1:
        return _best_range(padded, key, 0, K, block, log_t)[1]
    edges = [K * i // parts for i in range(parts + 1)]
    futs = [_pool(parts).submit(_best_range, padded, key, lo, hi, block, log_t)
            for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    best, best_n = -math.inf, 0
    for f in futs:  # ranges in order, strict > : the first maximum overall
        v, n = f.result()
        if v > best:
            best, best_n = v, n
    return best_n


def resolve_backend(m: MeanLike, backend: str) -> str:
    """"fused" or "torch" for this mean: auto = torch on a GPU tensor, else the C kernel
    when it loads, else torch."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown PFR backend {backend!r} (one of {BACKENDS})")
    on_gpu = isinstance(m, torch.Tensor) and m.device.type != "cpu"
    if backend == "auto":
        return "torch" if on_gpu or not fused.available() else "fused"
    return backend


def select(m: MeanLike, key: int, bits: int, block: int = DEFAULT_BLOCK,
           backend: str = "auto", threads: int | None = None) -> int:
    """PFR over K = 2^bits candidates of stream ``key``: the index n* in [0, K).

    ``m`` is the whitened mean difference (length d): a numpy array, or a torch tensor
    (a CUDA tensor is searched on its GPU). ``backend``: "fused" (C kernel, CPU), "torch"
    (blocked torch on m's device), or "auto". ``threads`` (fused only; default
    ``default_threads()``) spreads the K candidates over threads. Every choice selects
    the same index.
    """
    K = 1 << int(bits)
    which = resolve_backend(m, backend)
    if which == "torch":
        dev = m.device if isinstance(m, torch.Tensor) else torch.device("cpu")
        return _select_torch(m, key, K, int(block), dev)
    n = default_threads() if threads is None else int(threads)
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return _select_fused(_as_numpy(m), key, K, int(block), n)


def select_naive(m: np.ndarray, key: int, bits: int) -> int:
    """The same selection materialising all K x d samples at once (benchmark baseline;
    BLAS summation order, so a float near-tie may pick another index than ``select``)."""
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
