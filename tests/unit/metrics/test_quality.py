"""Quality metrics against hand values and against pytorch_msssim itself."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_msssim import ms_ssim as pm_ms_ssim
from pytorch_msssim import ssim as pm_ssim

from diffstream.metrics.quality import (
    MS_SSIM_WEIGHTS,
    PSNR_CAP_DB,
    SSIM_DB_CAP,
    QualityScorer,
    ms_ssim,
    ms_ssim_plan,
    psnr,
    ssim,
    ssim_db,
)

SIZES = [32, 64, 128, 512]


def photo(size: int) -> np.ndarray:
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut()[:size, :size])


def noisy(img: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(2, 0, 1)[None].float()


def test_psnr_constant_offset_matches_hand_value() -> None:
    ref = np.full((16, 24, 3), 100, np.uint8)
    assert psnr(ref, ref + 5) == pytest.approx(20 * math.log10(255 / 5), abs=1e-9)
    # uint8 wrap-around must not happen: 250 vs 5 is an error of 245, not 10.
    a, b = np.full((4, 4, 3), 250, np.uint8), np.full((4, 4, 3), 5, np.uint8)
    assert psnr(a, b) == pytest.approx(20 * math.log10(255 / 245), abs=1e-9)


def test_psnr_identical_is_capped_and_never_exceeds_cap() -> None:
    img = photo(64)
    assert psnr(img, img) == PSNR_CAP_DB == 100.0
    big = photo(512)
    one_off = big.copy()
    one_off[0, 0, 0] ^= 1  # MSE = 1 / (3 * 512^2): 107 dB uncapped
    assert psnr(big, one_off) == PSNR_CAP_DB


def test_ssim_db_hand_values_and_cap() -> None:
    assert ssim_db(0.9) == pytest.approx(10.0)
    assert ssim_db(0.99) == pytest.approx(20.0)
    assert ssim_db(0.0) == pytest.approx(0.0)
    assert ssim_db(1.0) == SSIM_DB_CAP == 60.0
    assert ssim_db(1.0 + 1e-9) == SSIM_DB_CAP
    assert ssim_db(1 - 1e-7) == SSIM_DB_CAP
    assert ssim_db(1 - 1e-5) == pytest.approx(50.0)


@pytest.mark.parametrize("size", SIZES)
def test_identical_frames_score_one(size: int) -> None:
    img = photo(size)
    scores = QualityScorer().score(img, img)
    assert scores["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert scores["ms_ssim"] == pytest.approx(1.0, abs=1e-6)
    assert scores["psnr_db"] == PSNR_CAP_DB
    assert scores["ssim_db"] >= 55.0
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("size", SIZES)
def test_quality_decreases_with_noise(size: int) -> None:
    img = photo(size)
    scorer = QualityScorer()
    scores = [scorer.score(img, noisy(img, s)) for s in (2, 8, 20, 50)]
    for key in ("psnr_db", "ssim", "ssim_db", "ms_ssim"):
        values = [s[key] for s in scores]
        assert all(a > b for a, b in zip(values[:-1], values[1:], strict=True)), (key, values)
        assert all(math.isfinite(v) for v in values)
    assert all(0 < s["ms_ssim"] < 1 and 0 < s["ssim"] < 1 for s in scores)


@pytest.mark.parametrize("size", SIZES)
def test_ssim_matches_pytorch_msssim(size: int) -> None:
    img = photo(size)
    other = noisy(img, 15)
    win, _ = ms_ssim_plan(size, size)
    ref_value = float(pm_ssim(tensor(img), tensor(other), data_range=255, win_size=win))
    assert ssim(img, other) == pytest.approx(ref_value, abs=1e-6)
    assert QualityScorer().ssim(img, other) == pytest.approx(ref_value, abs=1e-5)


def test_ms_ssim_equals_pytorch_msssim_at_five_scales() -> None:
    img = photo(512)
    other = noisy(img, 25)
    expected = float(pm_ms_ssim(tensor(img), tensor(other), data_range=255))
    assert ms_ssim(img, other) == pytest.approx(expected, abs=1e-5)


def test_ms_ssim_small_frames_use_renormalised_weights() -> None:
    """At 64 px: three scales with weights w[:3] / sum(w[:3]), from pytorch_msssim's parts."""
    img = photo(64)
    other = noisy(img, 20)
    w = torch.tensor(MS_SSIM_WEIGHTS[:3])
    w = w / w.sum()
    x, y = tensor(img), tensor(other)
    # Rebuild it scale by scale with pytorch_msssim's ssim on the pooled images: its value at
    # the coarsest scale plus contrast-structure terms from the public function's pieces.
    from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

    win = _fspecial_gauss_1d(11, 1.5).repeat(3, 1, 1, 1)
    terms = []
    for level in range(3):
        s, cs = _ssim(x, y, data_range=255, win=win, size_average=False)
        terms.append(torch.relu(cs if level < 2 else s))
        x = torch.nn.functional.avg_pool2d(x, 2)
        y = torch.nn.functional.avg_pool2d(y, 2)
    expected = float(torch.prod(torch.stack(terms) ** w.view(-1, 1, 1), dim=0).mean())
    assert ms_ssim(img, other) == pytest.approx(expected, abs=1e-5)


def test_ms_ssim_plan() -> None:
    assert ms_ssim_plan(32, 32) == (11, 2)
    assert ms_ssim_plan(64, 64) == (11, 3)
    assert ms_ssim_plan(128, 128) == (11, 4)
    assert ms_ssim_plan(161, 300) == (11, 5)
    assert ms_ssim_plan(160, 300) == (11, 4)
    assert ms_ssim_plan(512, 512) == (11, 5)
    assert ms_ssim_plan(11, 64) == (11, 1)
    assert ms_ssim_plan(10, 10) == (7, 1)
    assert ms_ssim_plan(6, 6) == (3, 2)
    assert ms_ssim_plan(3, 3) == (3, 1)
    with pytest.raises(ValueError, match="too small"):
        ms_ssim_plan(2, 64)


@pytest.mark.parametrize("size", [4, 8, 12])
def test_tiny_frames_still_score(size: int) -> None:
    img = np.ascontiguousarray(photo(64)[:size, :size])
    s = QualityScorer().score(img, noisy(img, 10))
    assert 0 < s["ssim"] < 1 and 0 < s["ms_ssim"] < 1


def test_non_square_frames() -> None:
    img = np.ascontiguousarray(photo(512)[:72, :128])
    s = QualityScorer().score(img, noisy(img, 10))
    assert 0 < s["ms_ssim"] < 1


def test_bad_inputs_raise() -> None:
    img = photo(32)
    with pytest.raises(ValueError, match="differ"):
        psnr(img, photo(64))
    with pytest.raises(ValueError, match="uint8"):
        psnr(img.astype(np.float32), img)
    with pytest.raises(ValueError, match="H x W x 3"):
        QualityScorer().score(img[..., 0], img[..., 0])


def test_scorer_restores_torch_threads() -> None:
    before = torch.get_num_threads()
    QualityScorer(threads=1).score(photo(32), photo(32))
    assert torch.get_num_threads() == before
