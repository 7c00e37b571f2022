"""SWD and the spectral ratio on hand-checkable cases and on natural-image crops."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from scipy.special import gammaln
from scipy.stats import wasserstein_distance

from diffstream.metrics.realism import (
    SpectralResult,
    SwdResult,
    _bootstrap_level,
    _w1_sorted,
    laplacian_pyramid,
    pyramid_levels,
    sliced_wasserstein,
    spectral_ratio,
    swd_floor,
    swd_unpaired,
)


def natural_crops(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """n random size x size crops of scikit-image's bundled colour photos (offline)."""
    import skimage.data as data

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(),
              data.immunohistochemistry(), data.hubble_deep_field()]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        p = photos[i % len(photos)]
        y, x = rng.integers(0, p.shape[0] - size + 1), rng.integers(0, p.shape[1] - size + 1)
        out.append(p[y : y + size, x : x + size])
    return np.stack(out)


def blurred(images: np.ndarray, sigma: float) -> np.ndarray:
    out = gaussian_filter(images.astype(np.float64), (0, sigma, sigma, 0))
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def noised(images: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    out = images + np.random.default_rng(seed).normal(0, sigma, images.shape)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    """The issue's scale: 64 crops (the floor compares 32 against 32)."""
    return natural_crops(64)


@pytest.fixture(scope="module")
def small() -> np.ndarray:
    """32 crops, for the tests that compare a set with a distorted copy of itself."""
    return natural_crops(32, seed=1)


@pytest.fixture(scope="module")
def floor(crops: np.ndarray) -> SwdResult:
    return swd_floor(crops)


# --- building blocks -------------------------------------------------------------------


def test_w1_matches_scipy_for_equal_and_unequal_sizes():
    rng = np.random.default_rng(0)
    for m, n in ((50, 50), (40, 70), (1, 9)):
        a = np.sort(rng.normal(size=(3, m)), axis=1)
        b = np.sort(rng.normal(0.5, 2.0, size=(3, n)), axis=1)
        want = [wasserstein_distance(a[i], b[i]) for i in range(3)]
        np.testing.assert_allclose(_w1_sorted(a, b), want, rtol=1e-10)


def test_bootstrap_grid_matches_an_explicit_resample():
    # the bootstrap's count-grid W1 of a weighted resample against the exact W1 of the
    # same resample done by copying images (unequal set sizes, 50 descriptors per image)
    rng = np.random.default_rng(0)
    na, nb, per = 20, 30, 50
    pa = rng.normal(size=(16, na * per)).astype(np.float32)
    pb = rng.normal(0.2, 1.3, size=(16, nb * per)).astype(np.float32)
    wa = np.bincount(rng.integers(0, na, na), minlength=na)
    wb = np.bincount(rng.integers(0, nb, nb), minlength=nb)
    ra = pa.reshape(16, na, per)[:, np.repeat(np.arange(na), wa)].reshape(16, -1)
    rb = pb.reshape(16, nb, per)[:, np.repeat(np.arange(nb), wb)].reshape(16, -1)
    exact = _w1_sorted(np.sort(ra, axis=1), np.sort(rb, axis=1)).mean() * 1e3
    grid = _bootstrap_level(pa, pb, na, nb, np.stack([wa, np.ones(na, int)]),
                            np.stack([wb, np.ones(nb, int)]), 256)
    assert grid[0] == pytest.approx(exact, rel=0.02)
    full = _w1_sorted(np.sort(pa, axis=1), np.sort(pb, axis=1)).mean() * 1e3
    assert grid[1] == pytest.approx(full, rel=0.02)  # unit weights: the sample itself


def test_laplacian_pyramid_collapses_back_to_the_image():
    images = natural_crops(2, size=37)  # odd sides: the cut-to-size path
    pyr = laplacian_pyramid(images, 3)
    assert [p.shape[1:3] for p in pyr] == [(37, 37), (19, 19), (10, 10)]
    # collapse: upsample the coarse level the same way and add the detail back
    from diffstream.metrics.realism import _blur

    img = pyr[-1]
    for detail in reversed(pyr[:-1]):
        up = np.zeros((img.shape[0], 2 * img.shape[1], 2 * img.shape[2], 3), np.float32)
        up[:, ::2, ::2] = img
        img = detail + _blur(up, 2.0)[:, : detail.shape[1], : detail.shape[2]]
    np.testing.assert_allclose(img, images, atol=1e-3)


def test_pyramid_levels_go_down_to_16_px():
    assert pyramid_levels(64, 64) == 3  # 64, 32, 16
    assert pyramid_levels(1024, 1024) == 7  # Karras et al.: 1024 ... 16
    assert pyramid_levels(64, 40) == 2  # the smaller side decides
    assert pyramid_levels(12, 12) == 1  # below 16 px: the image itself


# --- SWD: hand-checkable ---------------------------------------------------------------


def test_identical_sets_give_zero_far_below_the_floor(crops, floor):
    same = sliced_wasserstein(crops, crops.copy())
    assert same == SwdResult(0.0, (0.0, 0.0, 0.0), 0.0, 0.0)
    assert floor.value > 20.0  # the floor of 32 vs 32 real crops is far from 0


def test_a_brightness_shift_moves_only_the_low_pass_level_by_the_expected_amount():
    # B = A + c. Detail levels are unchanged (the filters sum to 1); the low-pass level is
    # shifted by c in every entry, i.e. by delta = c / sigma_joint per channel after the
    # joint normalisation (sigma_joint^2 = sigma^2 + c^2 / 4 for two equal halves). The
    # W1 of a shift along unit direction u is |u . delta|, and for random u in R^d,
    # E|u_1| = Gamma(d/2) / (sqrt(pi) Gamma((d+1)/2)).
    rng = np.random.default_rng(3)
    a = (natural_crops(16, size=32) * (200 / 255)).astype(np.uint8) + rng.integers(
        0, 2, (16, 32, 32, 3), dtype=np.uint8)
    c = 20
    b = a + np.uint8(c)
    res = sliced_wasserstein(a, b, bootstrap=0, projections=4096)
    assert res.per_level[0] < 1e-2
    low = laplacian_pyramid(a, 2)[-1]  # 16 x 16, what the low-pass patches come from
    # the joint std over the two sets' patches; patches cover the level nearly uniformly,
    # so the level's own per-channel std is a close stand-in for the patches' one
    sigma = np.sqrt(low.reshape(-1, 3).var(axis=0) + c**2 / 4)
    d = 7 * 7 * 3
    e_abs = math.exp(gammaln(d / 2) - gammaln((d + 1) / 2)) / math.sqrt(math.pi)
    want = 1e3 * np.linalg.norm(np.repeat(c / sigma, 49)) * e_abs
    assert res.per_level[1] == pytest.approx(want, rel=0.08)


def test_unequal_set_sizes_are_supported():
    a = natural_crops(20, size=32)
    res = sliced_wasserstein(a[:12], a[12:], bootstrap=20)
    assert res.value > 0 and res.ci_low <= res.value <= res.ci_high


# --- SWD: natural images ---------------------------------------------------------------


@pytest.mark.parametrize("distort", [lambda x: blurred(x, 2.0), lambda x: noised(x, 16.0)],
                         ids=["blur2", "noise16"])
def test_blur_and_noise_are_clearly_above_the_real_floor(crops, floor, distort):
    res = sliced_wasserstein(distort(crops), crops)
    assert res.ci_low > floor.ci_high, (res, floor)  # the intervals do not even overlap


def test_swd_grows_with_blur_strength(small):
    values = [sliced_wasserstein(blurred(small, s), small, bootstrap=0).value
              for s in (0.5, 1.0, 2.0)]
    assert 0 < values[0] < values[1] < values[2]


def test_blur_shows_up_at_the_finest_level_first(small):
    res = sliced_wasserstein(blurred(small, 1.0), small, bootstrap=0)
    assert res.per_level[0] > res.per_level[1] > res.per_level[2]


def test_same_seed_same_value_and_other_seeds_close(small):
    blur = blurred(small, 1.0)
    first = sliced_wasserstein(blur, small, seed=5, bootstrap=30)
    assert sliced_wasserstein(blur, small, seed=5, bootstrap=30) == first
    other = sliced_wasserstein(blur, small, seed=6, bootstrap=0)
    assert other.value != first.value
    assert other.value == pytest.approx(first.value, rel=0.1)


def test_ci_contains_the_value_and_has_width(small):
    res = sliced_wasserstein(noised(small, 8.0), small)
    assert res.ci_low < res.value < res.ci_high
    assert 0 < res.ci_high - res.ci_low < res.value


def test_joint_normalisation_sees_a_contrast_loss_that_separate_normalisation_hides(small):
    # halving the contrast around mid-grey: per-set normalisation (the reference code's)
    # undoes nearly all of it (measured: ~4 against ~450), the joint one keeps it
    flat = np.clip(np.round((small.astype(np.float64) - 128) * 0.5 + 128), 0, 255)
    flat = flat.astype(np.uint8)
    joint = sliced_wasserstein(flat, small, bootstrap=0).value
    separate = sliced_wasserstein(flat, small, bootstrap=0, normalise="separate").value
    assert joint > 20 * separate


def test_unpaired_perfect_codec_scores_exactly_the_floor(crops, floor):
    assert swd_unpaired(crops.copy(), crops) == floor
    assert swd_unpaired(blurred(crops, 2.0), crops, bootstrap=0).value > floor.value


@pytest.mark.parametrize(
    "a, b, message",
    [
        (np.zeros((0, 32, 32, 3), np.uint8), np.zeros((2, 32, 32, 3), np.uint8), "empty"),
        (np.zeros((2, 32, 32, 3), np.float32), np.zeros((2, 32, 32, 3), np.uint8), "uint8"),
        (np.zeros((2, 32, 32), np.uint8), np.zeros((2, 32, 32, 3), np.uint8), "N x H x W x 3"),
        (np.zeros((2, 32, 32, 3), np.uint8), np.zeros((2, 32, 48, 3), np.uint8), "differ"),
        (np.zeros((2, 6, 32, 3), np.uint8), np.zeros((2, 6, 32, 3), np.uint8), "at least 7"),
    ],
)
def test_bad_input_raises_value_error(a, b, message):
    with pytest.raises(ValueError, match=message):
        sliced_wasserstein(a, b)


def test_bad_options_and_tiny_floor_sets_raise():
    a = np.zeros((4, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="projections"):
        sliced_wasserstein(a, a, projections=0)
    with pytest.raises(ValueError, match="normalise"):
        sliced_wasserstein(a, a, normalise="per-image")
    with pytest.raises(ValueError, match="at least 2 images"):
        swd_floor(a[:1])


# --- spectral ratio --------------------------------------------------------------------


def test_spectral_identity_is_one(small):
    res = spectral_ratio(small, small.copy())
    assert res == SpectralResult(1.0, (1.0,) * 5)  # 64 px: 5 octaves


def test_spectral_blur_below_one_noise_above_one(small):
    blur = spectral_ratio(blurred(small, 1.0), small)
    noise = spectral_ratio(noised(small, 8.0), small)
    assert blur.ratio < 0.5 and noise.ratio > 1.05
    # blur removes more the finer the band; the coarsest band is nearly untouched
    assert all(x > y for x, y in zip(blur.per_octave, blur.per_octave[1:], strict=False))
    assert blur.per_octave[0] == pytest.approx(1.0, abs=0.05)


def test_spectral_ratio_is_a_power_ratio_in_the_right_band():
    # orig: a low (3/64 cycles/px) and a high (19/64) vertical grating; recon halves the
    # high one's amplitude: a quarter of its power, only in the top octave (0.25, 0.5]
    x = np.arange(64)
    low = 50 * np.cos(2 * np.pi * 3 / 64 * x)
    high = 50 * np.cos(2 * np.pi * 19 / 64 * x)
    def image(h):
        row = 128 + low + h
        return np.repeat(np.round(np.broadcast_to(row, (64, 64)))[None, :, :, None], 3, axis=3)
    orig = np.concatenate([image(high)] * 2).astype(np.uint8)
    recon = np.concatenate([image(high / 2)] * 2).astype(np.uint8)
    res = spectral_ratio(recon, orig)
    assert res.per_octave[-1] == pytest.approx(0.25, rel=0.02)
    assert res.per_octave[1] == pytest.approx(1.0, rel=0.02)  # (1/32, 1/16]: the low one
    assert res.ratio == pytest.approx(0.25, rel=0.05)


def test_spectral_bad_input():
    a = np.zeros((2, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="paired"):
        spectral_ratio(a, a[:1])
    with pytest.raises(ValueError, match="at least 8"):
        spectral_ratio(a[:, :4], a[:, :4])
    with pytest.raises(ValueError, match="uint8"):
        spectral_ratio(a.astype(np.int16), a)
