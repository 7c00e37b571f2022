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
pass (~1 ms at 64x64). The search is the shared ``codecs.ratecontrol.fit_budget`` over the
knob 4095 - index, guided by a per-frame bpp(q) model: the ideal code length
-log2 P(k | mu, sigma, q) of this very frame, computed in closed form for any q (bisected,
not evaluated at all 4096 indices), times a calibration ratio (real / ideal size, carried
from frame to frame; 1.00-1.02), and corrected by the call's own probes. Predictions aim at
98.5 % of the budget; while one side is unknown the probe aims past the prediction by a
margin of 16, 32, ... indices. The search stops when a fitting payload is within 3 % (or
one 32-bit rANS word) of the budget, the bracket is closed, or after ``max_passes`` (8),
and sends the largest fitting payload among the probes. On 120 scikit-image frames with
budgets of 0.1-2 bpp (``benchmarks/bench_ratecontrol.py --codecs gic --frames 120``):
1.38 / 1.34 passes per call at 64x64 / 128x128 (1.47 / 1.36 with this module's own search
before), budget filled to 95.6 / 94.8 %, never over budget. The code length is not
monotone in q everywhere (at 32x32 it grows again towards q_hi); the search's downward
walk finds the topmost region that fits (a plain bisection of the model jumped to q_hi).

Floor. When even q_hi (the coarsest q) does not fit, the frame is skipped with a reason;
that decision always rests on a real pass at q_hi.

Decoding noise (beta > 0) is drawn from a CPU ``torch.Generator`` seeded with
crc32(payload) xor ``seed``, data both ends hold, so any process decodes the same image.
On the CPU the decoder runs on one thread, so the reconstruction is bit-identical across
processes (the simulator's workers run one thread anyway).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from diffstream.codecs.base import Capabilities, CodecError, Encoded, Image
from diffstream.codecs.classic.pillow import _check_image, _pink_noise
from diffstream.codecs.gic.bitstream import Q_LEVELS, Analysis, LatentCoder, one_thread, q_of_index
from diffstream.codecs.gic.model import WEIGHTS_DIR, GicModel, WeightsMissingError
from diffstream.codecs.gic.sampler import SamplerConfig, reverse_sample
from diffstream.codecs.ratecontrol import FunctionModel, fit_budget
from diffstream.codecs.registry import register_codec
from diffstream.pipeline.compute import ProfileCost
from diffstream.training.crops import to_tensor, to_uint8
from diffstream.transport.checksum import crc32

log = logging.getLogger(__name__)

MAX_PASSES = 8
TOLERANCE = 0.03  # stop when a fitting payload is within 3 % of the budget
SLACK_BITS = 32  # ... or less than one 32-bit rANS word under it
FIRST_AIM = 0.985  # predictions aim at 98.5 % of the budget
MARGIN_UNIT = 16  # q-index steps (of 4096) per step of the bracketing margin
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
    capabilities: ClassVar[Capabilities] = Capabilities()
    steps_default: ClassVar[int] = 2

    def __init__(self, steps: int | None = None, beta: float | None = None,
                 noise: str = "gaussian", q1: float | None = None,
                 weights: str | None = None, device: str | None = None, seed: int = 0,
                 max_passes: int = MAX_PASSES, tolerance: float = TOLERANCE,
                 vae: str | None = None, line10: str = "alpha_i") -> None:
        self.model, self.coder = load_bundle(weights, device, vae)
        cfg = self.model.cfg
        self.device = next(self.model.ae.parameters()).device
        self.multiple = 4 * self.model.factor
        self.steps = self.steps_default if steps is None else int(steps)
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        self.sampler = SamplerConfig(steps=max(self.steps, 1), q1=cfg.q1 if q1 is None else q1,
                                     beta=cfg.beta if beta is None else beta, noise=noise,
                                     q_min=cfg.q_lo, line10=line10)
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

    def _fit(self, a: Analysis, budget: int) -> tuple[bytes | None, int | None, int, int | None]:
        """(payload, q index, rANS passes, floor bits if probed); payload None = skip.

        ``codecs.ratecontrol.fit_budget`` over the knob ``top - index`` (sizes grow with
        it), guided by this frame's ideal code length times the calibration ratio carried
        from frame to frame. Real sizes are nearly but not exactly monotone in q (the
        rounding of the symbols and the rANS word granularity make them jitter between
        neighbouring indices); the search keeps every probe and sends the largest fitting
        payload it has seen.
        """
        top = Q_LEVELS - 1
        cl, ch = self.coder.q_lo, self.coder.q_hi

        def ideal(knob: int) -> float:
            return self.coder.estimate_bits(a, q_of_index(top - knob, cl, ch))

        model = FunctionModel(ideal, scale=self._ratio)
        found = fit_budget(lambda k: self.coder.encode(a, top - k), budget, 0, top, model,
                           max_probes=self.max_passes, aim=FIRST_AIM,
                           tolerance=self.tolerance, slack_bits=SLACK_BITS,
                           margin_unit=MARGIN_UNIT)
        self._ratio = float(np.median([bits / max(model.bits(k), 1.0)
                                       for k, bits in found.probed.items()]))
        if found.knob is None:
            return None, None, found.probes, found.floor_bits
        return found.payload, top - found.knob, found.probes, None

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


# cpu-2core, gic / lic (paper 003): 64x64 frames, one torch thread, Kodak crops with budgets
# cycling 0.15-1.5 bpp, rate control included: `python benchmarks/bench_gic.py` printed gic
# 8.42 / 20.37 ms and lic 8.34 / 7.07 ms (encode / decode). The gic decode is the default
# 2-step sampler (D_theta 5.9 ms per step); per_step_ms stays 0 because steps are also
# charged on encode, where no D_theta runs. These costs grow with frame size (about 4x at
# 128x128); use compute: measured or an inline profile for other sizes or step counts.
@register_codec("gic")
class GicCodec(_LatentCodec):
    """GIC: Algorithm 1 (reverse network, ``steps`` Euler steps, ``beta`` stochasticity)."""

    steps_default: ClassVar[int] = 2
    compute_costs: ClassVar[dict[str, ProfileCost]] = {
        "cpu-2core": ProfileCost(encode_ms=8.4, decode_ms=20.4),
    }

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
        return torch.Generator().manual_seed((crc32(payload) ^ self.seed) & 0xFFFFFFFF)

    def refine(self, y_hat: torch.Tensor, q: float, payload: bytes) -> torch.Tensor:
        gen = self.noise_generator(payload) if self.sampler.beta > 0 else None
        return reverse_sample(self.model.reverse, y_hat, q, self.sampler, gen)


@register_codec("lic")
class LicCodec(_LatentCodec):
    """The same bitstream decoded by the synthesis transform alone (no reverse network)."""

    steps_default: ClassVar[int] = 0
    compute_costs: ClassVar[dict[str, ProfileCost]] = {
        "cpu-2core": ProfileCost(encode_ms=8.3, decode_ms=7.1),  # measured with gic's
    }

    def __init__(self, **options: Any) -> None:
        options.pop("steps", None)
        super().__init__(steps=0, **options)
