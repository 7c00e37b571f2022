"""Frame sources: the video-like content the sender streams.

A ``FrameSource`` is a deterministic, looping sequence of H x W x 3 uint8 RGB frames, so
two runs of a scenario (and two processes of one live run) see bit-identical frames.

- ``pan_sequence``: slow camera pans across the photographs that ship inside the
  scikit-image wheel (no download, no ``../shared``). Each photo gives one shot.
- ``folder_sequence``: the image files of a folder, in name order, one per frame (use
  zero-padded names for extracted video frames).
- ``GeneratedSequence``: frames that are generation requests (BADiff, paper 000): frame k
  asks the sender's model for an image of seed ``request(k).seed``; ``frame(k)`` is the
  quality reference, the same request's unconstrained full-step sample.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from diffstream.content.requests import GenerationRequest
from diffstream.errors import InputError, located

# Colour photographs in the scikit-image wheel that load offline. ``cat`` is the same
# picture as ``chelsea`` and ``colorwheel`` is synthetic, so neither is in the default list;
# both (and the grayscale ones such as ``camera``, converted to RGB) can be asked for by name.
SKIMAGE_PHOTOS: tuple[str, ...] = (
    "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
    "immunohistochemistry", "stereo_motorcycle", "retina",
)
# Every skimage.data image whose file ships in the wheel (others would need a download, which
# a run must never do): the colour photos above, cat/colorwheel/logo, and grayscale images.
SKIMAGE_OFFLINE: frozenset[str] = frozenset(SKIMAGE_PHOTOS) | {
    "cat", "colorwheel", "logo", "camera", "brick", "cell", "clock", "coins", "grass",
    "gravel", "horse", "microaneurysms", "moon", "page", "text", "shepp_logan_phantom",
    "checkerboard",
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
WINDOW_FRACTION = 0.6  # crop window's smaller side / photo's smaller side
# Pan paths as (start, end) in fractions of the free range (x, y); shot i uses i % 4, so
# successive shots move in different directions.
_PATHS: tuple[tuple[tuple[float, float], tuple[float, float]], ...] = (
    ((0.0, 0.2), (1.0, 0.8)),
    ((1.0, 0.7), (0.0, 0.3)),
    ((0.2, 0.0), (0.8, 1.0)),
    ((0.8, 1.0), (0.2, 0.0)),
)


# (request, (height, width)) -> the request's unconstrained sample, H x W x 3 uint8
ReferenceFn = Callable[[GenerationRequest, tuple[int, int]], np.ndarray]


@runtime_checkable
class FrameSource(Protocol):
    """A looping, deterministic frame sequence."""

    width: int
    height: int

    def __len__(self) -> int:
        """Frames in one loop of the sequence."""
        ...

    def frame(self, k: int) -> np.ndarray:
        """Frame k (k >= 0; wraps around) as H x W x 3 uint8 RGB."""
        ...


def _check_size(width: Any, height: Any) -> tuple[int, int]:
    for label, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise InputError(f"frame {label} must be a positive integer, got {v!r}")
    return int(width), int(height)


def _check_index(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"frame index must be an integer >= 0, got {k!r}")
    return int(k)


def _to_rgb(arr: np.ndarray) -> np.ndarray:
    """Any skimage/Pillow image array -> H x W x 3 uint8 (gray stacked, alpha dropped)."""
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        from skimage.util import img_as_ubyte

        arr = img_as_ubyte(arr)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"not an image array: shape {arr.shape}")
    return np.ascontiguousarray(arr[:, :, :3])


@lru_cache(maxsize=32)
def load_photo(name: str) -> Image.Image:
    """A scikit-image sample photo as an RGB Pillow image (cached; never mutate it)."""
    if name not in SKIMAGE_OFFLINE:
        raise InputError(f"unknown scikit-image photo {name!r} (or one that needs a download); "
                         f"choose from {', '.join(sorted(SKIMAGE_OFFLINE))}")
    import skimage.data

    try:
        data = getattr(skimage.data, name)()
        if isinstance(data, tuple):  # stereo_motorcycle: (left, right, disparity)
            data = data[0]
        return Image.fromarray(_to_rgb(np.asarray(data)), "RGB")
    except Exception as exc:
        raise InputError(f"scikit-image photo {name!r} could not be loaded offline ({exc}); "
                         f"choose from {', '.join(SKIMAGE_PHOTOS)}") from exc


class PanSequence:
    """Slow linear pans across photos, one shot of ``shot_frames`` frames per photo.

    The crop window has the frame's aspect ratio and a smaller side of 60 % of the photo's
    smaller side (shrunk if needed so it fits with room to move). It moves linearly, at
    sub-pixel precision, across the free part of the photo during the shot, along one of
    four directions (shot index mod 4), and is resampled to width x height with LANCZOS.
    """

    def __init__(self, width: int, height: int, *, shot_frames: int = 50,
                 photos: Sequence[str] | None = None) -> None:
        self.width, self.height = _check_size(width, height)
        if isinstance(shot_frames, bool) or not isinstance(shot_frames, int) or shot_frames < 1:
            raise InputError(f"shot_frames must be an integer >= 1, got {shot_frames!r}")
        names = SKIMAGE_PHOTOS if photos is None else photos
        if isinstance(names, str) or not names or not all(isinstance(n, str) for n in names):
            raise InputError(f"photos must be a non-empty list of scikit-image photo names, "
                             f"got {photos!r}")
        self.shot_frames = shot_frames
        self.photos: tuple[str, ...] = tuple(names)
        for name in self.photos:
            load_photo(name)  # fail at construction, not in the middle of a run

    def __len__(self) -> int:
        return self.shot_frames * len(self.photos)

    def shot(self, k: int) -> int:
        """Index of the shot (= photo in the list) that frame k belongs to."""
        return (_check_index(k) % len(self)) // self.shot_frames

    def window(self, k: int) -> tuple[float, float, float, float]:
        """Crop box (left, top, right, bottom) in photo pixels for frame k."""
        k = _check_index(k) % len(self)
        shot, j = divmod(k, self.shot_frames)
        photo = load_photo(self.photos[shot])
        pw, ph = photo.size
        aspect = self.width / self.height
        side = WINDOW_FRACTION * min(pw, ph)
        cw, ch = (side * aspect, side) if aspect >= 1 else (side, side / aspect)
        shrink = min(1.0, 0.9 * pw / cw, 0.9 * ph / ch)
        cw, ch = cw * shrink, ch * shrink
        (x0, y0), (x1, y1) = _PATHS[shot % len(_PATHS)]
        t = j / (self.shot_frames - 1) if self.shot_frames > 1 else 0.5
        left = (pw - cw) * (x0 + (x1 - x0) * t)
        top = (ph - ch) * (y0 + (y1 - y0) * t)
        return (left, top, left + cw, top + ch)

    def frame(self, k: int) -> np.ndarray:
        k = _check_index(k) % len(self)
        photo = load_photo(self.photos[k // self.shot_frames])
        out = photo.resize((self.width, self.height), Image.Resampling.LANCZOS,
                           box=self.window(k))
        return np.array(out, dtype=np.uint8)


class FolderSequence:
    """The images of a folder in name order, centre-cropped to the frame aspect, resized."""

    CACHE_FRAMES = 64

    def __init__(self, path: str | Path, width: int, height: int) -> None:
        self.width, self.height = _check_size(width, height)
        self.path = Path(path)
        if not self.path.is_dir():
            raise InputError(located(self.path, None, "image folder not found; create it or "
                                     "fix the content 'path' (relative paths start at the "
                                     "scenario's folder)"))
        self.files = sorted(p for p in self.path.iterdir()
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise InputError(located(self.path, None, "no image files "
                                     f"({', '.join(IMAGE_SUFFIXES)}) in this folder; add "
                                     "frames or point 'path' at another folder"))
        for f in self.files:  # header check now, so a bad file fails before the run
            try:
                with Image.open(f) as im:
                    im.size  # noqa: B018 - touching it parses the header
            except Exception as exc:
                raise InputError(located(f, None, f"cannot read image ({exc}); replace or "
                                         "remove this file")) from exc
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, i: int) -> np.ndarray:
        f = self.files[i]
        try:
            with Image.open(f) as im:
                im.load()
                rgb = im.convert("RGB")
        except Exception as exc:
            raise InputError(located(f, None, f"cannot read image ({exc}); replace or "
                                     "remove this file")) from exc
        pw, ph = rgb.size
        aspect = self.width / self.height
        cw, ch = (ph * aspect, float(ph)) if pw / ph > aspect else (float(pw), pw / aspect)
        left, top = (pw - cw) / 2, (ph - ch) / 2
        out = rgb.resize((self.width, self.height), Image.Resampling.LANCZOS,
                         box=(left, top, left + cw, top + ch))
        arr = np.array(out, dtype=np.uint8)
        arr.flags.writeable = False
        return arr

    def frame(self, k: int) -> np.ndarray:
        i = _check_index(k) % len(self)
        if i in self._cache:
            self._cache.move_to_end(i)
        else:
            self._cache[i] = self._load(i)
            if len(self._cache) > self.CACHE_FRAMES:
                self._cache.popitem(last=False)
        return self._cache[i].copy()


class GeneratedSequence:
    """``requests`` distinct generation requests, looping; seeds derive from ``seed``.

    The reference image of a request is computed on first use by ``reference`` (the
    simulator passes the generative model's full-step sampler, seconds per frame on a CPU)
    and kept in memory, so a run pays for each request once per process. The generator is
    passed in rather than imported so this layer imports nothing above it.
    """

    def __init__(self, width: int, height: int, *, seed: int, requests: int = 20,
                 reference: ReferenceFn | None = None) -> None:
        self.width, self.height = _check_size(width, height)
        if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
            raise InputError(f"requests must be an integer >= 1, got {requests!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InputError(f"seed must be an integer, got {seed!r}")
        self.seed, self.requests = seed, requests
        self._reference = reference
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.requests

    def request(self, k: int) -> GenerationRequest:
        i = _check_index(k) % self.requests
        # SeedSequence spreads (scenario seed, request index) over 63 bits, stably across
        # NumPy versions and platforms.
        state = np.random.SeedSequence([self.seed & (2**63 - 1), i]).generate_state(2, np.uint32)
        return GenerationRequest(seed=int(state[0]) << 31 ^ int(state[1]) >> 1)

    def frame(self, k: int) -> np.ndarray:
        i = _check_index(k) % self.requests
        if i not in self._cache:
            if self._reference is None:
                raise InputError("generated content has no reference generator: pass "
                                 "reference= to GeneratedSequence / make_source")
            arr = np.asarray(self._reference(self.request(i), (self.height, self.width)),
                             dtype=np.uint8)
            arr.flags.writeable = False
            self._cache[i] = arr
        return self._cache[i].copy()


def pan_sequence(width: int, height: int, *, shot_frames: int = 50,
                 photos: Sequence[str] | None = None) -> FrameSource:
    """Video-like pans across scikit-image's photos (see ``PanSequence``)."""
    return PanSequence(width, height, shot_frames=shot_frames, photos=photos)


def folder_sequence(path: str | Path, width: int, height: int) -> FrameSource:
    """The image files of ``path`` as frames (see ``FolderSequence``)."""
    return FolderSequence(path, width, height)


SPEC_KEYS = {"skimage": {"source", "shot_frames", "photos"}, "folder": {"source", "path"},
              "generated": {"source", "requests", "seed", "model", "model_steps"}}


def make_source(spec: Mapping[str, Any], width: int, height: int,
                base_dir: str | Path, *, reference: ReferenceFn | None = None) -> FrameSource:
    """Build a source from a scenario's content spec; relative paths start at ``base_dir``.

    ``{"source": "skimage", "shot_frames": 50, "photos": [...]}`` (both optional),
    ``{"source": "folder", "path": "frames/"}`` or
    ``{"source": "generated", "seed": 7, "requests": 20}``.
    """
    if not isinstance(spec, Mapping):
        raise InputError(f"content spec must be a mapping with a 'source' key, got {spec!r}")
    source = spec.get("source")
    if source not in SPEC_KEYS:
        raise InputError(f"content source must be one of {', '.join(sorted(SPEC_KEYS))}, "
                         f"got {source!r}")
    unknown = set(spec) - SPEC_KEYS[source]
    if unknown:
        raise InputError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))} in content "
                         f"spec for source {source!r}; allowed: "
                         f"{', '.join(sorted(SPEC_KEYS[source]))}")
    if source == "generated":
        return GeneratedSequence(width, height, seed=spec.get("seed", 0),
                                 requests=spec.get("requests", 20), reference=reference)
    if source == "skimage":
        return pan_sequence(width, height, shot_frames=spec.get("shot_frames", 50),
                            photos=spec.get("photos"))
    path = spec.get("path")
    if not isinstance(path, (str, Path)) or not str(path):
        raise InputError(f"content source 'folder' needs a 'path' string, got {path!r}")
    full = Path(path).expanduser()
    if not full.is_absolute():
        full = Path(base_dir) / full
    return folder_sequence(full, width, height)
