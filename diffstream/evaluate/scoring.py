"""What is measured on coded images: per-image quality and per-set realism.

Per image (mean over a subset in the tables): PSNR and MS-SSIM from
``diffstream.metrics.quality`` (MS-SSIM uses as many scales as the crop allows: 3 at 64 px,
see that module), and LPIPS when weights are given (``diffstream.metrics.perceptual``).
Per set (one number for the whole subset), from ``diffstream.metrics.realism``: the sliced
Wasserstein distance between the reconstructions and their originals (paired: each against
its own original, at the same patch positions), with its bootstrap interval; the unpaired
SWD (one half of the reconstructions against the other half of the originals, the split
``swd_floor`` uses, so a perfect codec scores the floor); and the spectral ratio.
Set metrics need one array of equal-sized images; when the images differ in size
(``--size full`` on a folder of mixed shapes) every image and its reconstruction are
centre-cropped to the smallest height and width in the set, for the set metrics only.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from diffstream.metrics import realism
from diffstream.metrics.quality import QualityScorer, psnr

LpipsFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
NAN = float("nan")


@dataclass(frozen=True)
class SetScores:
    swd: float
    swd_ci_low: float
    swd_ci_high: float
    swd_unpaired: float
    spectral_ratio: float


EMPTY_SET = SetScores(NAN, NAN, NAN, NAN, NAN)


def common_view(images: Sequence[np.ndarray]) -> np.ndarray:
    """N x h x w x 3: every image centre-cropped to the smallest h and w among them."""
    h = min(a.shape[0] for a in images)
    w = min(a.shape[1] for a in images)
    out = []
    for a in images:
        top, left = (a.shape[0] - h) // 2, (a.shape[1] - w) // 2
        out.append(a[top:top + h, left:left + w])
    return np.stack(out)


class Scorer:
    """Scores items and sets; seeded, so a table is a function of its inputs and ``seed``."""

    def __init__(self, *, lpips: LpipsFn | None = None, seed: int = 0,
                 bootstrap: int = 100) -> None:
        self.quality = QualityScorer(threads=1)
        self.lpips = lpips
        self.seed = int(seed)
        self.bootstrap = int(bootstrap)
        # set metrics by key: a target's common and sent subsets are often the same items,
        # and so are the floors of targets where every codec sent everything
        self._sets: dict[Hashable, SetScores] = {}
        self._floors: dict[Hashable, realism.SwdResult | None] = {}

    def item(self, original: np.ndarray, recon: np.ndarray) -> dict[str, float]:
        """psnr_db, ms_ssim (and lpips) of one reconstruction against its original."""
        out = {"psnr_db": psnr(original, recon),
               "ms_ssim": self.quality.ms_ssim(original, recon)}
        if self.lpips is not None:
            out["lpips"] = float(np.asarray(self.lpips(recon[None], original[None])).ravel()[0])
        return out

    def set(self, originals: Sequence[np.ndarray], recons: Sequence[np.ndarray],
            key: Hashable | None = None) -> SetScores:
        """SWD (recons vs originals, bootstrap CI) and the spectral ratio of one subset;
        computed once per ``key`` (which must then identify the images)."""
        if len(originals) == 0:
            return EMPTY_SET
        if key is not None:
            if key not in self._sets:
                self._sets[key] = self.set(originals, recons)
            return self._sets[key]
        orig, rec = common_view(originals), common_view(recons)
        swd = realism.sliced_wasserstein(rec, orig, seed=self.seed, bootstrap=self.bootstrap)
        # the unpaired value needs two halves; its interval is not kept (the floor's is)
        unpaired = (realism.swd_unpaired(rec, orig, seed=self.seed, bootstrap=0).value
                    if len(orig) >= 2 else NAN)
        spec = realism.spectral_ratio(rec, orig)
        return SetScores(swd.value, swd.ci_low, swd.ci_high, unpaired, spec.ratio)

    def floor(self, originals: Sequence[np.ndarray],
              key: Hashable | None = None) -> realism.SwdResult | None:
        """The real-vs-real SWD of the set (two disjoint halves); None below two images."""
        if len(originals) < 2:
            return None
        if key is not None:
            if key not in self._floors:
                self._floors[key] = self.floor(originals)
            return self._floors[key]
        return realism.swd_floor(common_view(originals), seed=self.seed, bootstrap=self.bootstrap)

