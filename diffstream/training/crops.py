"""Training crops from the photographs that ship inside scikit-image (no downloads).

Kodak (``../shared/datasets/kodak``) is for evaluation only and is never read here.

The simulator streams 60 % windows of these photos resized to the frame size (a 4-8x
downscale), while the benchmark codes native-resolution Kodak crops, so training covers
both: each photo is kept at six scales (1, 1/1.5, 1/2, 1/3, 1/4, 1/6, LANCZOS) and a crop
is cut from a random scale, then randomly flipped / rotated by 90 degrees.

``CropSampler.from_folder(DIR)`` draws the same crops from a user's own images instead
(``--images DIR`` of the training CLI; for training on top of a pretrained VAE, where
the photographs' variety is too small).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from diffstream.content.sources import IMAGE_SUFFIXES, SKIMAGE_PHOTOS, load_photo
from diffstream.errors import InputError

# Colour photos plus grayscale textures (as RGB) for variety of detail.
TRAIN_PHOTOS: tuple[str, ...] = SKIMAGE_PHOTOS + ("camera", "brick", "grass", "gravel",
                                                  "coins", "moon", "horse", "page")
SCALES: tuple[float, ...] = (1.0, 1 / 1.5, 1 / 2, 1 / 3, 1 / 4, 1 / 6)


class CropSampler:
    """Draws random crops as float tensors in [-1, 1] (N x 3 x size x size)."""

    def __init__(self, photos: tuple[str, ...] = TRAIN_PHOTOS, min_side: int = 96,
                 images: list[Image.Image] | None = None) -> None:
        self.levels: list[np.ndarray] = []
        for im in images if images is not None else (load_photo(n) for n in photos):
            for s in SCALES:
                w, h = round(im.width * s), round(im.height * s)
                if min(w, h) < min_side:
                    continue
                self.levels.append(np.asarray(
                    im.resize((w, h), Image.Resampling.LANCZOS), dtype=np.uint8))
        if not self.levels:
            raise InputError(f"no training image has a side of at least {min_side} px")

    @classmethod
    def from_folder(cls, folder: str | Path, min_side: int = 96) -> CropSampler:
        """Crops of every image in ``folder`` (sorted names; RGB), at the same six scales."""
        root = Path(folder)
        if not root.is_dir():
            raise InputError(f"{root}: training image folder not found")
        files = sorted(p for p in root.iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)})")
        images = []
        for f in files:
            try:
                with Image.open(f) as im:
                    images.append(im.convert("RGB"))
            except Exception as exc:
                raise InputError(f"{f}: cannot read image ({exc})") from exc
        try:
            return cls(min_side=min_side, images=images)
        except InputError as exc:
            raise InputError(f"{root}: {exc}") from None

    def batch(self, n: int, size: int, rng: np.random.Generator) -> torch.Tensor:
        out = np.empty((n, size, size, 3), dtype=np.uint8)
        for i in range(n):
            arr = self.levels[int(rng.integers(len(self.levels)))]
            y = int(rng.integers(arr.shape[0] - size + 1))
            x = int(rng.integers(arr.shape[1] - size + 1))
            crop = arr[y:y + size, x:x + size]
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
            crop = np.rot90(crop, int(rng.integers(4)))
            out[i] = crop
        return to_tensor(out)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """N x H x W x 3 (or H x W x 3) uint8 -> N x 3 x H x W float in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(images))
    if t.ndim == 3:
        t = t[None]
    return t.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """N x 3 x H x W float in [-1, 1] -> N x H x W x 3 uint8 (rounded, clamped)."""
    x = x.detach().float().cpu().clamp(-1.0, 1.0).add(1.0).mul(127.5).round()
    return x.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
