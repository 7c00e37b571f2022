"""DiffC shared randomness: the counter generator, its normals and the fused C kernel."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from scipy import stats

from diffstream.codecs.diffc import fused, pfr, prng

KEY = prng.derive_key(3, 1, 4, 1, 5)


def test_hash_torch_equals_numpy_uint64():
    a = prng.hashes_torch(KEY, 1000, 5000).numpy().view(np.uint64)
    b = prng.hashes_numpy(KEY, 1000, 5000)
    assert np.array_equal(a, b)
    # and the Python-int reference for a few
    for k in (1000, 1001, 5999):
        assert int(b[k - 1000]) == prng.mix64(KEY + k * prng.GOLDEN)


def test_normals_reproducible_and_offsets_consistent():
    z1 = prng.normals_torch(KEY, 0, 64, 37)
    z2 = prng.normals_torch(KEY, 0, 64, 37)
    assert torch.equal(z1, z2)
    # candidate n alone equals row n of a block (the decoder regenerates one candidate)
    assert torch.equal(prng.normals_torch(KEY, 17, 1, 37)[0], z1[17])
    assert np.array_equal(prng.normals_numpy(KEY, 5, 3, 37), z1[5:8].numpy())
    # other keys give other numbers
    assert not torch.equal(prng.normals_torch(KEY + 1, 0, 64, 37), z1)


def digest() -> str:
    """sha256 of a block of candidates (also compared across processes in
    tests/unit/codecs/test_diffc_codec.py::test_cross_process_exact, which spawns one process
    for both)."""
    z = prng.normals_torch(prng.derive_key(3, 1, 4, 1, 5), 123, 50, 301)
    return hashlib.sha256(z.numpy().tobytes()).hexdigest()


def test_normal_table_moments_and_sample_distribution():
    tab = prng.normal_table_f64()
    assert tab.size == 65536 and np.all(np.diff(tab) > 0)
    assert np.allclose(tab, -tab[::-1], atol=0)  # symmetric: mean exactly 0
    assert abs(tab.mean()) < 1e-15
    assert 1 - 2e-6 < float(np.mean(tab**2)) < 1.0  # drops only within-bin variance
    z = prng.normals_torch(prng.derive_key(9), 0, 1, 400_000)[0].double().numpy()
    n = z.size
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / n)
    assert abs(stats.skew(z)) < 5 * np.sqrt(6 / n)
    assert abs(stats.kurtosis(z)) < 5 * np.sqrt(24 / n)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    # neighbouring candidates and lanes are uncorrelated
    m = prng.normals_torch(prng.derive_key(10), 0, 20_000, 8).double().numpy()
    c = np.corrcoef(m.T)
    assert np.abs(c - np.eye(8)).max() < 5 / np.sqrt(20_000)


def test_uniforms_and_permutation():
    u = prng.uniforms_numpy(KEY, 100_000)
    assert 0 < u.min() and u.max() < 1
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    p = prng.permutation(KEY, 3072)
    assert sorted(p.tolist()) == list(range(3072))
    assert torch.equal(p, prng.permutation(KEY, 3072))


@pytest.mark.skipif(not fused.available(), reason="no C compiler for the fused PFR kernel")
def test_fused_kernel_scores_equal_torch_dots():
    rng = np.random.default_rng(0)
    for d in (1, 3, 4, 37, 300):
        m = rng.standard_normal(d).astype(np.float32)
        got = pfr.scores_fused(m, KEY, 40, 300)
        z = prng.normals_torch(KEY, 40, 300, d).double()
        ref = (z @ torch.from_numpy(m).double()).numpy()
        assert np.allclose(got, ref, rtol=0, atol=2e-5 * max(1.0, np.abs(m).sum()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_candidates_bit_identical_to_cpu():
    a = prng.normals_torch(KEY, 0, 256, 123)
    b = prng.normals_torch(KEY, 0, 256, 123, "cuda").cpu()
    assert torch.equal(a, b)
