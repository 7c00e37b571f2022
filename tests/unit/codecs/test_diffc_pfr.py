"""PFR (Theis & Ahmed 2022, Alg. 4) as DiffC uses it: selected samples follow q."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from diffstream.codecs.diffc import fused, pfr, prng

BITS = 8  # K = 256 candidates; the test KLs are ~1-2 bits, far inside the bound


def _selected(m: np.ndarray, trials: int, seed: int, pick=None) -> np.ndarray:
    out = np.empty((trials, m.size))
    for r in range(trials):
        key = prng.derive_key(seed, r)
        n = pfr.select(m, key, BITS) if pick is None else pick(key)
        out[r] = pfr.candidate(key, n, m.size).double().numpy()
    pfr.log_arrival_times.cache_clear()
    return out


def test_pfr_1d_samples_follow_q_and_controls_fail():
    mu = 1.5  # q = N(1.5, 1), p = N(0, 1): KL = 1.125 nats = 1.6 bits
    m = np.array([mu], dtype=np.float32)
    z = _selected(m, 1500, seed=11)[:, 0]
    assert stats.kstest(z, "norm", args=(mu, 1.0)).pvalue > 1e-3
    assert abs(z.mean() - mu) < 4 / math.sqrt(len(z))
    # negative controls: selection that ignores q gives p's samples, which the test rejects
    first = _selected(m, 1500, seed=12, pick=lambda key: 0)[:, 0]
    assert stats.kstest(first, "norm", args=(mu, 1.0)).pvalue < 1e-10
    blind = _selected(np.zeros(1, np.float32), 1500, seed=13)[:, 0]
    assert stats.kstest(blind, "norm", args=(mu, 1.0)).pvalue < 1e-10
    assert stats.kstest(blind, "norm").pvalue > 1e-3  # ... and they do follow p


def test_pfr_2d_samples_follow_q():
    m = np.array([1.0, -0.7], dtype=np.float32)
    z = _selected(m, 1200, seed=21)
    for i in range(2):
        assert stats.kstest(z[:, i], "norm", args=(float(m[i]), 1.0)).pvalue > 1e-3
    assert abs(np.corrcoef(z.T)[0, 1]) < 4 / math.sqrt(len(z))  # q has identity covariance
    # the projection on m carries the whole KL; a control with m mirrored must fail
    wrong = stats.kstest(z[:, 0], "norm", args=(-1.0, 1.0)).pvalue
    assert wrong < 1e-10


def test_index_distribution_grows_with_kl():
    """log2 index ~ KL: the basis of the bucket code (more KL, larger indices)."""
    def mean_log(kl_bits: float) -> float:
        norm = math.sqrt(2 * kl_bits * math.log(2))
        idx = [pfr.select(np.array([norm], np.float32), prng.derive_key(5, r, int(kl_bits)),
                          12) for r in range(300)]
        return float(np.mean(np.log2(np.array(idx) + 1)))

    a, b = mean_log(2.0), mean_log(6.0)
    assert b > a + 2.0


@pytest.mark.parametrize("backend", ["torch", "fused"])
def test_blocked_selection_equals_naive(backend):
    if backend == "fused" and not fused.available():
        pytest.skip("no C compiler for the fused PFR kernel")
    rng = np.random.default_rng(1)
    for r in range(4):
        m = (rng.standard_normal(50) * 0.4).astype(np.float32)
        key = prng.derive_key(77, r)
        naive = pfr.select_naive(m, key, 10)
        assert pfr.select(m, key, 10, block=100, backend=backend) == naive
        assert pfr.select(m, key, 10, block=1024, backend=backend) == naive


def test_candidate_matches_block_row():
    key = prng.derive_key(8)
    assert torch.equal(pfr.candidate(key, 5, 33), prng.normals_torch(key, 0, 8, 33)[5])


# ------------------------------------------------------------- backends and threads agree
CASES = [(1, 6), (37, 8), (300, 12), (50, 16)]  # (d, bits): odd tails, 16-bit chunks


def _reference_scores(m: np.ndarray, key: int, K: int) -> np.ndarray:
    dots = fused.reference_dots(pfr._pad4(m), key, 0, K)
    return dots.astype(np.float64) - pfr.log_arrival_times(key, K)


@pytest.mark.parametrize(("d", "bits"), CASES)
def test_scores_and_selection_bit_identical_across_backends_and_threads(d, bits):
    """Torch CPU path, C kernel with 1 and 3 threads: the same float32 dots bit for bit,
    so the same score ordering and the same selected index (incl. 16-bit chunks)."""
    rng = np.random.default_rng(d + bits)
    K = 1 << bits
    for r in range(2):
        m = (rng.standard_normal(d) * 0.6).astype(np.float32)
        key = prng.derive_key(31, d, bits, r)
        ref = fused.reference_dots(pfr._pad4(m), key, 0, K)
        got_torch = pfr.scores_torch(m, key, 0, K)
        assert np.array_equal(got_torch.view(np.uint32), ref.view(np.uint32))
        s = _reference_scores(m, key, K)
        order = np.argsort(s, kind="stable")
        want = int(np.argmax(s))
        assert pfr.select(m, key, bits, backend="torch") == want
        assert pfr.select(torch.from_numpy(m), key, bits, block=777, backend="torch") == want
        if fused.available():
            got_c = pfr.scores_fused(m, key, 0, K)
            assert np.array_equal(got_c.view(np.uint32), ref.view(np.uint32))
            s_c = got_c.astype(np.float64) - pfr.log_arrival_times(key, K)
            assert np.array_equal(np.argsort(s_c, kind="stable"), order)
            for threads in (1, 3):
                assert pfr.select(m, key, bits, backend="fused", threads=threads) == want
            assert pfr.select(m, key, bits, block=333, backend="fused", threads=2) == want


@pytest.mark.skipif(not fused.available(), reason="no C compiler for the fused PFR kernel")
def test_threads_split_the_candidates(monkeypatch):
    seen = []
    real = pfr._best_range

    def spy(padded, key, lo, hi, block, log_t):
        seen.append((lo, hi))
        return real(padded, key, lo, hi, block, log_t)

    monkeypatch.setattr(pfr, "_best_range", spy)
    m = np.linspace(-1, 1, 40).astype(np.float32)
    one = pfr.select(m, 5, 12, threads=1)
    assert seen == [(0, 4096)]
    seen.clear()
    assert pfr.select(m, 5, 12, threads=4) == one
    assert sorted(seen) == [(0, 1024), (1024, 2048), (2048, 3072), (3072, 4096)]


def test_threads_default_and_env(monkeypatch):
    monkeypatch.setenv(pfr.THREADS_ENV, "3")
    assert pfr.default_threads() == 3
    for bad in ("0", "two"):
        monkeypatch.setenv(pfr.THREADS_ENV, bad)
        with pytest.raises(ValueError, match=pfr.THREADS_ENV):
            pfr.default_threads()
    monkeypatch.delenv(pfr.THREADS_ENV)
    assert pfr.default_threads() >= 1
    with pytest.raises(ValueError, match="backend"):
        pfr.select(np.ones(4, np.float32), 1, 4, backend="gpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize(("d", "bits"), [(37, 8), (300, 12), (200, 16), (24, 18)])
def test_cuda_scores_and_selection_bit_identical_to_cpu(d, bits):
    rng = np.random.default_rng(d * bits)
    K = 1 << bits
    m = (rng.standard_normal(d) * 0.6).astype(np.float32)
    key = prng.derive_key(41, d, bits)
    cpu = pfr.scores_torch(m, key, 0, K)
    gpu = pfr.scores_torch(torch.from_numpy(m).cuda(), key, 0, K)
    assert np.array_equal(cpu.view(np.uint32), gpu.view(np.uint32))
    want = pfr.select(m, key, bits, backend="torch")
    assert pfr.select(torch.from_numpy(m).cuda(), key, bits) == want
    if fused.available():
        assert pfr.select(m, key, bits, backend="fused") == want


def test_codec_payload_identical_across_backends_and_threads(monkeypatch):
    """End to end: the C kernel on 1 and 3 threads and the torch path send the same bytes
    (shipped DDPM, 16x16 frame, the first 4 steps, 12-bit chunks)."""
    from diffstream.codecs.diffc.schedule import CALIBRATION_FILE
    from diffstream.codecs.registry import create_codec

    if not CALIBRATION_FILE.is_file():
        pytest.skip("no shipped DiffC calibration")
    img = (np.random.default_rng(4).random((16, 16, 3)) * 255).astype(np.uint8)
    runs = [("torch", None)] + ([("fused", "1"), ("fused", "3")] if fused.available() else [])
    payloads = []
    for backend, threads in runs:
        if threads is not None:
            monkeypatch.setenv(pfr.THREADS_ENV, threads)
        codec = create_codec("diffc", device="cpu", backend=backend, chunk_bits=12,
                             max_steps=4)
        payloads.append(codec.encode(img, 1 << 30).payload)
    assert payloads[0] and all(p == payloads[0] for p in payloads)
