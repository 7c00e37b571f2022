"""The images an evaluation codes: a folder of photos, cut into seeded square crops.

Crops are drawn in file-name order from one ``numpy.random.default_rng(seed)``: for each
image, ``per_image`` times, a top-left corner uniform over every position where the crop
fits. This is the draw ``benchmarks/bench_gic.py`` always used, so its Kodak crops (seed 0)
are the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from diffstream.content.sources import IMAGE_SUFFIXES
from diffstream.errors import InputError, located

# Pillow reads the netpbm family too; the simulator's folder source does not list it.
EVAL_SUFFIXES: tuple[str, ...] = IMAGE_SUFFIXES + (".ppm", ".pgm", ".pnm")


@dataclass(frozen=True)
class Crop:
    """One crop: where it came from and its pixels (H x W x 3 uint8, read-only)."""

    image: str  # file name
    index: int  # k-th crop of that image
    y: int
    x: int
    pixels: np.ndarray

    @property
    def id(self) -> str:
        return f"{self.image}#{self.index}"

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])


def list_images(folder: Path) -> list[Path]:
    """The image files of ``folder`` in name order; InputError for a missing or empty one."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(located(folder, None, "image folder not found; give --images a "
                                 "folder of images"))
    files = sorted(p for p in folder.iterdir() if p.is_file()
                   and p.suffix.lower() in EVAL_SUFFIXES)
    if not files:
        raise InputError(located(folder, None, "no image files ("
                                 f"{', '.join(EVAL_SUFFIXES)}) in this folder; add images or "
                                 "point --images at another folder"))
    return files


def load_image(path: Path) -> np.ndarray:
    """An RGB uint8 array (alpha dropped, grey expanded); InputError naming the file."""
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.array(im.convert("RGB"), dtype=np.uint8)
    except Exception as exc:  # Pillow raises many types for a bad file; all mean "unreadable"
        raise InputError(located(path, None, f"cannot read image ({exc}); replace or remove "
                                 "this file")) from exc
    return arr


def load_folder(folder: Path) -> list[tuple[str, np.ndarray]]:
    """(file name, pixels) of every image in ``folder``, all read now (before any coding)."""
    return [(p.name, load_image(p)) for p in list_images(folder)]


def seeded_crops(images: list[tuple[str, np.ndarray]], size: int | None, per_image: int,
                 seed: int, folder: Path | None = None) -> list[Crop]:
    """``per_image`` seeded size x size crops per image; ``size=None`` keeps whole images
    (one per image: a second whole-image "crop" would be the same pixels)."""
    if per_image < 1:
        raise InputError(f"--crops-per-image must be >= 1, got {per_image}")
    crops: list[Crop] = []
    if size is None:
        for name, arr in images:
            crops.append(Crop(name, 0, 0, 0, arr))
        return crops
    for name, arr in images:
        h, w = arr.shape[:2]
        if size > h or size > w:
            where = Path(folder) / name if folder is not None else Path(name)
            raise InputError(located(where, None, f"image is {w}x{h}, smaller than the "
                                     f"{size}x{size} crops asked for; choose a --size <= "
                                     f"{min(h, w)} or remove this image"))
    rng = np.random.default_rng(seed)
    for name, arr in images:
        h, w = arr.shape[:2]
        for k in range(per_image):
            y = int(rng.integers(0, h - size + 1))
            x = int(rng.integers(0, w - size + 1))
            pix = np.ascontiguousarray(arr[y:y + size, x:x + size])
            crops.append(Crop(name, k, y, x, pix))
    return crops
