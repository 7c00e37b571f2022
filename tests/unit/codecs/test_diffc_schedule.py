"""DiffC protocol math: step posteriors, KL, Algorithm 3, the calibration file."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from diffstream.backbones.ddpm import linear_alpha_bar
from diffstream.codecs.diffc.diffusion import (
    denoise_grid,
    kl_coef_matrix,
    step_coefs,
)
from diffstream.codecs.diffc.schedule import (
    CALIBRATION_FILE,
    RATIO_SYMBOLS,
    Calibration,
    pfr_cost_bits,
    shortest_path,
)

AB = linear_alpha_bar(1000, 1e-4, 0.02)


def test_shortest_path_toy_known_answer():
    inf = math.inf
    # nodes 4 > 3 > 2 > 1 > 0; direct hops are expensive, 4 -> 2 -> 0 is cheapest (2 + 2)
    c = np.full((5, 5), inf)
    c[4, 3], c[4, 2], c[4, 1], c[4, 0] = 1.0, 2.0, 9.0, 10.0
    c[3, 2], c[3, 1], c[3, 0] = 1.5, 5.0, 8.0
    c[2, 1], c[2, 0] = 1.0, 2.0
    c[1, 0] = 1.5
    assert shortest_path(c, 4, 0) == [4, 2, 0]
    assert shortest_path(c, 4, 1) == [4, 2, 1]
    assert shortest_path(c, 3, 0) == [3, 2, 0]
    with pytest.raises(ValueError):
        shortest_path(np.full((3, 3), inf), 2, 0)


def test_shortest_path_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = 7
        c = rng.uniform(0.5, 5, (n, n))
        best, best_path = math.inf, None
        inner = list(range(n - 2, 0, -1))
        for r in range(len(inner) + 1):
            for mid in itertools.combinations(inner, r):
                p = [n - 1, *mid, 0]
                cost = sum(c[a, b] for a, b in zip(p[:-1], p[1:], strict=False))
                if cost < best:
                    best, best_path = cost, p
        got = shortest_path(c, n - 1, 0)
        got_cost = sum(c[a, b] for a, b in zip(got[:-1], got[1:], strict=False))
        assert got_cost == pytest.approx(best) and got == best_path


def test_pfr_cost():
    assert float(pfr_cost_bits(np.array(8.0))) == pytest.approx(8 + 3 + 5)
    assert float(pfr_cost_bits(np.array(0.5))) == pytest.approx(5.5)  # log2 clamped at 1


def test_step_posterior_matches_ddpm_one_step():
    t = 500
    beta = 1 - float(AB[t] / AB[t - 1])
    c = step_coefs(AB, t, t - 1)
    assert c.c0 == pytest.approx(math.sqrt(float(AB[t - 1])) * beta / (1 - float(AB[t])))
    assert c.ct == pytest.approx(math.sqrt(1 - beta) * (1 - float(AB[t - 1]))
                                 / (1 - float(AB[t])))
    assert c.var == pytest.approx((1 - float(AB[t - 1])) / (1 - float(AB[t])) * beta)


def test_step_posterior_is_the_forward_process_conditional():
    """Sampling x_t ~ q(x_t|x_0), then x_s ~ q(x_s|x_t,x_0), gives x_s ~ q(x_s|x_0)."""
    g = torch.Generator().manual_seed(0)
    t, s, x0 = 700, 300, 0.6
    n = 200_000
    xt = math.sqrt(AB[t]) * x0 + math.sqrt(1 - AB[t]) * torch.randn(n, generator=g,
                                                                    dtype=torch.float64)
    c = step_coefs(AB, t, s)
    xs = c.c0 * x0 + c.ct * xt + c.std * torch.randn(n, generator=g, dtype=torch.float64)
    assert float(xs.mean()) == pytest.approx(math.sqrt(AB[s]) * x0, abs=0.01)
    assert float(xs.var()) == pytest.approx(1 - float(AB[s]), abs=0.01)


def test_kl_closed_form_and_matrix():
    t, s = 400, 250
    c = step_coefs(AB, t, s)
    x0, x0_hat, xt = torch.randn(50, dtype=torch.float64), torch.randn(50, dtype=torch.float64), \
        torch.randn(50, dtype=torch.float64)
    q = torch.distributions.Normal(c.c0 * x0 + c.ct * xt, c.std)
    p = torch.distributions.Normal(c.c0 * x0_hat + c.ct * xt, c.std)
    kl = float(torch.distributions.kl_divergence(q, p).sum())
    assert kl == pytest.approx(c.kl_per_sq_err * float(((x0 - x0_hat) ** 2).sum()), rel=1e-9)
    mat = kl_coef_matrix(AB, t_min=1)
    assert float(mat[t, s]) == pytest.approx(c.kl_per_sq_err, rel=1e-9)
    assert float(mat[s, t]) == 0 and float(mat[t, 0]) == 0


def test_denoise_grid():
    assert denoise_grid(1000, 50, 1000)[0] == 1000 and denoise_grid(1000, 50, 1000)[-1] == 0
    assert len(denoise_grid(1000, 50, 1000)) == 51
    g = denoise_grid(100, 50, 1000)
    assert g[0] == 100 and g[-1] == 0 and len(g) == 6
    assert denoise_grid(3, 50, 1000) == [3, 0]


@pytest.mark.skipif(not CALIBRATION_FILE.is_file(), reason="no shipped DiffC calibration")
def test_shipped_calibration_is_consistent():
    cal = Calibration.load()
    assert cal.schedule[0] == cal.T == 1000 and cal.steps >= 6
    assert all(v > 0 for v in cal.kl_bits_per_dim)
    assert len(cal.ratio_counts) == RATIO_SYMBOLS
    for bits, model in cal.chunk_models.items():
        assert len(model.bucket_counts) == bits + 1 and 0 < model.kl_bits < bits
    dims = 3 * 32 * 32
    for k in range(cal.steps):
        n_lo = cal.chunks(k, dims, 12, 0)
        n_hi = cal.chunks(k, dims, 12, RATIO_SYMBOLS - 1)
        assert 1 <= n_lo <= cal.chunks(k, dims, 12, 4) <= n_hi <= dims
        kl = cal.kl_bits_per_dim[k] * dims * 3
        r = cal.choose_ratio(k, dims, 12, kl)
        assert kl / cal.chunks(k, dims, 12, r) <= cal.chunk_model(12).kl_bits or \
            r == RATIO_SYMBOLS - 1


def test_calibration_digest_covers_the_protocol_not_the_provenance():
    """The digest is the calibration's part of the stream identity: it changes with any
    field both ends use (here the KL table, a bucket count) and not with ``info``."""
    import copy

    cal = Calibration.load()
    assert all(m.bucket_counts_image and len(m.bucket_counts_image) == b + 1
               for b, m in cal.chunk_models.items())  # image chunking is calibrated
    base = cal.digest()
    other = copy.deepcopy(cal)
    other.info["note"] = "moved"
    assert other.digest() == base
    other.kl_bits_per_dim[3] *= 1.0001
    assert other.digest() != base
    again = copy.deepcopy(cal)
    again.chunk_models[12].bucket_counts_image[5] += 1
    assert again.digest() != base
