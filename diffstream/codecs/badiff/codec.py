"""``badiff``: bandwidth-adaptive diffusion (paper 000) as a generative codec.

generate(request, budget):
1. H = budget / (H W) bpp, clipped to the trained range [0.2, 2].
2. The conditioned U-Net samples with THE full-step sampler (100 respaced ancestral steps,
   the request's noise, diffusers mid-block features hooked); after each step the stop
   policy's p_stop is evaluated and the run ends at the first p_stop >= 0.5 (§3.4); the
   step's predicted x_0 is the image.
3. The image is entropy-coded with H_phi's discretised-logistic probabilities (real rANS
   bytes, ``logistic_coder.py``) at the finest quantiser step whose payload fits the budget.
   delta_op(H) is the pixel step matched to LIC's fidelity at H (the hinge itself trains
   against LIC's rate, ``lic_rate.py``); needing a *coarser* step than delta_op(H) means
   the image costs this coder more than LIC's operating point, and the codec falls back to
   requantising coarser -- recorded in ``Encoded.reason`` and ``meta['fallback']``. If
   even the coarsest step does not fit, the frame is skipped with the reason (budget below
   the codec's floor).

decode(payload): the logistic decoder (two parallel checkerboard passes); bit-exact.
encode(image, budget): the same coder on a captured image (no generation).

``coder: lic`` (issue 16 item 2): steps 1-2 unchanged, then the generated image is coded by
the project's learned codec ``lic`` (its own rate control and rANS bytes, its decoder at the
receiver), as paper 000 measures bitrate with a real codec applied to the output (App. C,
E). Its payload is exactly LIC's: no extra header, and a malformed payload is LIC's
CodecError. ``coder: own`` is the discretised-logistic coder above (step 3).
docs/badiff.md says which is the default and why (``bench_badiff.py``'s figures).

On a latent diffusion model (``ldm: DIR`` with ``weights:`` a BADiff trained on it by
``python -m diffstream.training badiff --ldm DIR``; paper 000's LDM-200 setup): sampling
and the stop policy run in the latent, the stopped step's latent x0_hat is decoded by the
VAE, and that image is coded by the same pixel-domain coder (so the receiver needs no
VAE: the payload decodes to pixels). ``steps: 200`` gives the paper's LDM-200 sampler.
``device`` (default: CUDA when present) is where the U-Net (and VAE) run; the sampler's
noise is drawn on the CPU in a fixed order, and the coder always runs on the CPU.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from diffstream.backbones.ddpm import DDPMWeightsError
from diffstream.codecs.badiff.entropy_predictor import DELTAS
from diffstream.codecs.badiff.logistic_coder import LogisticCoder
from diffstream.codecs.badiff.model import BADiff, target_bpp
from diffstream.codecs.badiff.samplers import (
    N_FULL,
    _check_request,
    ddpm_sample,
    default_device,
    one_thread,
    reference_image,
)
from diffstream.codecs.badiff.stop_policy import mid_features, should_stop, time_embedding
from diffstream.codecs.base import Capabilities, CodecError, Encoded, GenerationRequest, Image
from diffstream.codecs.classic.pillow import _check_image, _pink_noise
from diffstream.codecs.ratecontrol import TableModel
from diffstream.codecs.registry import create_codec, register_codec
from diffstream.pipeline.compute import ProfileCost
from diffstream.training.crops import to_uint8

log = logging.getLogger(__name__)

PRIOR_INDEXES = (0, 6, 12, 20, 28, 36, 47)  # delta indexes of the first frame's rate model
CODERS = ("own", "lic")  # what codes the generated image (see the module notes)
DEFAULT_CODER = "lic"  # the winner of bench_badiff.py (docs/badiff.md)
# cpu-2core, coder lic: the per-call costs measured for ``cascade-lic`` at 32x32 (LIC ~10 ms
# with its rate control, 4.5 ms decode; baselines.py), on top of BADiff's 8.5 ms per step.
LIC_COSTS = ProfileCost(encode_ms=10.0, decode_ms=4.5, per_step_ms=8.5, decode_per_step_ms=0.0)

_CACHE: dict[tuple[str, str, str, str], tuple[BADiff, LogisticCoder]] = {}
_LOCK = threading.Lock()


def load_badiff(weights: str | Path | None = None, name: str = "badiff",
                ldm: str | Path | None = None, device: str | None = None
                ) -> tuple[BADiff, LogisticCoder]:
    """The BADiff model and its coder, loaded once per process."""
    if ldm is not None and weights is None:
        raise DDPMWeightsError(f"badiff with ldm: {ldm} needs the BADiff weights trained on "
                               f"it: run `python -m diffstream.training badiff --ldm {ldm} "
                               "--out OUT` and pass codec_options.weights: OUT")
    dev = device or default_device(ldm)
    key = (str(weights or ""), name, str(Path(ldm).resolve()) if ldm else "", dev)
    with _LOCK:
        if key not in _CACHE:
            model = BADiff.load(weights, name, ldm=ldm, device=dev)
            _CACHE[key] = (model, LogisticCoder(model.predictor))
        return _CACHE[key]


@register_codec("badiff")
class BADiffCodec:
    name: ClassVar[str]
    capabilities: ClassVar[Capabilities] = Capabilities(generative=True)
    # cpu-2core (paper 000), for BADiff and its baselines (``baselines.py``): 32x32, one
    # torch thread, `python benchmarks/bench_badiff.py --seeds 6`: U-Net 8.1 ms per step
    # (+0.4 ms for BADiff's stop policy), all at the sender; the receiver only decodes the
    # payload (BADiff's logistic coder 16 ms, LIC 4.5 ms, JPEG/WebP 0.2 ms). Steps are U-Net
    # calls: ~50 for BADiff's adaptive stop, 100 for the full sampler, 20 DPM-Solver, 51
    # PNDM; per-call costs hold the coding (and Early-Stop's LIC probes).
    compute_costs: ClassVar[dict[str, ProfileCost]] = {
        "cpu-2core": ProfileCost(encode_ms=125.0, decode_ms=16.0, per_step_ms=8.5,
                                 decode_per_step_ms=0.0),
    }

    def __init__(self, weights: str | None = None, model: str = "badiff",
                 adaptive_stop: bool = True, threshold: float = 0.5,
                 steps: int = N_FULL, ldm: str | None = None, device: str | None = None,
                 coder: str = DEFAULT_CODER) -> None:
        if coder not in CODERS:
            raise ValueError(f"coder must be one of {', '.join(CODERS)}, got {coder!r}")
        self.coder_kind = coder
        self.ldm = ldm
        self.model, self.coder = load_badiff(weights, model, ldm, device)
        self.adaptive_stop = bool(adaptive_stop)
        self.threshold = float(threshold)
        self.steps = int(steps)
        self._floors: dict[tuple[int, int], int] = {}
        # (h, w) -> rate model over the coder's knob (last - delta index), carried across
        # frames like the Pillow codecs' (codecs.ratecontrol.TableModel)
        self._rate: dict[tuple[int, int], TableModel] = {}
        # coder lic: the registered ``lic`` codec (shared weights cache), on the CPU like
        # the own coder, so sender and receiver decode the same bytes to the same pixels
        self._lic = create_codec("lic", device="cpu") if coder == "lic" else None

    @classmethod
    def costs_for(cls, options: dict[str, Any]) -> dict[str, ProfileCost]:
        """The declared costs; ``coder: lic`` codes and decodes with LIC's costs."""
        if options.get("coder", DEFAULT_CODER) == "lic":
            return {"cpu-2core": LIC_COSTS}
        return dict(cls.compute_costs)

    @property
    def device(self) -> torch.device:
        """Where the U-Net runs (the model's device)."""
        return self.model.ddpm.alpha_bar.device

    # --- generation ---------------------------------------------------------------------
    def sample(self, request: GenerationRequest, shape: tuple[int, int], h: float
               ) -> tuple[np.ndarray, int, float]:
        """(image, U-Net calls, last p_stop) for entropy budget h (bpp)."""
        image, calls, p, _ = self._sample(request, shape, h, run_full=False)
        return image, calls, p

    def sample_with_full(self, request: GenerationRequest, shape: tuple[int, int], h: float
                         ) -> tuple[np.ndarray, int, float, np.ndarray]:
        """``sample``'s (image, calls, p_stop) plus the same run's uncoded full-step output
        (same seed and H; what paper 000's Eq. 12 measures LPIPS against), from one pass:
        the stop is recorded and sampling continues. The stopped image is the one
        ``sample`` returns, since step i's noise is drawn only after step i."""
        return self._sample(request, shape, h, run_full=True)

    @torch.no_grad()
    def _sample(self, request: GenerationRequest, shape: tuple[int, int], h: float,
                run_full: bool) -> tuple[np.ndarray, int, float, np.ndarray]:
        m = self.model
        cond = m.cond(h)
        last_p = 0.0
        stopped: list[tuple[np.ndarray, int, float]] = []
        with one_thread(), mid_features(m.unet) as feats:
            def stop(i: int, t: int, x: torch.Tensor, x0: torch.Tensor) -> bool:
                nonlocal last_p
                if not self.adaptive_stop or feats.value is None or stopped:
                    return False
                temb = time_embedding(m.unet, torch.tensor([t - 1], device=self.device))
                last_p = float(m.policy.p_stop(feats.value, temb, cond)[0])
                if not should_stop(last_p, self.threshold):
                    return False
                if not run_full:
                    return True
                stopped.append((to_uint8(m.ddpm.to_image(x0))[0], i + 1, last_p))
                return False

            x0, calls = ddpm_sample(m.ddpm, request.seed, shape, self.steps, cond, stop)
            full = to_uint8(m.ddpm.to_image(x0))[0]  # the VAE decoder on a latent model
        if stopped:
            return (*stopped[0], full)
        return full, calls, last_p, full

    def _check_shape(self, request: GenerationRequest, shape: tuple[int, int]
                     ) -> tuple[int, int]:
        h, w = _check_request(request, shape)
        mult = int(getattr(self.model.ddpm, "multiple", 4))
        if h % mult or w % mult:
            raise ValueError(f"this latent model needs frame sides that are multiples of "
                             f"{mult} (autoencoder x U-Net downsampling), got {w}x{h}")
        if self._lic is not None and (h % self._lic.multiple or w % self._lic.multiple):
            raise ValueError(f"badiff with coder lic needs frame sides that are multiples of "
                             f"{self._lic.multiple} (LIC's downsampling), got {w}x{h}")
        return h, w

    def generate(self, request: GenerationRequest, budget_bits: int,
                 shape: tuple[int, int]) -> Encoded:
        h, w = self._check_shape(request, shape)
        target = target_bpp(int(budget_bits), (h, w))
        image, calls, p = self.sample(request, (h, w), target)
        return self.code_generated(image, int(budget_bits), target, calls, p)

    def code_generated(self, image: np.ndarray, budget: int, target: float, calls: int,
                       p: float) -> Encoded:
        """Step 3 of ``generate`` on a sampled image: the chosen coder at the budget, with
        the sampling record (``steps``, ``meta``) and, for the own coder, the requantise
        fallback's note."""
        d_op = float(self.model.delta_op(target))
        enc = self._code(image, budget)
        enc.steps = calls
        enc.meta.update({"H": round(target, 4), "stop_step": calls, "p_stop": round(p, 3)})
        if self._lic is not None:
            enc.meta["coder"] = "lic"
            return enc
        enc.meta["delta_op"] = round(d_op, 2)
        if not enc.skipped and DELTAS[enc.meta["delta_index"]] > d_op * 1.0001:
            enc.meta["fallback"] = "requantise"
            enc.reason = (f"fallback: generated image at H={target:.3f} bpp did not fit "
                          f"{budget} bits at the LIC-matched step delta_op={d_op:.1f}; "
                          f"requantised at delta={DELTAS[enc.meta['delta_index']]:.1f} "
                          f"({len(enc.payload) * 8} bits)")
            log.info(enc.reason)
        return enc

    def _code(self, image: np.ndarray, budget: int) -> Encoded:
        if self._lic is not None:
            return self._lic.encode(image, budget)
        a = self.coder.analyse(image)
        shape = (int(image.shape[0]), int(image.shape[1]))
        model = self._rate.get(shape) or TableModel(self._prior(shape))
        payload, _, di, found = self.coder.fit(a, budget, model=model)
        self._rate[shape] = model.updated(found.probed)
        passes = found.probes
        if payload is None:
            reason = (f"budget {budget} bits below the coarsest step's payload "
                      f"(delta={DELTAS[-1]:.0f}) for this {image.shape[1]}x{image.shape[0]} "
                      f"image: skipped")
            log.info(reason)
            return Encoded(payload=b"", meta={"passes": passes, "delta_index": di},
                           skipped=True, reason=reason)
        return Encoded(payload=payload, meta={"delta_index": di, "passes": passes})

    def reference(self, request: GenerationRequest, shape: tuple[int, int]) -> Image:
        """The request's full-step sample of the plain backbone: the shipped pixel DDPM, or
        the plain (not fine-tuned) latent model decoded by its VAE."""
        if self.ldm is not None:
            self._check_shape(request, shape)
        return reference_image(request, shape, self.ldm, self.steps, str(self.device))

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        """The scenario precheck's hook: an ``ldm`` folder and the BADiff weights trained on
        it, from their files (no weights loaded); ConfigError naming the path."""
        import json

        from diffstream.backbones.pretrained import PretrainedFolderError, inspect_model
        from diffstream.codecs.badiff.model import BADiffConfig, check_backbone_folder

        ldm, weights = options.get("ldm"), options.get("weights")
        if options.get("coder", DEFAULT_CODER) not in CODERS:
            raise ValueError(f"coder must be one of {', '.join(CODERS)}, got "
                             f"{options.get('coder')!r}")
        if ldm is not None:
            m = inspect_model(ldm)
            if m.vae is None or m.conditional:
                raise PretrainedFolderError(f"{m.root}: badiff's ldm must be an unconditional "
                                            "latent model (unet/ with a UNet2DModel, vae/ or "
                                            "vqvae/, scheduler/)")
        if weights is None:
            if ldm is not None:
                raise PretrainedFolderError(
                    f"ldm {ldm} needs codec_options.weights: the BADiff weights trained on it "
                    f"(`python -m diffstream.training badiff --ldm {ldm} --out OUT`)")
            return
        name = str(options.get("model", "badiff"))
        cfg_path = Path(weights) / f"{name}.json"
        for p in (cfg_path, Path(weights) / f"{name}.safetensors"):
            if not p.is_file():
                raise PretrainedFolderError(f"{p}: missing (BADiff weights are NAME.json + "
                                            "NAME.safetensors, NAME = codec_options.model)")
        try:
            cfg = BADiffConfig.from_json(json.loads(cfg_path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise PretrainedFolderError(f"{cfg_path}: unreadable ({exc})") from None
        check_backbone_folder(cfg, ldm, cfg_path)

    # --- plain codec ----------------------------------------------------------------------
    def encode(self, image: Image, budget_bits: int) -> Encoded:
        return self._code(_check_image(image), int(budget_bits))

    def decode(self, payload: bytes, meta: dict[str, Any], shape: tuple[int, int]) -> Image:
        if not payload:
            raise CodecError("empty badiff payload (a skipped frame has nothing to decode)")
        if self._lic is not None:  # LIC's decoder: CodecError on anything malformed
            return self._lic.decode(payload, meta, shape)
        try:
            return self.coder.decode(payload, shape)
        except CodecError:
            raise
        except Exception as exc:  # compressai / torch on hostile input: always "corrupt"
            raise CodecError(f"corrupt badiff payload ({len(payload)} bytes): "
                             f"{type(exc).__name__}: {exc}") from exc

    def min_bits(self, shape: tuple[int, int]) -> int:
        """Payload bits of a pink-noise frame at the coarsest step (the typical floor)."""
        if self._lic is not None:
            return self._lic.min_bits(shape)
        key = (int(shape[0]), int(shape[1]))
        if key not in self._floors:
            a = self.coder.analyse(_pink_noise(*key))
            self._floors[key] = 8 * len(self.coder.encode(a, len(DELTAS) - 1)[0])
        return self._floors[key]

    def _prior(self, shape: tuple[int, int]) -> dict[int, float]:
        """The first frame's rate model: a pink-noise frame's real sizes at a few steps
        (knob = last - delta index), once per shape; later frames rescale it."""
        last = len(DELTAS) - 1
        a = self.coder.analyse(_pink_noise(*shape))
        return {last - di: float(8 * len(self.coder.encode(a, di)[0]))
                for di in PRIOR_INDEXES}
