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

Options: chunk_bits (12; calibrated: 8, 10, 12, 14, 16), chunking ("image", the default:
each step's chunk count from this image's KL of the step, sent as side information (the
DiffC authors' method); "table", the paper's hard-coded counts; or "adaptive": the table's
plan scaled by a half-octave symbol per step), chunk_kl (image chunking: the KL per chunk
aimed at, default the calibration's image_kl_bits = chunk_bits), denoiser ("flow",
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

import hashlib
import logging
import math
import threading
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
from diffstream.codecs.diffc.bitstream import (
    CHECK_BYTES,
    CHUNKINGS,
    DELTA_MAX,
    FORMAT_VERSION,
    Step,
    StepCoder,
    StepWriter,
    log_count,
    log_symbol,
)
from diffstream.codecs.diffc.diffusion import DENOISERS, denoise, predict_x0, step_coefs
from diffstream.codecs.diffc.schedule import CALIBRATION_FILE, Calibration
from diffstream.codecs.gic.bitstream import one_thread
from diffstream.codecs.registry import register_codec
from diffstream.pipeline.compute import ProfileCost
from diffstream.training.crops import to_tensor, to_uint8
from diffstream.transport.checksum import crc32

log = logging.getLogger(__name__)

MULTIPLE = 8
MAX_STEPS = 255
MODEL_CALIBRATION = "diffc_calibration.json"  # a model folder's own calibration
IDENTITY_EVERY = 64  # meta["id"] on the first frame and every 64th after it
NO_SHAPE_MAX_CHUNKS = 1 << 31  # bound on a step's chunks when the frame size is unknown
PURPOSE_XT, PURPOSE_PERM, PURPOSE_CAND, PURPOSE_NOISE = 0x5854, 0x5045, 0x4341, 0x4E4F

_CALS: dict[str, Calibration] = {}
_DIGESTS: dict[int, str] = {}
_LOCK = threading.Lock()


def model_digest(model: torch.nn.Module) -> str:
    """sha256 (16 hex) of the model's state (names, dtypes, shapes and bytes of every
    tensor): what the identity check compares, whatever file the weights came from."""
    key = id(model)
    with _LOCK:
        if key not in _DIGESTS:
            h = hashlib.sha256()
            for name, t in sorted(model.state_dict().items()):
                t = t.detach().cpu().contiguous().reshape(-1)
                h.update(f"{name}|{t.dtype}|{t.numel()};".encode())
                h.update(t.view(torch.uint8).numpy().tobytes())
            _DIGESTS[key] = h.hexdigest()[:16]
        return _DIGESTS[key]


def xt_check(x: torch.Tensor) -> int:
    """The payload's check byte: CRC-32 of x_t's float32 bytes, low 8 bits."""
    return crc32(x.detach().float().cpu().contiguous().numpy().tobytes()) & 0xFF


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
    max_chunk_kl: float = 0.0  # the largest KL of one of the step's chunks (bits)


@dataclass
class EncodeStats:
    steps: list[StepRecord] = field(default_factory=list)
    indices: list[list[int]] = field(default_factory=list)
    pfr_seconds: float = 0.0
    unet_seconds: float = 0.0
    x_t: torch.Tensor | None = None  # the encoder's last kept x_t (what the decoder rebuilds)
    payloads: list[bytes] = field(default_factory=list)  # [k]: what a k+1-step encode sends
    chunk_kls: list[list[float]] = field(default_factory=list)  # [k]: each chunk's KL (bits)


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
                 max_steps: int | None = None, chunking: str = "image",
                 model: str | None = None, null_embedding: str | None = None,
                 chunk_kl: float | None = None) -> None:
        if denoiser not in DENOISERS:
            raise ValueError(f"denoiser must be one of {DENOISERS}, got {denoiser!r}")
        if chunking not in CHUNKINGS:
            raise ValueError(f"chunking must be one of {CHUNKINGS}, got {chunking!r}")
        self.mode = chunking
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
        self.chunk_kl = float(chunk_kl) if chunk_kl is not None else self.chunk.image_target
        if not 0 < self.chunk_kl <= 2 * self.chunk_bits:
            raise ValueError(f"chunk_kl must be in (0, 2 chunk_bits = {2 * self.chunk_bits}]"
                             f", got {self.chunk_kl}")
        self.coder = StepCoder(self.chunk_bits, self.chunk.counts(self.mode), self.mode,
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
        self._frames = 0  # frames sent: the identity rides on every IDENTITY_EVERY-th
        self._peer_ok: dict[str, Any] | None = None  # the last sender identity that matched

    @property
    def identity(self) -> dict[str, Any]:
        """What both ends must share, sent in ``meta["id"]``: the format, the chunking, the
        chunk size, the PRNG seed, the calibration's and the weights' digests."""
        return {"v": FORMAT_VERSION, "k": self.mode, "b": self.chunk_bits, "s": self.seed,
                "c": self.cal.digest(), "w": model_digest(self.model)}

    def check_identity(self, theirs: Any) -> None:
        """CodecError naming what differs when a sender's identity is not this decoder's."""
        if theirs == self._peer_ok:
            return
        mine = self.identity
        if not isinstance(theirs, dict):
            raise CodecError(f"DiffC meta id is {type(theirs).__name__}, not a map: corrupt")
        names = {"v": "format version", "k": "chunking", "b": "chunk_bits", "s": "seed",
                 "c": "calibration (digest)", "w": "model weights (sha256)"}
        diff = [f"{names[k]}: sender {theirs.get(k)!r}, this decoder {v!r}"
                for k, v in mine.items() if theirs.get(k) != v]
        if diff:
            raise CodecError("DiffC stream was encoded with another configuration; "
                             + "; ".join(diff) + ". Give both ends the same weights, "
                             "calibration and codec options")
        self._peer_ok = dict(theirs)
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

    def chunks_of(self, dims: int | None) -> Any:
        """(step, count symbol) -> chunk count, for a frame of ``dims`` values (image
        chunking: from the symbol alone, so no frame size is needed)."""
        if self.mode == "image":
            return lambda k, ratio: log_count(ratio)
        assert dims is not None
        return lambda k, ratio: self.cal.chunks(k, dims, self.chunk_bits, ratio)

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
        floor = 8 * (CHECK_BYTES + 1)  # the check byte and at least one stream byte
        stats = EncodeStats()
        self.last_stats = stats
        if budget < floor:
            return self._skip(budget, floor, h, w)
        payload, kept = self._encode(arr, budget, stats)
        if kept == 0:
            need = stats.steps[0].payload_bytes * 8 if stats.steps else floor
            return self._skip(budget, need, h, w)
        t = self.cal.schedule[kept]
        meta: dict[str, Any] = {"steps": kept, "t": t, "bytes": len(payload)}
        if self._frames % IDENTITY_EVERY == 0:
            meta["id"] = self.identity
        self._frames += 1
        return Encoded(payload=payload, meta=meta, steps=kept)

    def _skip(self, budget: int, need: int, h: int, w: int) -> Encoded:
        reason = (f"budget {budget} bits < {need} bits of the first DiffC step "
                  f"(diffc {w}x{h}, chunk_bits {self.chunk_bits})")
        log.info("skipping frame: %s", reason)
        return Encoded(payload=b"", meta={"steps": 0}, skipped=True, reason=reason, steps=0)

    def _count_symbol(self, k: int, dims: int, kl_bits: float, prev: int | None
                      ) -> int | None:
        """The step's count symbol: image chunking sends ceil(KL / chunk_kl) chunks (to
        within 2^(1/8)), adaptive the table's half-octave scale, table nothing."""
        if self.mode == "image":
            r = log_symbol(kl_bits, self.chunk_kl)
            if prev is not None:  # the difference code's range (never binds in practice)
                r = min(max(r, prev - DELTA_MAX), prev + DELTA_MAX)
            while r > 0 and log_count(r) > dims:  # at most one chunk per value
                r -= 1
            return r
        if self.adaptive:
            return self.cal.choose_ratio(k, dims, self.chunk_bits, kl_bits)
        return None

    def _encode(self, arr: np.ndarray, budget: int, stats: EncodeStats
                ) -> tuple[bytes, int]:
        import time

        h, w = arr.shape[:2]
        dims = self.dims(h, w)
        payload, kept = b"", 0
        writer: StepWriter = self.coder.writer((h, w) if self.coder.sized else None)
        prev: int | None = None
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
                ratio = self._count_symbol(k, dims, kl_bits, prev)
                groups = self.chunk_groups(k, dims, self.chunks_of(dims)(k, ratio))
                idx, kls = [], []
                for ci, g in enumerate(groups):
                    mg = m_f[g]
                    kls.append(float((mg.double() * mg.double()).sum()) / (2.0 * math.log(2.0)))
                    idx.append(pfr.select(mg, self._key(PURPOSE_CAND, k, ci),
                                          self.chunk_bits, self.block, self.backend))
                t2 = time.perf_counter()
                stats.unet_seconds += t1 - t0
                stats.pfr_seconds += t2 - t1
                trial = writer.copy()
                trial.add((ratio, idx))
                body = trial.finish()
                size = CHECK_BYTES + len(body)
                stats.steps.append(StepRecord(self.cal.schedule[k + 1], len(groups), ratio,
                                              kl_bits, size, max(kls)))
                stats.indices.append(idx)
                stats.chunk_kls.append(kls)
                if 8 * size > budget:
                    break
                x = self._advance(x, x0_hat, k, idx)
                writer, prev = trial, ratio
                payload, kept = bytes([xt_check(x)]) + body, k + 1
                stats.payloads.append(payload)
            stats.x_t = x
        return payload, kept

    # ------------------------------------------------------------------ decoder
    def _steps_of(self, meta: dict[str, Any] | None) -> int:
        steps = (meta or {}).get("steps")
        if not isinstance(steps, int) or isinstance(steps, bool):
            raise CodecError("DiffC frame meta has no integer 'steps' (the step count travels "
                             "in the wire header): corrupt or from another codec")
        if not 1 <= steps <= min(self.cal.steps, MAX_STEPS):
            raise CodecError(f"DiffC meta says {steps} steps; the schedule has "
                             f"{self.cal.steps}: corrupt")
        return steps

    def _parse(self, payload: bytes, meta: dict[str, Any] | None, shape: tuple[int, int] | None
               ) -> tuple[bool, list[Step]]:
        """(whether the payload is whole, the index lists of every whole step it holds)."""
        payload = bytes(payload)
        n_steps = self._steps_of(meta)
        if "id" in (meta or {}):
            self.check_identity((meta or {})["id"])
        full_len = (meta or {}).get("bytes")
        if isinstance(full_len, int) and len(payload) > full_len:
            raise CodecError(f"DiffC payload of {len(payload)} bytes is longer than the "
                             f"{full_len} bytes its header meta announces: corrupt")
        whole = isinstance(full_len, int) and len(payload) == full_len
        stream = payload[CHECK_BYTES:]
        size = (int(shape[0]), int(shape[1])) if shape is not None else None
        if self.coder.sized and size is None:  # prefix_steps: the size is in the stream
            size = self.coder.stream_size(stream)
            if size is None:
                if whole:
                    raise CodecError("DiffC stream has no frame size: corrupt")
                return False, []
        if self.coder.sized and size is not None and not whole:
            got = self.coder.stream_size(stream)
            if got is not None and got != size:
                raise CodecError(f"DiffC stream is for {got[1]}x{got[0]}, expected "
                                 f"{size[1]}x{size[0]}")
        dims = self.dims(*size) if size is not None else None
        bound = dims if dims is not None else NO_SHAPE_MAX_CHUNKS
        if whole:
            if len(payload) < CHECK_BYTES:
                raise CodecError("DiffC payload is empty: corrupt")
            return True, self.coder.decode_full(stream, n_steps, self.chunks_of(dims), bound,
                                                size if self.coder.sized else None)
        if len(payload) < CHECK_BYTES:
            return False, []
        return False, self.coder.decode_prefix(stream, n_steps, self.chunks_of(dims), bound)

    def prefix_steps(self, payload: bytes, meta: dict[str, Any]) -> int:
        """Whole steps in ``payload`` (full or a prefix); 0 when not even one step arrived
        (then ``decode`` raises). CodecError on a corrupt meta or full payload."""
        return len(self._parse(payload, meta, None)[1])

    def trajectory(self, payload: bytes, meta: dict[str, Any] | None,
                   shape: tuple[int, int]) -> list[tuple[int, torch.Tensor]]:
        """(t, x_t) after every whole step of the payload (what the decoder reconstructs).
        For a whole payload the final x_t must match the payload's check byte."""
        try:
            h, w = (int(v) for v in shape)
        except (TypeError, ValueError):
            raise CodecError(f"shape must be (H, W), got {shape!r}") from None
        check_frame_shape(h, w, CodecError, self.multiple)
        whole, steps = self._parse(payload, meta, (h, w))
        if not steps:
            raise CodecError(f"DiffC prefix of {len(payload)} bytes holds no complete step "
                             "(nothing to decode)")
        dims = self.dims(h, w)
        out = []
        with self._exec():
            x = self.x_T(h, w)
            for k, (_, idx) in enumerate(steps):
                if len(idx) > dims:
                    raise CodecError(f"DiffC step {k} has {len(idx)} chunks for {dims} "
                                     "values: corrupt")
                x0_hat = predict_x0(self.model, x, self.cal.schedule[k])
                x = self._advance(x, x0_hat, k, idx)
                out.append((self.cal.schedule[k + 1], x))
        if whole and xt_check(x) != bytes(payload)[0]:
            raise CodecError(f"DiffC x_t check failed after {len(steps)} steps (payload "
                             f"{bytes(payload)[0]:#04x}, decoded {xt_check(x):#04x}): the "
                             "decoder's floats drifted from the encoder's (another device "
                             "type or library build) or its model differs")
        return out

    def denoise(self, x_t: torch.Tensor, t: int, noise_key: int = 0) -> Image:
        with self._exec():
            x0 = denoise(self.model, x_t, t, self.denoiser, self.ddim_steps, noise_key)
            img = self.model.to_image(x0)  # the VAE decoder for a latent model
        return to_uint8(img)[0]

    def decode(self, payload: bytes, meta: dict[str, Any], shape: tuple[int, int]) -> Image:
        traj = self.trajectory(payload, meta, shape)
        t, x_t = traj[-1]
        key = self._key(PURPOSE_NOISE, crc32(payload))
        img = self.denoise(x_t, t, key)
        if img.shape != (int(shape[0]), int(shape[1]), 3):
            raise CodecError(f"diffc decoded to {img.shape}, expected {tuple(shape)}")
        return img

    def payload_for_steps(self, payload: bytes, meta: dict[str, Any], steps: int,
                          shape: tuple[int, int]) -> bytes:
        """The payload ``encode`` would have sent with only the first ``steps`` steps
        (re-encoded indices and the check byte of that x_t; for benchmarks)."""
        traj = self.trajectory(payload, meta, shape)
        _, done = self._parse(payload, meta, shape)
        if not 1 <= steps <= len(done):
            raise ValueError(f"payload holds {len(done)} steps, asked for {steps}")
        size = (int(shape[0]), int(shape[1])) if self.coder.sized else None
        return bytes([xt_check(traj[steps - 1][1])]) + self.coder.encode(done[:steps], size)

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
