"""A pixel-space DDPM noise-prediction model (Ho et al. 2020): the backbone of DiffC and BADiff.

One module, two sources of weights:

- ours: a small diffusers ``UNet2DModel`` trained here on scikit-image photograph crops
  (``python -m diffstream.training ddpm``), shipped as ``weights/ddpm.safetensors`` +
  ``ddpm.json``;
- a user's: any local diffusers DDPM folder (``unet/`` with a ``UNet2DModel`` and
  ``scheduler/`` with a DDPM-family scheduler config), via ``DDPM.from_diffusers``.

Time convention (the papers'): t in {0, ..., T}, x_0 is the clean image and

    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,   abar_0 = 1,  abar_t = prod_{s<=t} (1 - beta_s).

diffusers indexes the same schedule from 0 (its timestep i is our t = i + 1), so ``eps(x, t)``
calls the U-Net with ``t - 1``. ``alpha_bar`` is float64: DiffC's KL terms subtract nearly
equal variances at small t, where float32 loses most of its digits.

Conditioning (BADiff, paper 000 §3.2): with ``cond_dim`` set, the U-Net is built with
``class_embed_type="identity"``; a ``cond`` vector of the time-embedding width is added to
the timestep embedding, which every residual block projects into a per-channel bias before
its second convolution (diffusers' ``time_emb_proj``): the additive FiLM of Eq. 7.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
FP16_MIN = 1024  # tensors with more elements are stored as float16 (half the file)


class DDPMWeightsError(FileNotFoundError):
    """Weights missing or not matching their config; the message says how to make them."""


@dataclass
class DDPMConfig:
    sample_size: int = 32
    # 1.1 M parameters: ~190 ms per batch-16 training step, ~9 ms per sample step (1 core)
    channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    attention: tuple[bool, ...] = (False, False, True)
    norm_groups: int = 16
    cond_dim: int | None = None  # BADiff: width of the added conditioning vector
    T: int = 1000
    beta_start: float = 1e-4  # the linear schedule of Ho et al. 2020
    beta_end: float = 0.02
    training: dict[str, Any] = field(default_factory=dict)  # steps, wall time, final loss

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DDPMConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("channels", "attention"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)

    @property
    def time_embed_dim(self) -> int:
        return self.channels[0] * 4  # diffusers' UNet2DModel choice


def linear_alpha_bar(T: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """abar_0..abar_T (float64, abar_0 = 1) of the linear beta schedule."""
    betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1.0 - betas, 0)])


def build_unet(cfg: DDPMConfig) -> nn.Module:
    from diffusers import UNet2DModel

    if len(cfg.channels) != len(cfg.attention):
        raise ValueError("channels and attention must have the same length")
    down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in cfg.attention)
    up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cfg.attention))
    extra: dict[str, Any] = {}
    if cfg.cond_dim is not None:
        if cfg.cond_dim != cfg.time_embed_dim:
            raise ValueError(f"cond_dim must equal the time-embedding width "
                             f"{cfg.time_embed_dim} (identity class embedding)")
        extra["class_embed_type"] = "identity"
    return UNet2DModel(
        sample_size=cfg.sample_size, in_channels=3, out_channels=3,
        block_out_channels=tuple(cfg.channels), layers_per_block=cfg.layers_per_block,
        down_block_types=down, up_block_types=up, norm_num_groups=cfg.norm_groups,
        attention_head_dim=min(32, min(cfg.channels)), **extra,
    )


class DDPM(nn.Module):
    """eps_theta(x_t, t) with its noise schedule; images are in [-1, 1]."""

    def __init__(self, cfg: DDPMConfig, unet: nn.Module | None = None,
                 alpha_bar: torch.Tensor | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.unet = unet if unet is not None else build_unet(cfg)
        ab = alpha_bar if alpha_bar is not None else linear_alpha_bar(
            cfg.T, cfg.beta_start, cfg.beta_end)
        if ab.shape != (cfg.T + 1,) or float(ab[0]) != 1.0:
            raise ValueError("alpha_bar must have T + 1 entries starting at 1")
        self.register_buffer("alpha_bar", ab.to(torch.float64), persistent=False)

    @property
    def T(self) -> int:
        return self.cfg.T

    # --- the diffusion space (shared interface with backbones.latent.LatentDiffusion) ----
    channels = 3
    factor = 1  # pixel space: the diffusion runs on the image itself
    conditional = False

    def latent_shape(self, h: int, w: int) -> tuple[int, int, int]:
        return (3, h, w)

    def to_latent(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def to_image(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def clip_x0(self, x: torch.Tensor) -> torch.Tensor:
        """x0 predictions are clipped to the image range (as diffusers' clip_sample)."""
        return x.clamp(-1.0, 1.0)

    def eps(self, x: torch.Tensor, t: int | torch.Tensor,
            cond: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted noise at paper time t (1..T), batch-broadcast."""
        tt = torch.as_tensor(t, device=x.device).reshape(-1).expand(x.shape[0]) - 1
        if (tt < 0).any() or (tt >= self.T).any():
            raise ValueError(f"t must be in 1..{self.T}")
        return self.unet(x, tt, class_labels=cond).sample

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        ab = self.alpha_bar.to(x0.device)[t].float().view(-1, 1, 1, 1)
        return ab.sqrt() * x0 + (1.0 - ab).sqrt() * noise

    def x0_from_eps(self, x_t: torch.Tensor, t: int, eps: torch.Tensor) -> torch.Tensor:
        ab = float(self.alpha_bar[t])
        return (x_t - (1.0 - ab) ** 0.5 * eps) / ab ** 0.5

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path, name: str = "ddpm") -> Path:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {k: (v.half() if v.is_floating_point() and v.numel() > FP16_MIN else v)
                   .detach().cpu().contiguous() for k, v in self.unet.state_dict().items()}
        save_file(tensors, str(out / f"{name}.safetensors"))
        (out / f"{name}.json").write_text(json.dumps(asdict(self.cfg), indent=2) + "\n")
        return out / f"{name}.safetensors"

    @classmethod
    def load(cls, directory: str | Path | None = None, name: str = "ddpm",
             device: str | torch.device = "cpu", train_command: str = "") -> DDPM:
        d = Path(directory) if directory is not None else WEIGHTS_DIR
        cfg_path, w_path = d / f"{name}.json", d / f"{name}.safetensors"
        for p in (cfg_path, w_path):
            if not p.is_file():
                hint = train_command or "python -m diffstream.training ddpm"
                raise DDPMWeightsError(f"{p} is missing: train the weights with `{hint}` "
                                       f"or pass the folder that holds {w_path.name}")
        cfg = DDPMConfig.from_json(json.loads(cfg_path.read_text()))
        model = cls(cfg)
        state = load_file(str(w_path), device="cpu")
        own = model.unet.state_dict()
        if set(own) != set(state) or any(own[k].shape != state[k].shape for k in own):
            raise DDPMWeightsError(f"{w_path}: weights do not match the architecture in "
                                   f"{cfg_path.name}")
        model.unet.load_state_dict({k: v.float() if v.is_floating_point() else v
                                    for k, v in state.items()})
        return model.to(device).eval()

    @classmethod
    def from_diffusers(cls, folder: str | Path, device: str | torch.device = "cpu") -> DDPM:
        """A local diffusers DDPM pipeline folder (``unet/`` + ``scheduler/``), or a bare
        ``UNet2DModel`` folder (then the linear schedule above is assumed)."""
        from diffusers import DDPMScheduler, UNet2DModel

        root = Path(folder)
        unet_dir = root / "unet" if (root / "unet").is_dir() else root
        if not (unet_dir / "config.json").is_file():
            raise DDPMWeightsError(f"{folder}: no diffusers UNet2DModel here (expected "
                                   f"{root / 'unet' / 'config.json'} or {root / 'config.json'})")
        unet = UNet2DModel.from_pretrained(str(unet_dir))
        if unet.config.in_channels != 3 or unet.config.out_channels != 3:
            raise DDPMWeightsError(f"{unet_dir}: a pixel-space RGB UNet is needed (3 in, 3 out "
                                   f"channels), got {unet.config.in_channels}/"
                                   f"{unet.config.out_channels}")
        if getattr(unet.config, "prediction_type", None) not in (None, "epsilon"):
            raise DDPMWeightsError(f"{unet_dir}: only epsilon-prediction models are supported")
        sched_dir = root / "scheduler"
        if sched_dir.is_dir():
            sched = DDPMScheduler.from_pretrained(str(sched_dir))
            if sched.config.prediction_type != "epsilon":
                raise DDPMWeightsError(f"{sched_dir}: prediction_type "
                                       f"{sched.config.prediction_type!r}; only 'epsilon' works")
            ab = torch.cat([torch.ones(1, dtype=torch.float64),
                            sched.alphas_cumprod.to(torch.float64)])
            T = int(sched.config.num_train_timesteps)
            b0, b1 = float(sched.config.beta_start), float(sched.config.beta_end)
        else:
            T, b0, b1 = 1000, 1e-4, 0.02
            ab = linear_alpha_bar(T, b0, b1)
        cfg = DDPMConfig(sample_size=int(unet.config.sample_size or 32),
                         channels=tuple(unet.config.block_out_channels),
                         layers_per_block=int(unet.config.layers_per_block),
                         attention=tuple("Attn" in b for b in unet.config.down_block_types),
                         norm_groups=int(unet.config.norm_num_groups), T=T,
                         beta_start=b0, beta_end=b1, training={"source": str(root)})
        return cls(cfg, unet=unet, alpha_bar=ab).to(device).eval()


_CACHE: dict[tuple[str, str], DDPM] = {}
_CACHE_LOCK = threading.Lock()


def load_cached(weights: str | Path | None = None, diffusers: str | Path | None = None,
                device: str | torch.device = "cpu") -> DDPM:
    """The DDPM loaded once per process and device (eval, no gradients): the shipped
    weights, a folder holding ddpm.safetensors (``weights``), or a local diffusers DDPM
    folder (``diffusers``). DiffC and the BADiff baselines share it."""
    if diffusers is not None:
        key = ("diffusers:" + str(Path(diffusers).resolve()), str(device))
    else:
        key = (str(Path(weights).resolve()) if weights is not None else str(WEIGHTS_DIR),
               str(device))
    with _CACHE_LOCK:
        if key not in _CACHE:
            model = (DDPM.from_diffusers(diffusers, device=device) if diffusers is not None
                     else DDPM.load(weights, device=device))
            _CACHE[key] = model.eval().requires_grad_(False)
        return _CACHE[key]
