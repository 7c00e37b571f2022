"""DiffC (paper 002; Theis et al. 2022): lossy compression with a pixel DDPM by
reverse-channel coding, registered as ``diffc``.

Encoder (Algorithm 1 with the calibrated schedule T = s_0 > s_1 > ... ): x_T is drawn from
the shared generator (0 bits, see deviations); step k sends
x_{s_k+1} ~ q(x_{s_k+1} | x_{s_k}, x_0) using p(x_{s_k+1} | x_{s_k}) by PFR, split into
``chunks(k)`` random groups of dimensions whose KL is near the chunk target, each index
rANS-coded. It stops at the last step whose payload fits the budget (a real size check).
Decoder: replays the same steps from the indices (identical float ops on the same device
and thread count, so x_t is bit-identical), then denoises x_t: DDIM probability flow
(DiffC-F, default), ancestral (DiffC-A) or one-step x0_hat (DiffC-MSE).

Progressive: the payload prefix that holds steps 1..j decodes to x_{s_j}
(``bitstream.py``). ``prefix_steps`` says how many whole steps a prefix holds.

Options: chunk_bits (12; calibrated: 8, 10, 12, 14, 16), chunking ("table", the paper's
hard-coded counts, or "adaptive": one chunk-count symbol per step), denoiser ("flow",
"ancestral", "mse"), ddim_steps (50 over the full range), weights (folder with
ddpm.safetensors) or diffusers (a local diffusers DDPM folder), calibration (JSON),
device, seed, block / backend (PFR), max_steps. Both ends must use the same options.

Deviations from the paper (all listed in docs/diffc.md):
- x_T comes from the shared generator as N(0, I) instead of being sent as
  x_T ~ q(x_T | x_0) with RCC; the KL that ignores is abar_T |x_0|^2 / 2 ~
  4e-5 |x_0|^2 / 2 nats (< 0.05 bits for a 32x32 frame).
- PFR is bounded to K = 2^chunk_bits candidates (like the paper's implementation; Alg. 4
  has no bound) with chunk_bits = 12 by default on the CPU instead of 16.
- The KL table is stored per dimension and scaled to the frame size; the schedule was
  optimised on 32x32 calibration crops.
- Chunks are random strided groups of a per-step shared permutation; the index code
  (bucket + raw bits in one rANS stream) is ours; x0_hat is clipped to [-1, 1].
"""

from __future__ import annotations

import logging
import math
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from diffstream.backbones.ddpm import load_cached
from diffstream.backbones.latent import check_model_folder, load_backbone
from diffstream.backbones.pretrained import PretrainedFolderError
from diffstream.codecs.base import Capabilities, CodecError, Encoded, Image
from diffstream.codecs.classic.pillow import _check_image, _pink_noise
from diffstream.codecs.diffc import pfr, prng
from diffstream.codecs.diffc.bitstream import HEADER_BYTES, Header, Step, StepCoder
from diffstream.codecs.diffc.diffusion import DENOISERS, denoise, predict_x0, step_coefs
from diffstream.codecs.diffc.schedule import CALIBRATION_FILE, RATIO_SYMBOLS, Calibration
from diffstream.codecs.gic.bitstream import one_thread
from diffstream.codecs.registry import register_codec
from diffstream.pipeline.compute import ProfileCost
from diffstream.training.crops import to_tensor, to_uint8

log = logging.getLogger(__name__)

MULTIPLE = 8
CHUNKINGS = ("table", "adaptive")
MAX_STEPS = 255  # one header byte
MODEL_CALIBRATION = "diffc_calibration.json"  # a model folder's own calibration
EMPTY_STREAM_BYTES = 8  # compressai's rANS flush: the smallest stream
PURPOSE_XT, PURPOSE_PERM, PURPOSE_CAND, PURPOSE_NOISE = 0x5854, 0x5045, 0x4341, 0x4E4F

_CALS: dict[str, Calibration] = {}
_LOCK = threading.Lock()


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(weights: str | Path | None = None, diffusers: str | Path | None = None,
               device: str | None = None, model: str | Path | None = None,
               null_embedding: str | Path | None = None) -> Any:
    """The diffusion model on ``device`` (default: CUDA when present), shared per process:
    the shipped pixel DDPM, ``weights`` (ddpm.safetensors), ``diffusers`` (a pixel DDPM
    folder) or ``model`` (any diffusers pipeline folder: a latent one with vae/ or vqvae/
    becomes a ``LatentDiffusion``, see diffstream/backbones/latent.py)."""
    given = [k for k, v in (("weights", weights), ("diffusers", diffusers), ("model", model))
             if v is not None]
    if len(given) > 1:
        raise ValueError(f"diffc: give one of weights, diffusers, model (got {given})")
    if model is not None:
        return load_backbone(model, null_embedding, device or default_device())
    if null_embedding is not None:
        raise ValueError("diffc: null_embedding goes with model: DIR (a conditional U-Net)")
    return load_cached(weights, diffusers, device or default_device())


def default_calibration_path(model: str | Path | None) -> str | None:
    own = Path(model) / MODEL_CALIBRATION if model is not None else None
    return str(own) if own is not None and own.is_file() else None


def default_calibration(model: str | Path | None) -> str | None:
    """A model folder's own calibration (``DIR/diffc_calibration.json``, written by
    ``python -m diffstream.codecs.diffc.calibrate --model DIR``) when it has one; else the
    shipped one (calibrated on the shipped pixel DDPM: valid for any T = 1000 model, but
    its KL table plans the wrong chunk counts for another model, so the rate suffers)."""
    if model is None:
        return None
    own = Path(model) / MODEL_CALIBRATION
    if own.is_file():
        return str(own)
    log.warning("diffc: %s has no %s; using the shipped pixel-DDPM calibration (run `python "
                "-m diffstream.codecs.diffc.calibrate --model %s` for this model's schedule "
                "and KL table)", model, MODEL_CALIBRATION, model)
    return None


def load_calibration(path: str | Path | None = None) -> Calibration:
    key = str(Path(path).resolve()) if path is not None else ""
    with _LOCK:
        if key not in _CALS:
            _CALS[key] = Calibration.load(path)
        return _CALS[key]


def check_frame_shape(h: int, w: int, error: type[Exception], multiple: int = MULTIPLE
                      ) -> None:
    """``multiple``: 8 for the pixel DDPM (the header codes H/8, W/8); a latent model needs
    lcm(8, autoencoder factor x 2 ** U-Net downsamplings)."""
    if h < multiple or w < multiple or h % multiple or w % multiple or max(h, w) > 2048:
        raise error(f"DiffC needs frame sides that are multiples of {multiple} up to 2048 "
                    f"(header in units of 8 px; autoencoder and U-Net downsampling), "
                    f"got {w}x{h}")


@dataclass
class StepRecord:
    """What one encoder step did (for benchmarks and logs)."""

    t: int  # the step's target time s_k+1
    chunks: int
    ratio: int | None  # adaptive chunking: the step's chunk-count symbol
    kl_bits: float  # the real KL(q || p) of this step: the ideal RCC cost
    payload_bytes: int  # size of the whole payload holding steps 1..k+1


@dataclass
class EncodeStats:
    steps: list[StepRecord] = field(default_factory=list)
    indices: list[list[int]] = field(default_factory=list)
    pfr_seconds: float = 0.0
    unet_seconds: float = 0.0
    x_t: torch.Tensor | None = None  # the encoder's last kept x_t (what the decoder rebuilds)


@register_codec("diffc")
class DiffcCodec:
    """DiffC: reverse-channel coding of a DDPM trajectory; progressive in steps."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities] = Capabilities(progressive=True)
    # cpu-2core (paper 002): 32x32 frames, one torch thread, `python benchmarks/bench_diffc.py`:
    # encode 15.6 ms per step (U-Net 9.2 + fused PFR 5.6) plus the step it computes and
    # discards when the next one no longer fits; decode 10.4 ms per step plus the DDIM flow
    # denoiser (9 ms per DDIM step, ceil(50 t / 1000) of them). One per-step cost serves both
    # ends, so per_step_ms is their mean and the per-call costs absorb the rest: 170 / 160 ms
    # (encode / decode) at 10 steps, 365 / 355 ms at all 25.
    compute_costs: ClassVar[dict[str, ProfileCost]] = {
        "cpu-2core": ProfileCost(encode_ms=40.0, decode_ms=30.0, per_step_ms=13.0),
    }

    def __init__(self, chunk_bits: int = 12, denoiser: str = "flow", ddim_steps: int = 50,
                 weights: str | None = None, diffusers: str | None = None,
                 calibration: str | None = None, device: str | None = None, seed: int = 0,
                 block: int = pfr.DEFAULT_BLOCK, backend: str = "auto",
                 max_steps: int | None = None, chunking: str = "table",
                 model: str | None = None, null_embedding: str | None = None) -> None:
        if denoiser not in DENOISERS:
            raise ValueError(f"denoiser must be one of {DENOISERS}, got {denoiser!r}")
        if chunking not in CHUNKINGS:
            raise ValueError(f"chunking must be one of {CHUNKINGS}, got {chunking!r}")
        self.adaptive = chunking == "adaptive"
        self.model = load_model(weights, diffusers, device, model, null_embedding)
        self.device = self.model.alpha_bar.device
        self.multiple = math.lcm(MULTIPLE, int(getattr(self.model, "multiple", MULTIPLE)))
        self.cal = load_calibration(calibration if calibration is not None
                                    else default_calibration(model))
        if self.cal.T != self.model.T:
            raise ValueError(f"the DiffC calibration is for T={self.cal.T} but the model has "
                             f"T={self.model.T}; calibrate it: python -m "
                             "diffstream.codecs.diffc.calibrate --diffusers FOLDER --out FILE")
        self.chunk_bits = int(chunk_bits)
        self.chunk = self.cal.chunk_model(self.chunk_bits)
        self.coder = StepCoder(self.chunk_bits, self.chunk.counts(self.adaptive),
                               self.cal.ratio_counts if self.adaptive else None)
        self.denoiser = denoiser
        self.ddim_steps = int(ddim_steps)
        self.seed = int(seed)
        self.block = int(block)
        self.backend = backend
        cap = min(self.cal.steps, MAX_STEPS)
        self.max_steps = cap if max_steps is None else max(1, min(int(max_steps), cap))
        self._floors: dict[tuple[int, int], int] = {}
        self._perms: dict[tuple[int, int], torch.Tensor] = {}
        self.last_stats = EncodeStats()

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        """The scenario precheck's hook: the files an arm names, checked without loading
        weights (a missing unet/, a wrong config, a missing null embedding, a calibration
        for another T raise ``ConfigError`` naming the path and the part)."""
        model, null = options.get("model"), options.get("null_embedding")
        if model is None:
            if null is not None:
                raise PretrainedFolderError("null_embedding goes with model: DIR (the folder "
                                            "of a conditional U-Net)")
            return
        m = check_model_folder(model, null)
        cal = options.get("calibration") or default_calibration_path(model)
        cal_path = Path(cal) if cal is not None else CALIBRATION_FILE
        if not cal_path.is_file():
            raise PretrainedFolderError(f"{cal_path}: no such calibration file")
        T = int(m.scheduler_config["num_train_timesteps"])
        cal_T = Calibration.load(cal_path).T
        if cal_T != T:
            raise PretrainedFolderError(
                f"{cal_path}: calibrated for T={cal_T}, but {m.scheduler_path} has "
                f"num_train_timesteps={T}; run `python -m diffstream.codecs.diffc.calibrate "
                f"--model {model}`")

    # ------------------------------------------------------------------ shared protocol
    @contextmanager
    def _exec(self) -> Iterator[None]:
        """One torch thread on the CPU (bit-identical results in every process)."""
        with torch.no_grad(), (one_thread() if self.device.type == "cpu" else nullcontext()):
            yield

    def _key(self, purpose: int, *parts: int) -> int:
        return prng.derive_key(self.seed, purpose, self.cal.id, *parts)

    def x_T(self, h: int, w: int) -> torch.Tensor:
        """x_T ~ N(0, I) in the diffusion space: the image (pixel DDPM) or the latent."""
        return prng.vector(self._key(PURPOSE_XT, h, w), (1, *self.model.latent_shape(h, w)),
                           self.device)

    def dims(self, h: int, w: int) -> int:
        """Values per frame in the diffusion space (3 H W in pixels, C h w in a latent)."""
        c, lh, lw = self.model.latent_shape(h, w)
        return c * lh * lw

    def chunks_of(self, dims: int) -> Any:
        """(step, chunk-count symbol) -> chunk count, for a frame of ``dims`` values."""
        return lambda k, ratio: self.cal.chunks(k, dims, self.chunk_bits, ratio)

    def max_chunks(self, dims: int, steps: int) -> list[int]:
        top = RATIO_SYMBOLS - 1 if self.adaptive else None
        return [self.cal.chunks(k, dims, self.chunk_bits, top) for k in range(steps)]

    def chunk_groups(self, step: int, dims: int, n: int) -> list[torch.Tensor]:
        """Dimension indices of the ``n`` PFR chunks of ``step``: a shared random
        permutation cut into strided groups (random, near-equal sizes, so near-equal KLs)."""
        if (step, dims) not in self._perms:
            self._perms[(step, dims)] = prng.permutation(self._key(PURPOSE_PERM, step, dims),
                                                         dims).to(self.device)
        perm = self._perms[(step, dims)]
        return [perm[c::n] for c in range(n)]

    def _z(self, step: int, dims: int, indices: list[int]) -> torch.Tensor:
        z = torch.empty(dims, dtype=torch.float32, device=self.device)
        groups = self.chunk_groups(step, dims, len(indices))
        for c, (idx, n) in enumerate(zip(groups, indices, strict=True)):
            z[idx] = pfr.candidate(self._key(PURPOSE_CAND, step, c), n, idx.numel(),
                                   self.device)
        return z

    def _advance(self, x: torch.Tensor, x0_hat: torch.Tensor, step: int,
                 indices: list[int]) -> torch.Tensor:
        """x_{s_k+1} = mu_p + std z: the one update both ends run (same ops, same order)."""
        c = step_coefs(self.model.alpha_bar, self.cal.schedule[step],
                       self.cal.schedule[step + 1])
        z = self._z(step, x.numel(), indices).view_as(x)
        return (c.c0 * x0_hat + c.ct * x) + c.std * z

    # ------------------------------------------------------------------ encoder
    def encode(self, image: Image, budget_bits: int) -> Encoded:
        arr = _check_image(image)
        h, w = arr.shape[:2]
        check_frame_shape(h, w, ValueError, self.multiple)
        budget = int(budget_bits)
        floor = 8 * (HEADER_BYTES + EMPTY_STREAM_BYTES)
        stats = EncodeStats()
        self.last_stats = stats
        if budget < floor:
            return self._skip(budget, floor, h, w)
        payload, kept = self._encode(arr, budget, stats)
        if kept == 0:
            need = stats.steps[0].payload_bytes * 8 if stats.steps else floor
            return self._skip(budget, need, h, w)
        t = self.cal.schedule[kept]
        return Encoded(payload=payload, meta={"steps": kept, "t": t, "bytes": len(payload)},
                       steps=kept)

    def _skip(self, budget: int, need: int, h: int, w: int) -> Encoded:
        reason = (f"budget {budget} bits < {need} bits of the first DiffC step "
                  f"(diffc {w}x{h}, chunk_bits {self.chunk_bits})")
        log.info("skipping frame: %s", reason)
        return Encoded(payload=b"", meta={"steps": 0}, skipped=True, reason=reason, steps=0)

    def _encode(self, arr: np.ndarray, budget: int, stats: EncodeStats
                ) -> tuple[bytes, int]:
        import time

        h, w = arr.shape[:2]
        dims = self.dims(h, w)
        payload, kept = b"", 0
        done: list[Step] = []
        with self._exec():
            x0 = self.model.to_latent(to_tensor(arr).to(self.device))
            x = self.x_T(h, w)
            for k in range(self.max_steps):
                t0 = time.perf_counter()
                x0_hat = predict_x0(self.model, x, self.cal.schedule[k])
                t1 = time.perf_counter()
                c = step_coefs(self.model.alpha_bar, self.cal.schedule[k],
                               self.cal.schedule[k + 1])
                m = ((c.c0 / c.std) * (x0 - x0_hat)).reshape(-1).double()
                kl_bits = float((m * m).sum()) / (2.0 * math.log(2.0))
                m_f = m.float()  # stays on the model's device: PFR searches there
                ratio = (self.cal.choose_ratio(k, dims, self.chunk_bits, kl_bits)
                         if self.adaptive else None)
                groups = self.chunk_groups(k, dims, self.chunks_of(dims)(k, ratio))
                idx = [pfr.select(m_f[g], self._key(PURPOSE_CAND, k, ci),
                                  self.chunk_bits, self.block, self.backend)
                       for ci, g in enumerate(groups)]
                t2 = time.perf_counter()
                stats.unet_seconds += t1 - t0
                stats.pfr_seconds += t2 - t1
                body = self.coder.encode([*done, (ratio, idx)])
                head = Header(self.adaptive, self.chunk_bits, self.cal.id, k + 1, h, w).pack()
                stats.steps.append(StepRecord(self.cal.schedule[k + 1], len(groups), ratio,
                                              kl_bits, HEADER_BYTES + len(body)))
                stats.indices.append(idx)
                if 8 * (HEADER_BYTES + len(body)) > budget:
                    break
                x = self._advance(x, x0_hat, k, idx)
                done.append((ratio, idx))
                payload, kept = head + body, k + 1
            stats.x_t = x
        return payload, kept

    # ------------------------------------------------------------------ decoder
    def _parse(self, payload: bytes, meta: dict[str, Any] | None, shape: tuple[int, int] | None
               ) -> tuple[Header, list[Step]]:
        """Header and the per-step index lists of every whole step the payload holds."""
        payload = bytes(payload)
        head = Header.unpack(payload)
        if head.adaptive != self.adaptive:
            mode = "adaptive" if head.adaptive else "table"
            raise CodecError(f"DiffC payload uses chunking {mode!r}, this decoder does not: "
                             "configure both ends alike")
        if head.chunk_bits != self.chunk_bits:
            raise CodecError(f"DiffC payload uses chunk_bits {head.chunk_bits}, this decoder "
                             f"{self.chunk_bits}: configure both ends alike")
        if head.schedule_id != self.cal.id:
            raise CodecError(f"DiffC payload uses schedule {head.schedule_id}, this decoder "
                             f"has {self.cal.id}: the two ends have different calibrations")
        if head.steps > min(self.cal.steps, MAX_STEPS):
            raise CodecError(f"DiffC header says {head.steps} steps; the schedule has "
                             f"{self.cal.steps}: corrupt")
        if shape is not None and (head.height, head.width) != (int(shape[0]), int(shape[1])):
            raise CodecError(f"DiffC payload is for {head.width}x{head.height}, expected "
                             f"{int(shape[1])}x{int(shape[0])}")
        dims = self.dims(head.height, head.width)
        stream = payload[HEADER_BYTES:]
        full_len = (meta or {}).get("bytes")
        if isinstance(full_len, int) and len(payload) > full_len:
            raise CodecError(f"DiffC payload of {len(payload)} bytes is longer than the "
                             f"{full_len} bytes its header meta announces: corrupt")
        args = (stream, head.steps, self.chunks_of(dims), self.max_chunks(dims, head.steps))
        if isinstance(full_len, int) and len(payload) == full_len:
            return head, self.coder.decode_full(*args)
        return head, self.coder.decode_prefix(*args)

    def prefix_steps(self, payload: bytes, meta: dict[str, Any]) -> int:
        """Whole steps in ``payload`` (full or a prefix); 0 when not even one step arrived
        (then ``decode`` raises). CodecError on a corrupt header or full payload."""
        if len(payload) < HEADER_BYTES:
            return 0
        return len(self._parse(payload, meta, None)[1])

    def trajectory(self, payload: bytes, meta: dict[str, Any] | None,
                   shape: tuple[int, int]) -> list[tuple[int, torch.Tensor]]:
        """(t, x_t) after every whole step of the payload (what the decoder reconstructs)."""
        try:
            h, w = (int(v) for v in shape)
        except (TypeError, ValueError):
            raise CodecError(f"shape must be (H, W), got {shape!r}") from None
        check_frame_shape(h, w, CodecError, self.multiple)
        head, steps = self._parse(payload, meta, (h, w))
        if not steps:
            raise CodecError(f"DiffC prefix of {len(payload)} bytes holds no complete step "
                             "(nothing to decode)")
        out = []
        with self._exec():
            x = self.x_T(h, w)
            for k, (_, idx) in enumerate(steps):
                x0_hat = predict_x0(self.model, x, self.cal.schedule[k])
                x = self._advance(x, x0_hat, k, idx)
                out.append((self.cal.schedule[k + 1], x))
        return out

    def denoise(self, x_t: torch.Tensor, t: int, noise_key: int = 0) -> Image:
        with self._exec():
            x0 = denoise(self.model, x_t, t, self.denoiser, self.ddim_steps, noise_key)
            img = self.model.to_image(x0)  # the VAE decoder for a latent model
        return to_uint8(img)[0]

    def decode(self, payload: bytes, meta: dict[str, Any], shape: tuple[int, int]) -> Image:
        traj = self.trajectory(payload, meta, shape)
        t, x_t = traj[-1]
        key = self._key(PURPOSE_NOISE, zlib.crc32(bytes(payload)))
        img = self.denoise(x_t, t, key)
        if img.shape != (int(shape[0]), int(shape[1]), 3):
            raise CodecError(f"diffc decoded to {img.shape}, expected {tuple(shape)}")
        return img

    def payload_for_steps(self, payload: bytes, meta: dict[str, Any], steps: int) -> bytes:
        """The payload ``encode`` would have sent with only the first ``steps`` steps
        (re-encoded indices; for benchmarks that score every stopping step)."""
        head, done = self._parse(payload, meta, None)
        if not 1 <= steps <= len(done):
            raise ValueError(f"payload holds {len(done)} steps, asked for {steps}")
        return (Header(self.adaptive, self.chunk_bits, self.cal.id, steps, head.height,
                       head.width).pack() + self.coder.encode(done[:steps]))

    # ------------------------------------------------------------------ rate model
    def min_bits(self, shape: tuple[int, int]) -> int:
        """Real size of the first step of a pink-noise frame (natural-image spectrum)."""
        h, w = (int(v) for v in shape)
        check_frame_shape(h, w, ValueError, self.multiple)
        if (h, w) not in self._floors:
            saved, self.max_steps = self.max_steps, 1
            try:
                stats = EncodeStats()
                self._encode(_pink_noise(h, w), 1 << 40, stats)
            finally:
                self.max_steps = saved
            self._floors[(h, w)] = 8 * stats.steps[0].payload_bytes
        return self._floors[(h, w)]
