"""Distribution-level realism metrics that need no learnt weights: SWD and a spectral ratio.

Inputs are sets of images, N x H x W x 3 uint8 RGB arrays (all images of a set the same size).

Sliced Wasserstein distance (Karras et al. 2018, "Progressive Growing of GANs", App. D)
---------------------------------------------------------------------------------------
Each image is split into a Laplacian pyramid (5-tap binomial filter, as ``cv2.pyrDown``/
``cv2.pyrUp``) whose coarsest level is the first with a side below 32 px, i.e. levels of
side >= ``min_resolution`` (16), finest first (64 px crops: 64, 32, 16). At every level
``patches_per_image`` (128) 7 x 7 x 3 neighbourhoods are taken at random, seeded positions,
each a 147-vector. Each colour channel of the descriptors is normalised to zero mean and
unit standard deviation, the SWD between the two descriptor sets is the mean over
``projections`` (512) random unit directions of the 1-D Wasserstein-1 distance between the
projected sets, and it is reported x 1e3 like the paper. ``value`` is the mean over levels.

Where this differs from the reference code (``sliced_wasserstein.py`` of
tkarras/progressive_growing_of_gans), on purpose:

- Normalisation: the reference normalises each set with its own per-channel mean and std.
  Here the default (``normalise="joint"``) uses the mean and std of the union of both sets,
  so that a codec that only lowers contrast or fine-detail energy (blur) is not normalised
  away; ``normalise="separate"`` gives the reference behaviour.
- Patch positions are drawn per image index from the seed and shared by both sets, so a set
  compared with itself gives exactly 0 and paired sets (a reconstruction and its original)
  are compared at the same places, which lowers the sampling noise. The positions do not
  depend on the content, so the estimand is unchanged.
- Sets may differ in size: the 1-D distances are then the exact W1 between the two empirical
  quantile functions (the reference requires equal sizes).
- Sets are small (tens to hundreds of images rather than 16384), so the SWD of two disjoint
  sets of real images is well above 0: ``swd_floor`` measures that floor.

Bootstrap CI. Images are resampled with replacement (jointly by index when both sets have
the same size, so paired sets stay paired), keeping the patches, the normalisation and the
projection directions fixed. For speed each resample's 1-D distances are computed from
per-image cumulative counts on a grid of ``bootstrap_grid`` pooled quantiles per direction
(a matrix product per resample) instead of re-sorting. Resampling duplicates images, which
raises a distance that has a positive floor, so the percentile interval of the bootstrap
values sits above the statistic; the reported interval is that bootstrap distribution
shifted so that its median falls on ``value`` (and clipped at 0): it gives the spread due to
the choice of images, not a bias correction. Its width is what to read.

Spectral ratio
--------------
``spectral_ratio`` compares the radially averaged power spectra of paired reconstructions
and originals (mean removed, 2-D Hann window, power summed over RGB and over the set) in
octave bands of radial frequency (cycles/pixel) below Nyquist: (0.25, 0.5], (0.125, 0.25],
..., down to the lowest frequency the size resolves. ``per_octave`` lists recon/orig power
per band, coarsest first; ``ratio`` is recon/orig power over the top two octaves together,
(0.125, 0.5] cycles/pixel (wavelengths of 2-8 px), where codecs lose detail (< 1: blur) or
invent texture or noise (> 1). Frequencies beyond Nyquist along the diagonal (r > 0.5) are
left out so that the bands stay isotropic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import correlate1d

PATCH = 7
PATCHES_PER_IMAGE = 128
PROJECTIONS = 512
MIN_RESOLUTION = 16
BOOTSTRAP_GRID = 64
BOOTSTRAP_PROJECTIONS = 64  # the first 64 directions: the same spread (checked) at 1/8 the cost
_BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0], dtype=np.float32) / 16.0


@dataclass(frozen=True)
class SwdResult:
    value: float  # mean over pyramid levels, x1e3 (Karras et al.)
    per_level: tuple[float, ...]  # finest level first
    ci_low: float  # bootstrap CI of `value` (95 %)
    ci_high: float


@dataclass(frozen=True)
class SpectralResult:
    ratio: float  # recon/orig power over the top two octaves (0.125, 0.5] cycles/pixel
    per_octave: tuple[float, ...]  # recon/orig radial power per octave band, coarsest first


# --- input checks ----------------------------------------------------------------------


def _check_set(name: str, x: object, min_side: int) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name} must be an N x H x W x 3 uint8 array, got {type(x).__name__}")
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] != 3:
        raise ValueError(f"{name} must be an N x H x W x 3 uint8 array, got {x.dtype} {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty set (N = 0)")
    if min(x.shape[1], x.shape[2]) < min_side:
        raise ValueError(
            f"{name} images are {x.shape[1]} x {x.shape[2]} px; at least {min_side} x "
            f"{min_side} are needed"
        )
    return x


def _check_pair_sizes(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(
            f"image sizes differ between the sets: {a.shape[1]} x {a.shape[2]} vs "
            f"{b.shape[1]} x {b.shape[2]}"
        )


# --- Laplacian pyramid -----------------------------------------------------------------


def pyramid_levels(height: int, width: int, min_resolution: int = MIN_RESOLUTION) -> int:
    """Levels of side >= min_resolution (halving from the smaller side), at least 1."""
    side, levels = min(height, width), 0
    while side >= min_resolution:
        levels += 1
        side //= 2
    return max(1, levels)


def _blur(x: np.ndarray, gain: float) -> np.ndarray:
    """Separable 5-tap binomial filter over the H and W axes of an N x H x W x C array."""
    k = _BINOMIAL * gain
    return correlate1d(correlate1d(x, k, axis=1, mode="mirror"), k, axis=2, mode="mirror")


def laplacian_pyramid(images: np.ndarray, levels: int) -> list[np.ndarray]:
    """Float32 Laplacian pyramid of N x H x W x C images, finest level first.

    The last level is the low-pass residual. Down: blur then keep every second sample
    (``cv2.pyrDown``); up: zero-insert then blur with gain 2 per axis (``cv2.pyrUp``), cut
    to the finer level's size when that is odd.
    """
    pyramid = [images.astype(np.float32)]
    for _ in range(1, levels):
        fine = pyramid[-1]
        coarse = _blur(fine, 1.0)[:, ::2, ::2]
        up = np.zeros((coarse.shape[0], 2 * coarse.shape[1], 2 * coarse.shape[2], coarse.shape[3]),
                      dtype=np.float32)
        up[:, ::2, ::2] = coarse
        pyramid[-1] = fine - _blur(up, 2.0)[:, : fine.shape[1], : fine.shape[2]]
        pyramid.append(coarse)
    return pyramid


# --- descriptors and 1-D distances -----------------------------------------------------


def _positions(rng: np.random.Generator, n: int, h: int, w: int, per_image: int, patch: int):
    """Top-left corners of ``per_image`` patches for each of n images (n*per_image each)."""
    ys = rng.integers(0, h - patch + 1, size=n * per_image)
    xs = rng.integers(0, w - patch + 1, size=n * per_image)
    return ys, xs


def _descriptors(level: np.ndarray, ys: np.ndarray, xs: np.ndarray, per_image: int,
                 patch: int) -> np.ndarray:
    """M x C x patch x patch neighbourhoods; descriptor m comes from image m // per_image."""
    windows = np.lib.stride_tricks.sliding_window_view(level, (patch, patch), axis=(1, 2))
    return windows[np.arange(len(ys)) // per_image, ys, xs]  # N x h' x w' x C x p x p view


def _normalise(da: np.ndarray, db: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel zero mean / unit std; flattened to M x (C*patch*patch) float32."""

    def stats(*ds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # per descriptor and channel first (contiguous, float32), then over descriptors
        # in float64: fast, and exact enough for a normalisation
        x = [d.reshape(d.shape[0], d.shape[1], -1) for d in ds]
        count = sum(v.shape[0] * v.shape[2] for v in x)
        mean = sum(v.sum(axis=2).sum(axis=0, dtype=np.float64) for v in x) / count
        sq = sum(np.einsum("mck,mck->mc", v, v).sum(axis=0, dtype=np.float64) for v in x)
        std = np.sqrt(np.maximum(sq / count - mean**2, 0.0))
        std = np.where(std > 1e-6 * (np.abs(mean) + 1.0), std, 1.0)  # a flat channel stays 0
        return mean[:, None, None].astype(np.float32), std[:, None, None].astype(np.float32)

    if mode == "joint":
        ma, sa = stats(da, db)
        mb, sb = ma, sa
    elif mode == "separate":  # the reference code: each set by its own statistics
        (ma, sa), (mb, sb) = stats(da), stats(db)
    else:
        raise ValueError(f"normalise must be 'joint' or 'separate', got {mode!r}")
    return ((da - ma) / sa).reshape(len(da), -1), ((db - mb) / sb).reshape(len(db), -1)


def _project(dirs: np.ndarray, desc: np.ndarray) -> np.ndarray:
    """dirs @ desc.T (directions x descriptors), float32.

    Through torch rather than numpy: its CPU matmul is several times faster than the
    OpenBLAS numpy ships with, and this product is most of the cost of the metric.
    """
    return (torch.from_numpy(dirs) @ torch.from_numpy(desc).T).numpy()


def _w1_sorted(sa: np.ndarray, sb: np.ndarray) -> np.ndarray:
    """Exact W1 between the empirical distributions of each row of sa and sb (sorted rows).

    Equal sizes: the mean absolute difference of sorted values. Otherwise the quantile
    functions are compared on the union of their breakpoints i/m and j/n (integers on the
    common denominator m*n, so the steps are exact).
    """
    m, n = sa.shape[1], sb.shape[1]
    if m == n:
        return np.abs(sa - sb).mean(axis=1)
    points = np.union1d(np.arange(m, dtype=np.int64) * n, np.arange(n, dtype=np.int64) * m)
    widths = np.diff(np.append(points, m * n)) / (m * n)
    return np.abs(sa[:, points // n] - sb[:, points // m]) @ widths


# --- bootstrap -------------------------------------------------------------------------


def _cumulative_counts(order: np.ndarray, svals: np.ndarray, edges: np.ndarray, per_image: int,
                       n_images: int) -> np.ndarray:
    """C[i, d, g] = fraction of all descriptors that are image i's and <= edges[d, g].

    order/svals: D x M argsort and sorted projections of one set; edges: D x G, sorted.
    """
    d_count, m = svals.shape
    g_count = edges.shape[1]
    offset = np.abs(svals).max() + np.abs(edges).max() + 1.0
    base = np.arange(d_count)[:, None] * (2.0 * offset)
    flat_vals = (svals.astype(np.float64) + base).ravel()
    # r[d, g] = #{sorted values of direction d <= edges[d, g]} (global search on offset rows)
    r = np.searchsorted(flat_vals, (edges.astype(np.float64) + base).ravel(), side="right")
    r = r.reshape(d_count, g_count) - np.arange(d_count)[:, None] * m
    # bin[d, k] = #{g : edges[d, g] < sorted value k} = #{g : r[d, g] <= k}
    marks = np.bincount((np.arange(d_count)[:, None] * (m + 1) + r).ravel(),
                        minlength=d_count * (m + 1)).reshape(d_count, m + 1)
    bins = np.cumsum(marks, axis=1)[:, :m]
    owner = order // per_image
    index = (owner * d_count + np.arange(d_count)[:, None]) * (g_count + 1) + bins
    hist = np.bincount(index.ravel(), minlength=n_images * d_count * (g_count + 1))
    hist = hist.reshape(n_images, d_count, g_count + 1)
    # a value <= edges[g] iff fewer than g+1 edges lie strictly below it: bin <= g
    return (np.cumsum(hist, axis=2)[:, :, :g_count] / m).astype(np.float32)


def _bootstrap_level(pa: np.ndarray, pb: np.ndarray, na: int, nb: int, weights_a: np.ndarray,
                     weights_b: np.ndarray, grid: int) -> np.ndarray:
    """Bootstrap SWD (x1e3, mean over directions) of one level for each resample.

    pa, pb: D x M projections; weights_*: B x N resample counts (rows sum to N).
    """
    oa, ob = np.argsort(pa, axis=1), np.argsort(pb, axis=1)
    sa, sb = np.take_along_axis(pa, oa, axis=1), np.take_along_axis(pb, ob, axis=1)
    qa = np.linspace(0, sa.shape[1] - 1, grid // 2).round().astype(int)
    qb = np.linspace(0, sb.shape[1] - 1, grid - grid // 2).round().astype(int)
    edges = np.sort(np.concatenate([sa[:, qa], sb[:, qb]], axis=1), axis=1)
    widths = np.diff(edges, axis=1)  # D x (G-1)
    ca = _cumulative_counts(oa, sa, edges, pa.shape[1] // na, na) * na
    cb = _cumulative_counts(ob, sb, edges, pb.shape[1] // nb, nb) * nb
    d_count = pa.shape[0]
    fa = (weights_a.astype(np.float32) / na) @ ca.reshape(na, -1)  # B x (D*G)
    fb = (weights_b.astype(np.float32) / nb) @ cb.reshape(nb, -1)
    diff = np.abs(fa - fb).reshape(len(weights_a), d_count, -1)
    # trapezoid rule on |F_a - F_b| between edges (the left-point rule overestimates)
    return ((diff[:, :, :-1] + diff[:, :, 1:]) * widths).sum(axis=2).mean(axis=1) * 0.5e3


# --- SWD -------------------------------------------------------------------------------


def sliced_wasserstein(
    a: np.ndarray,
    b: np.ndarray,
    *,
    seed: int = 0,
    bootstrap: int = 100,
    patch: int = PATCH,
    patches_per_image: int = PATCHES_PER_IMAGE,
    projections: int = PROJECTIONS,
    min_resolution: int = MIN_RESOLUTION,
    normalise: str = "joint",
    bootstrap_grid: int = BOOTSTRAP_GRID,
    bootstrap_projections: int = BOOTSTRAP_PROJECTIONS,
) -> SwdResult:
    """SWD x 1e3 between two image sets on Laplacian-pyramid patches, with a bootstrap CI.

    ``bootstrap=0`` skips the CI (ci_low = ci_high = value).
    """
    for key, v, lo in (("patch", patch, 1), ("patches_per_image", patches_per_image, 1),
                       ("projections", projections, 1), ("min_resolution", min_resolution, 1),
                       ("bootstrap", bootstrap, 0), ("bootstrap_grid", bootstrap_grid, 4),
                       ("bootstrap_projections", bootstrap_projections, 1)):
        if not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{key} must be an integer >= {lo}, got {v!r}")
    _check_set("a", a, patch)
    _check_set("b", b, patch)
    _check_pair_sizes(a, b)
    na, nb = len(a), len(b)
    n, h, w = max(na, nb), a.shape[1], a.shape[2]
    levels = pyramid_levels(h, w, min_resolution)
    rng = np.random.default_rng(seed)
    pyr_a, pyr_b = laplacian_pyramid(a, levels), laplacian_pyramid(b, levels)

    if bootstrap:
        boot_rng = np.random.default_rng([seed, 1])
        if na == nb:  # resample pairs by index: keeps paired sets paired
            idx = boot_rng.integers(0, na, size=(bootstrap, na))
            wa = wb = np.stack([np.bincount(r, minlength=na) for r in idx])
        else:
            wa = boot_rng.multinomial(na, np.full(na, 1.0 / na), size=bootstrap)
            wb = boot_rng.multinomial(nb, np.full(nb, 1.0 / nb), size=bootstrap)

    per_level: list[float] = []
    boot_levels: list[np.ndarray] = []  # per level: the bootstrap SWD of each resample
    for la, lb in zip(pyr_a, pyr_b, strict=True):
        ys, xs = _positions(rng, n, la.shape[1], la.shape[2], patches_per_image, patch)
        m_a, m_b = na * patches_per_image, nb * patches_per_image
        da = _descriptors(la, ys[:m_a], xs[:m_a], patches_per_image, patch)
        db = _descriptors(lb, ys[:m_b], xs[:m_b], patches_per_image, patch)
        fa, fb = _normalise(da, db, normalise)
        dirs = rng.standard_normal((projections, fa.shape[1]))
        dirs = (dirs / np.linalg.norm(dirs, axis=1, keepdims=True)).astype(np.float32)
        pa, pb = _project(dirs, fa), _project(dirs, fb)  # directions x descriptors
        if bootstrap:
            k = min(projections, bootstrap_projections)
            boot_levels.append(_bootstrap_level(pa[:k], pb[:k], na, nb, wa, wb, bootstrap_grid))
        pa.sort(axis=1)
        pb.sort(axis=1)
        per_level.append(float(_w1_sorted(pa, pb).mean()) * 1e3)

    value = float(np.mean(per_level))
    if not bootstrap:
        return SwdResult(value, tuple(per_level), value, value)
    boot_value = np.mean(boot_levels, axis=0)  # x1e3 already
    lo, mid, hi = np.percentile(boot_value, [2.5, 50.0, 97.5])
    return SwdResult(value, tuple(per_level), max(0.0, value - (mid - lo)), value + (hi - mid))


def _halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of range(n) into two disjoint halves (the odd one out is dropped)."""
    if n < 2:
        raise ValueError(f"splitting a set into halves needs at least 2 images, got {n}")
    perm = np.random.default_rng([seed, 2]).permutation(n)
    return perm[: n // 2], perm[n // 2 : 2 * (n // 2)]


def swd_unpaired(recon: np.ndarray, orig: np.ndarray, *, seed: int = 0, bootstrap: int = 100,
                 **options) -> SwdResult:
    """SWD of one half of the reconstructions against the *other* half of the originals.

    The split is the one ``swd_floor(orig, seed=seed)`` uses, so a perfect codec scores
    exactly the floor, and the two numbers can be compared like for like (the paired
    ``sliced_wasserstein(recon, orig)`` has no such floor: it is 0 for a perfect codec).
    """
    _check_set("recon", recon, options.get("patch", PATCH))
    _check_set("orig", orig, options.get("patch", PATCH))
    if recon.shape != orig.shape:
        raise ValueError(f"recon and orig must be paired (same shape): {recon.shape} vs "
                         f"{orig.shape}")
    first, second = _halves(len(orig), seed)
    return sliced_wasserstein(recon[first], orig[second], seed=seed, bootstrap=bootstrap,
                              **options)


def swd_floor(images: np.ndarray, *, seed: int = 0, bootstrap: int = 100, **options) -> SwdResult:
    """SWD between two disjoint halves of one set of real images (seeded split).

    With small sets SWD has a positive floor from the choice of images alone; this measures
    it, at N/2 against N/2 images (``swd_unpaired`` compares a codec at the same split).
    """
    return swd_unpaired(images, images, seed=seed, bootstrap=bootstrap, **options)


# --- spectral ratio --------------------------------------------------------------------


def _octave_power(images: np.ndarray, octaves: int) -> np.ndarray:
    """Total power (summed over images and RGB) per octave band, coarsest first."""
    n, h, w, _ = images.shape
    window = np.outer(np.hanning(h), np.hanning(w))[None, :, :, None]
    x = images.astype(np.float64)
    x = (x - x.mean(axis=(1, 2), keepdims=True)) * window
    power = (np.abs(np.fft.fft2(x, axes=(1, 2))) ** 2).sum(axis=(0, 3))  # H x W
    radius = np.hypot(*np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij"))
    out = np.empty(octaves)
    for k in range(octaves):  # band k (finest k = 0): (0.5 / 2**(k+1), 0.5 / 2**k]
        upper = 0.5 / 2**k
        band = (radius > upper / 2) & (radius <= upper)
        out[octaves - 1 - k] = power[band].sum()
    return out


def _ratio(num: float, den: float) -> float:
    if den > 0:
        return float(num / den)
    return 1.0 if num == 0 else float("inf")  # no power in the original's band


def spectral_ratio(recon: np.ndarray, orig: np.ndarray) -> SpectralResult:
    """Reconstruction/original radial power per octave and over the top two octaves."""
    _check_set("recon", recon, 8)
    _check_set("orig", orig, 8)
    if recon.shape != orig.shape:
        raise ValueError(f"recon and orig must be paired (same shape): {recon.shape} vs "
                         f"{orig.shape}")
    # octave k spans (0.5/2^(k+1), 0.5/2^k]; the lowest one must hold a resolved frequency
    octaves = int(np.floor(np.log2(min(recon.shape[1], recon.shape[2]) / 2)))
    pr, po = _octave_power(recon, octaves), _octave_power(orig, octaves)
    per_octave = tuple(_ratio(r, o) for r, o in zip(pr, po, strict=True))
    return SpectralResult(_ratio(pr[-2:].sum(), po[-2:].sum()), per_octave)
