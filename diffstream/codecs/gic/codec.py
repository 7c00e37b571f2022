"""GIC (paper 003) and its plain learned-codec baseline LIC, on a real compressai bitstream.

``gic``: the frame is encoded by our autoencoder to a latent y (4x down), coded at a scale
q by the rate-variable hyperprior (Eq. 5, one model for every rate), and decoded by
Algorithm 1: a few Euler steps of the reverse network D_theta from q down to 0, with
stochastic injection (beta = 0.075, two steps q0 -> 0.13 -> 0 by default), then the
synthesis transform. ``lic``: the same bitstream decoded without the reverse network
(y_hat straight into the synthesis transform), the "LIC" baseline of the BADiff paper's
cascades.

Rate control. ``encode(image, budget)`` picks the finest q (grid index 0..4095) whose *real*
rANS payload fits the budget. Everything that does not depend on q (autoencoder, hyper
analysis, entropy parameters) is computed once per frame; each probe at a q is one rANS
pass (~1 ms at 64x64). The first probe is guided by a per-frame bpp(q) model: the ideal
code length -log2 P(k | mu, sigma, q) of this very frame, computed in closed form for any
q, times a calibration ratio (real / ideal size, carried from frame to frame; 1.00-1.02).
It aims at 98.5 % of the budget. Later probes interpolate log(size) between the closest
too-big and fitting probes, or extrapolate along the model's slope while only one side is
known. The search stops when a fitting payload is within 3 % (or one 32-bit rANS word) of
the budget, the bracket is closed, or after ``max_passes`` (8), and sends the largest
fitting payload among the probes. Measured on 72 Kodak 64x64 crops x 24 budgets
(``benchmarks/bench_gic.py``): 1.25 passes per call on average, never over budget, mean
|error| 2.3 % of the budget.

Floor. When even q_hi (the coarsest q) does not fit, the frame is skipped with a reason;
that decision always rests on a real pass at q_hi.

Decoding noise (beta > 0) is drawn from a CPU ``torch.Generator`` seeded with
crc32(payload) xor ``seed``, data both ends hold, so any process decodes the same image.
On the CPU the decoder runs on one thread, so the reconstruction is bit-identical across
processes (the simulator's workers run one thread anyway).
"""

from __future__ import annotations

import logging
import math
import threading
import zlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from diffstream.codecs.base import CodecError, Encoded, Image
from diffstream.codecs.classic.pillow import _check_image, _pink_noise
from diffstream.codecs.gic.bitstream import Q_LEVELS, Analysis, LatentCoder, one_thread, q_of_index
from diffstream.codecs.gic.model import WEIGHTS_DIR, GicModel, WeightsMissingError
from diffstream.codecs.gic.sampler import SamplerConfig, reverse_sample
from diffstream.codecs.registry import register_codec
from diffstream.training.crops import to_tensor, to_uint8

log = logging.getLogger(__name__)

MAX_PASSES = 8
TOLERANCE = 0.03  # stop when a fitting payload is within 3 % of the budget
FIRST_AIM = 0.985  # first probe aims at 98.5 % of the budget
MULTIPLE = 16  # H and W must be multiples of this (4x AE down, 4x hyperprior down)

_CACHE: dict[tuple[str, str, str], tuple[GicModel, LatentCoder]] = {}
_CACHE_LOCK = threading.Lock()


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_bundle(weights: str | Path | None = None, device: str | None = None,
                vae: str | Path | None = None) -> tuple[GicModel, LatentCoder]:
    """The GIC model on ``device`` and its entropy coder, loaded once per process.

    ``vae``: a pretrained diffusers VAE folder; ``weights`` must then be GIC weights trained
    on it (``python -m diffstream.training gic --vae DIR --images DIR --out OUT``)."""
    if vae is not None and weights is None:
        raise WeightsMissingError(
            f"gic with vae: {vae} needs GIC weights trained on it (its entropy model and "
            "reverse network): run `python -m diffstream.training gic --vae "
            f"{vae} --images DIR --out OUT` and pass codec_options.weights: OUT")
    path = str(Path(weights).resolve()) if weights is not None else str(WEIGHTS_DIR)
    dev = device or default_device()
    key = (path, dev, str(Path(vae).resolve()) if vae is not None else "")
    with _CACHE_LOCK:
        if key not in _CACHE:
            model = GicModel.load(path, device=dev, require=("ae", "entropy"), vae=vae)
            coder = LatentCoder(model.hyper, model.cfg.q_lo, model.cfg.q_hi)
            _CACHE[key] = (model, coder)
        return _CACHE[key]


def check_frame_shape(h: int, w: int, error: type[Exception], multiple: int = MULTIPLE
                      ) -> None:
    """``multiple``: autoencoder factor x 4 (the hyperprior's downsampling): 16 for ours
    and KL-f4, 32 for an 8x VAE."""
    if h < multiple or w < multiple or h % multiple or w % multiple:
        raise error(f"GIC needs frame sides that are multiples of {multiple} "
                    f"({multiple // 4}x autoencoder x 4x hyperprior), got {w}x{h}")


class _LatentCodec:
    """Shared encoder and rate control; subclasses choose how y_hat becomes an image."""

    name: ClassVar[str]
    progressive: ClassVar[bool] = False
    steps_default: ClassVar[int] = 2

    def __init__(self, steps: int | None = None, beta: float | None = None,
                 noise: str = "gaussian", q1: float | None = None,
                 weights: str | None = None, device: str | None = None, seed: int = 0,
                 max_passes: int = MAX_PASSES, tolerance: float = TOLERANCE,
                 vae: str | None = None) -> None:
        self.model, self.coder = load_bundle(weights, device, vae)
        cfg = self.model.cfg
        self.device = next(self.model.ae.parameters()).device
        self.multiple = 4 * self.model.factor
        self.steps = self.steps_default if steps is None else int(steps)
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        self.sampler = SamplerConfig(steps=max(self.steps, 1), q1=cfg.q1 if q1 is None else q1,
                                     beta=cfg.beta if beta is None else beta, noise=noise,
                                     q_min=cfg.q_lo)
        self.seed = int(seed)
        self.max_passes = int(max_passes)
        self.tolerance = float(tolerance)
        self._ratio = 1.0  # calibrated real / ideal code length, carried across frames
        self._floors: dict[tuple[int, int], int] = {}
        self.last_passes = 0

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        """The scenario precheck's hook: a ``vae`` folder and the ``weights`` trained on it,
        checked from their files (no weights loaded): ConfigError naming the path."""
        check_vae_options(options.get("vae"), options.get("weights"),
                          ("entropy", "reverse") if cls.steps_default > 0 else ("entropy",))

    # --- encoder --------------------------------------------------------------------
    @torch.no_grad()
    def analyse(self, image: Image) -> Analysis:
        arr = _check_image(image)
        check_frame_shape(arr.shape[0], arr.shape[1], ValueError, self.multiple)
        x = to_tensor(arr).to(self.device)
        with one_thread() if self.device.type == "cpu" else _null():
            y = self.model.ae.encode(x)
        return self.coder.analyse(y.cpu())

    def encode(self, image: Image, budget_bits: int) -> Encoded:
        a = self.analyse(image)
        budget = int(budget_bits)
        payload, q_index, passes, floor = self._fit(a, budget)
        self.last_passes = passes
        h, w = image.shape[:2]
        if payload is None:
            reason = (f"budget {budget} bits < floor {floor} bits at q_hi="
                      f"{self.model.cfg.q_hi:g} ({self.name} {w}x{h})")
            log.info("skipping frame: %s", reason)
            return Encoded(payload=b"", meta={"passes": passes}, skipped=True, reason=reason,
                           steps=self.encoded_steps)
        q = q_of_index(q_index, self.coder.q_lo, self.coder.q_hi)
        return Encoded(payload=payload, meta={"q": round(q, 5), "passes": passes},
                       steps=self.encoded_steps)

    @property
    def encoded_steps(self) -> int:
        """Codec steps the decoder will run: D_theta evaluations (1 for plain LIC)."""
        return max(self.steps, 1)

    def _predict(self, a: Analysis, target: float, lo: int, hi: int, ratio: float) -> int:
        """Smallest index in [lo, hi] whose modelled size ratio * ideal(q) <= target."""
        cl, ch = self.coder.q_lo, self.coder.q_hi
        if ratio * self.coder.estimate_bits(a, q_of_index(hi, cl, ch)) > target:
            return hi
        while lo < hi:
            mid = (lo + hi) // 2
            if ratio * self.coder.estimate_bits(a, q_of_index(mid, cl, ch)) <= target:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def _slope(self, a: Analysis, i: int) -> float:
        """d log(bits) / d index of the ideal-size model near i (negative; finite difference)."""
        cl, ch = self.coder.q_lo, self.coder.q_hi
        j = min(i + 128, Q_LEVELS - 1) if i < Q_LEVELS - 129 else i - 128
        bi = self.coder.estimate_bits(a, q_of_index(i, cl, ch))
        bj = self.coder.estimate_bits(a, q_of_index(j, cl, ch))
        return min((math.log(bj) - math.log(bi)) / (j - i), -1e-5)

    def _fit(self, a: Analysis, budget: int) -> tuple[bytes | None, int | None, int, int | None]:
        """(payload, q index, rANS passes, floor bits if probed); payload None = skip.

        Real sizes are nearly but not exactly monotone in q (rounding of the means to the
        q grid and of the symbols make them jitter by ~1-2 % between neighbouring indices),
        so the search keeps every probe, interpolates log(size) between the closest
        too-big and fitting probes, extrapolates with the ideal-size model's slope while
        only one side is known, and sends the largest fitting payload it has seen.
        """
        top = Q_LEVELS - 1
        cl, ch = self.coder.q_lo, self.coder.q_hi
        sizes: dict[int, bytes] = {}
        ratios: list[float] = []
        target = math.log(budget * FIRST_AIM) if budget > 0 else 0.0

        def probe(i: int) -> int:
            sizes[i] = self.coder.encode(a, i)
            bits = 8 * len(sizes[i])
            ratios.append(bits / max(self.coder.estimate_bits(a, q_of_index(i, cl, ch)), 1.0))
            return bits

        def done() -> bool:
            fits = [8 * len(p) for p in sizes.values() if 8 * len(p) <= budget]
            if not fits:
                return False
            best = max(fits)
            return best >= budget * (1 - self.tolerance) or budget - best < 32

        i = self._predict(a, budget * FIRST_AIM, 0, top, self._ratio) if budget > 0 else top
        while True:
            probe(i)
            if done() or len(sizes) >= self.max_passes:
                break
            over = [j for j, p in sizes.items() if 8 * len(p) > budget]
            under = [j for j, p in sizes.items() if 8 * len(p) <= budget]
            a_i = max(over) if over else None  # closest too-big probe (sizes fall with index)
            b_i = min((j for j in under if a_i is None or j > a_i), default=None)
            if a_i == top:
                break  # even the coarsest q is too big: skip
            if a_i is not None and b_i is not None:
                if b_i - a_i <= 1:
                    break
                la, lb = math.log(8 * len(sizes[a_i])), math.log(8 * len(sizes[b_i]))
                t = (la - target) / max(la - lb, 1e-9)
                nxt = a_i + round(t * (b_i - a_i))
                nxt = min(max(nxt, a_i + 1), b_i - 1)
            else:
                ref = a_i if a_i is not None else b_i
                assert ref is not None
                step = (target - math.log(8 * len(sizes[ref]))) / self._slope(a, ref)
                step *= 1.15 if a_i is not None else 0.85  # aim past the boundary: bracket it
                nxt = ref + (max(1, round(step)) if a_i is not None else min(-1, round(step)))
                nxt = min(max(nxt, 0), top)
            if nxt in sizes:
                break
            i = nxt
        if top not in sizes and all(8 * len(p) > budget for p in sizes.values()):
            probe(top)  # settle the skip decision on a real pass at the coarsest q
        self._ratio = float(np.median(ratios))
        passes = len(sizes)
        fitting = [(len(p), -j) for j, p in sizes.items() if 8 * len(p) <= budget]
        if not fitting:
            return None, None, passes, 8 * len(sizes[top])
        _, neg = max(fitting)
        return sizes[-neg], -neg, passes, None

    def min_bits(self, shape: tuple[int, int]) -> int:
        """Real payload bits at q_hi of a fixed pink-noise frame (natural-image spectrum)."""
        h, w = (int(v) for v in shape)
        check_frame_shape(h, w, ValueError, self.multiple)
        if (h, w) not in self._floors:
            a = self.analyse(_pink_noise(h, w))
            self._floors[(h, w)] = 8 * len(self.coder.encode(a, Q_LEVELS - 1))
        return self._floors[(h, w)]

    # --- decoder --------------------------------------------------------------------
    def decode_latent(self, payload: bytes, shape: tuple[int, int]) -> tuple[torch.Tensor, float]:
        """Payload -> (y_hat, q); CodecError on anything invalid."""
        try:
            h, w = (int(v) for v in shape)
        except (TypeError, ValueError):
            raise CodecError(f"shape must be (H, W), got {shape!r}") from None
        check_frame_shape(h, w, CodecError, self.multiple)
        if not payload:
            raise CodecError(f"empty {self.name} payload (a skipped frame has nothing to decode)")
        try:
            f = self.model.factor
            y_hat, q, _ = self.coder.decode(bytes(payload), self.model.cfg.latent_channels,
                                            (h // f, w // f))
        except CodecError:
            raise
        except Exception as exc:  # compressai / torch on hostile input: always "corrupt"
            raise CodecError(f"corrupt {self.name} payload ({len(payload)} bytes): "
                             f"{type(exc).__name__}: {exc}") from exc
        return y_hat, q

    @torch.no_grad()
    def reconstruct(self, y_hat: torch.Tensor, q: float, payload: bytes) -> Image:
        """y_hat -> image (H x W x 3 uint8); subclasses decide about the reverse network."""
        with one_thread() if self.device.type == "cpu" else _null():
            y = self.refine(y_hat.to(self.device), q, payload)
            img = to_uint8(self.model.ae.decode(y))[0]
        return img

    def refine(self, y_hat: torch.Tensor, q: float, payload: bytes) -> torch.Tensor:
        return y_hat

    def decode(self, payload: bytes, meta: dict[str, Any], shape: tuple[int, int]) -> Image:
        y_hat, q = self.decode_latent(payload, shape)
        img = self.reconstruct(y_hat, q, bytes(payload))
        if img.shape != (int(shape[0]), int(shape[1]), 3):
            raise CodecError(f"{self.name} decoded to {img.shape}, expected {tuple(shape)}")
        return img


def check_vae_options(vae: str | None, weights: str | None, stages: tuple[str, ...]) -> None:
    """What ``load_bundle`` would refuse about a vae/weights pair, from JSON and file names."""
    import json

    from diffstream.backbones.pretrained import PretrainedFolderError, find_vae
    from diffstream.codecs.gic.model import CONFIG_NAME, WEIGHTS_NAME
    from diffstream.codecs.gic.vae import config_fingerprint

    comp = find_vae(vae) if vae is not None else None
    if weights is None:
        if comp is not None:
            raise PretrainedFolderError(
                f"vae {vae} needs codec_options.weights: the GIC weights trained on it "
                f"(`python -m diffstream.training gic --vae {vae} --images DIR --out OUT`)")
        return
    wdir = Path(weights)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (wdir / name).is_file():
            raise PretrainedFolderError(f"{wdir}: {name} is missing (GIC weights are "
                                        f"{WEIGHTS_NAME} + {CONFIG_NAME})")
    try:
        cfg = json.loads((wdir / CONFIG_NAME).read_text())
    except (OSError, ValueError) as exc:
        raise PretrainedFolderError(f"{wdir / CONFIG_NAME}: unreadable ({exc})") from None
    trained_on_vae = cfg.get("autoencoder", "own") == "diffusers"
    if trained_on_vae and comp is None:
        raise PretrainedFolderError(f"{wdir / CONFIG_NAME}: trained on the VAE at "
                                    f"{cfg.get('vae', {}).get('source', '?')}; add "
                                    "codec_options.vae: that folder")
    if comp is not None and not trained_on_vae:
        raise PretrainedFolderError(f"{wdir / CONFIG_NAME}: these weights are for GIC's own "
                                    f"autoencoder, not the VAE {comp.path}")
    missing = [s for s in ("ae", *stages) if s not in cfg.get("stages", [])]
    if missing:
        raise PretrainedFolderError(f"{wdir / WEIGHTS_NAME}: stage(s) {', '.join(missing)} "
                                    "not trained (python -m diffstream.training gic --stage "
                                    f"{missing[0]})")
    if comp is not None:
        rec = cfg.get("vae", {})
        if rec.get("config_sha256_16") not in (None, config_fingerprint(comp)):
            raise PretrainedFolderError(f"{wdir / CONFIG_NAME}: trained on another VAE "
                                        f"architecture ({rec.get('source')}) than {comp.path}")


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@register_codec("gic")
class GicCodec(_LatentCodec):
    """GIC: Algorithm 1 (reverse network, ``steps`` Euler steps, ``beta`` stochasticity)."""

    steps_default: ClassVar[int] = 2

    def __init__(self, steps: int | None = None, **options: Any) -> None:
        super().__init__(steps=steps, **options)
        if self.steps < 1:
            raise ValueError("gic needs steps >= 1 (steps 0 is the 'lic' codec)")
        if "reverse" not in self.model.cfg.stages:
            raise WeightsMissingError(
                "the GIC weights have no trained reverse network; run "
                "`python -m diffstream.training gic --stage reverse`")

    def noise_generator(self, payload: bytes) -> torch.Generator:
        """Decoder noise seeded from data both ends hold: crc32(payload) xor seed."""
        return torch.Generator().manual_seed((zlib.crc32(payload) ^ self.seed) & 0xFFFFFFFF)

    def refine(self, y_hat: torch.Tensor, q: float, payload: bytes) -> torch.Tensor:
        gen = self.noise_generator(payload) if self.sampler.beta > 0 else None
        return reverse_sample(self.model.reverse, y_hat, q, self.sampler, gen)


@register_codec("lic")
class LicCodec(_LatentCodec):
    """The same bitstream decoded by the synthesis transform alone (no reverse network)."""

    steps_default: ClassVar[int] = 0

    def __init__(self, **options: Any) -> None:
        options.pop("steps", None)
        super().__init__(steps=0, **options)
