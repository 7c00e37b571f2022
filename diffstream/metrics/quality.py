"""Full-reference image quality: PSNR, SSIM, MS-SSIM and SSIM in dB.

Inputs are H x W x 3 uint8 RGB frames (reference first). SSIM and MS-SSIM are
pytorch_msssim's Gaussian-window SSIM (window 11, sigma 1.5, K = (0.01, 0.03),
data_range = 255, valid padding) on CPU torch, averaged over the three RGB channels.
``ssim`` calls pytorch_msssim directly; ``QualityScorer`` (and ``ms_ssim``) run the same
arithmetic fused into fewer convolutions, checked against pytorch_msssim by the tests.

Caps (so that logs stay finite and plots stay readable):
- ``psnr`` returns ``PSNR_CAP_DB`` (100 dB) for identical frames and never more. The largest
  finite PSNR of a uint8 frame is 10*log10(255^2 * 3HW): 89 dB at 64x64 and 107 dB at
  512x512, so the cap can clip only near-lossless frames larger than ~256x256.
- ``ssim_db(s) = -10*log10(1 - s)`` (Puffer's "SSIM dB") returns ``SSIM_DB_CAP`` (60 dB,
  i.e. 1 - s = 1e-6) for s >= 1 - 1e-6.

MS-SSIM on small frames. Standard MS-SSIM (Wang et al. 2003) uses 5 scales, so the smaller
side must exceed (win - 1) * 2^4 = 160 px; our frames are often 32-128 px. We use the
largest number of scales L <= 5 with min_side > (win - 1) * 2^(L-1): 32 px -> 2 scales,
64 px -> 3, 128 px -> 4, >= 161 px -> 5. When even one scale does not fit a window of 11
(sides <= 10) the window shrinks to 7, then 3 (sigma stays 1.5). With L < 5 the first L
standard weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333) are renormalised to sum to 1, so
values stay in [0, 1] and comparable in spirit, but they are not the standard MS-SSIM
numbers: they omit the coarse scales, which weight overall structure. At L = 5 the standard
weights are used unchanged and the result equals ``pytorch_msssim.ms_ssim``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_msssim import ssim as _pm_ssim

PSNR_CAP_DB = 100.0
SSIM_DB_CAP = 60.0
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WIN_SIGMA = 1.5
_K = (0.01, 0.03)


def _check_pair(ref: np.ndarray, img: np.ndarray) -> None:
    for label, a in (("ref", ref), ("img", img)):
        if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
            desc = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
            raise ValueError(f"{label} must be an H x W x 3 uint8 array, got {desc}")
    if ref.shape != img.shape:
        raise ValueError(f"ref and img shapes differ: {ref.shape} vs {img.shape}")


def psnr(ref: np.ndarray, img: np.ndarray) -> float:
    """PSNR in dB with peak 255, capped at PSNR_CAP_DB (identical frames give the cap)."""
    _check_pair(ref, img)
    diff = ref.astype(np.int32) - img.astype(np.int32)
    mse = float(np.mean(diff * diff))
    if mse == 0.0:
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, 10.0 * math.log10(255.0**2 / mse))


def ssim_db(s: float) -> float:
    """SSIM on a dB scale, -10*log10(1 - s), capped at SSIM_DB_CAP for s >= 1 - 1e-6."""
    gap = 1.0 - float(s)
    if gap <= 10.0 ** (-SSIM_DB_CAP / 10.0):
        return SSIM_DB_CAP
    return -10.0 * math.log10(gap)


def ms_ssim_plan(height: int, width: int) -> tuple[int, int]:
    """(window size, number of scales) used for a frame of this size; see module docstring."""
    side = min(height, width)
    for win in (11, 7, 3):
        if side > win - 1:
            scales = max(s for s in range(1, 6) if side > (win - 1) * 2 ** (s - 1))
            return win, scales
    raise ValueError(f"frame {height}x{width} is too small for SSIM (need sides >= 3)")


def _weights(scales: int) -> torch.Tensor:
    w = torch.tensor(MS_SSIM_WEIGHTS[:scales], dtype=torch.float32)
    return w if scales == len(MS_SSIM_WEIGHTS) else w / w.sum()


def gaussian_window(size: int, sigma: float = WIN_SIGMA) -> torch.Tensor:
    """1-D Gaussian window, normalised to sum 1, exactly as pytorch_msssim builds it."""
    coords = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


class QualityScorer:
    """Scores many small frames quickly: cached windows, one fused SSIM/MS-SSIM pass.

    Each scale filters the five SSIM statistics (x, y, x^2, y^2, xy; 3 channels each) with
    one separable grouped convolution instead of ten, about 2-3x faster than calling
    pytorch_msssim per scale at 64-128 px; the arithmetic is pytorch_msssim's (same window,
    constants, valid padding, 2x2 average pooling), and the tests check it agrees.

    threads: torch intra-op threads while scoring (1 avoids thread hand-off overhead on
    small frames and leaves the other cores to the codec); the caller's setting is restored
    afterwards. None leaves torch's setting alone.
    """

    def __init__(self, threads: int | None = 1) -> None:
        self.threads = threads
        self._kernels: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._weights: dict[int, torch.Tensor] = {}

    def _kernel(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Vertical and horizontal grouped kernels for the 15 stacked statistic channels."""
        if size not in self._kernels:
            g = gaussian_window(size)
            self._kernels[size] = (g.view(1, 1, size, 1).repeat(15, 1, 1, 1),
                                   g.view(1, 1, 1, size).repeat(15, 1, 1, 1))
        return self._kernels[size]

    @staticmethod
    def _tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float()

    def _ssims(self, ref: np.ndarray, img: np.ndarray, multiscale: bool) -> tuple[float, float]:
        """(SSIM, MS-SSIM) in one pass: MS-SSIM's first scale is the SSIM computation."""
        _check_pair(ref, img)
        win_size, scales = ms_ssim_plan(*ref.shape[:2])
        if not multiscale:
            scales = 1
        if scales not in self._weights:
            self._weights[scales] = _weights(scales).view(-1, 1, 1)
        kv, kh = self._kernel(win_size)
        c1, c2 = (_K[0] * 255.0) ** 2, (_K[1] * 255.0) ** 2
        old = torch.get_num_threads()
        switch = self.threads is not None and old != self.threads
        if switch:
            torch.set_num_threads(self.threads)  # type: ignore[arg-type]
        try:
            with torch.inference_mode():
                x, y = self._tensor(ref), self._tensor(img)
                terms: list[torch.Tensor] = []
                ssim_first = ssim_c = torch.zeros(())
                for level in range(scales):
                    stats = torch.cat([x, y, x * x, y * y, x * y], dim=1)
                    mu1, mu2, ex2, ey2, exy = F.conv2d(
                        F.conv2d(stats, kv, groups=15), kh, groups=15).split(3, dim=1)
                    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
                    cs_map = (2 * (exy - mu12) + c2) / ((ex2 - mu1_sq) + (ey2 - mu2_sq) + c2)
                    ssim_map = ((2 * mu12 + c1) / (mu1_sq + mu2_sq + c1)) * cs_map
                    ssim_c = ssim_map.flatten(2).mean(-1)  # (1, 3): per channel
                    if level == 0:
                        ssim_first = ssim_c.mean()
                    if level < scales - 1:
                        terms.append(torch.relu(cs_map.flatten(2).mean(-1)))
                        pad = [s % 2 for s in x.shape[2:]]
                        x = F.avg_pool2d(x, kernel_size=2, padding=pad)
                        y = F.avg_pool2d(y, kernel_size=2, padding=pad)
                terms.append(torch.relu(ssim_c))
                ms = torch.prod(torch.stack(terms) ** self._weights[scales], dim=0).mean()
                return float(ssim_first), float(ms)
        finally:
            if switch:
                torch.set_num_threads(old)

    def ssim(self, ref: np.ndarray, img: np.ndarray) -> float:
        return self._ssims(ref, img, multiscale=False)[0]

    def ms_ssim(self, ref: np.ndarray, img: np.ndarray) -> float:
        return self._ssims(ref, img, multiscale=True)[1]

    def score(self, ref: np.ndarray, img: np.ndarray) -> dict[str, float]:
        """All per-frame metrics the records carry: psnr_db, ssim, ssim_db, ms_ssim."""
        s, ms = self._ssims(ref, img, multiscale=True)
        return {"psnr_db": psnr(ref, img), "ssim": s, "ssim_db": ssim_db(s), "ms_ssim": ms}


_DEFAULT = QualityScorer()


def ssim(ref: np.ndarray, img: np.ndarray) -> float:
    """Mean SSIM over RGB channels via ``pytorch_msssim.ssim`` (window 11, or 7/3 if smaller)."""
    _check_pair(ref, img)
    win_size, _ = ms_ssim_plan(*ref.shape[:2])
    with torch.inference_mode():
        x, y = QualityScorer._tensor(ref), QualityScorer._tensor(img)
        return float(_pm_ssim(x, y, data_range=255, win_size=win_size, win_sigma=WIN_SIGMA))


def ms_ssim(ref: np.ndarray, img: np.ndarray) -> float:
    """MS-SSIM with as many scales as the frame allows (see module docstring)."""
    return _DEFAULT.ms_ssim(ref, img)
