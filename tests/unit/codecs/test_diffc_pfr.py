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
