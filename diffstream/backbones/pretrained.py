"""Pretrained diffusers models from local folders: layout checks and loaders (no hub access).

The codecs take paths only; nothing is downloaded at run time. The layouts are diffusers'
own (what ``save_pretrained`` / ``huggingface_hub.snapshot_download`` leave on disk):

- a **component folder**: ``config.json`` (whose ``_class_name`` names the class) and
  ``diffusion_pytorch_model.safetensors`` (or ``.bin``, or a ``.fp16.`` variant);
- a **pipeline folder**: ``unet/`` (``UNet2DModel`` or ``UNet2DConditionModel``),
  ``scheduler/`` (``scheduler_config.json`` of a DDPM-family scheduler), and for a latent
  model ``vae/`` (``AutoencoderKL``) or ``vqvae/`` (``VQModel``). Other subfolders
  (``text_encoder/``, ``tokenizer/``, ``safety_checker/``, ...) are ignored.

``inspect_*`` only read JSON and file names (cheap: the scenario precheck calls them before
any worker starts); ``load_*`` build the torch modules. Every problem raises
``PretrainedFolderError`` (a ``ConfigError``: exit code 2) naming the path and the missing
or wrong part.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from diffstream.errors import ConfigError

VAE_CLASSES = ("AutoencoderKL", "VQModel")
UNET_CLASSES = ("UNet2DModel", "UNet2DConditionModel")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
_WEIGHT_STEM = "diffusion_pytorch_model"
_WEIGHT_EXTS = (".safetensors", ".bin")
_VARIANTS = (None, "fp16")


class PretrainedFolderError(ConfigError):
    """A pretrained-model folder is missing, incomplete or of the wrong kind."""


@dataclass(frozen=True)
class Component:
    """One diffusers model folder: its config and which weights file to load."""

    path: Path
    class_name: str
    config: dict[str, Any]
    variant: str | None  # None, or "fp16" when only the fp16 variant is on disk

    @property
    def weights(self) -> Path:
        for ext in _WEIGHT_EXTS:
            name = _WEIGHT_STEM + (f".{self.variant}" if self.variant else "") + ext
            if (self.path / name).is_file():
                return self.path / name
        raise AssertionError("checked by read_component")


@dataclass(frozen=True)
class ModelFolder:
    """A diffusion pipeline folder: U-Net, scheduler, and the autoencoder of a latent model."""

    root: Path
    unet: Component
    scheduler_path: Path
    scheduler_config: dict[str, Any]
    vae: Component | None  # None: a pixel-space model

    @property
    def conditional(self) -> bool:
        return self.unet.class_name == "UNet2DConditionModel"

    @property
    def latent(self) -> bool:
        return self.vae is not None


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise PretrainedFolderError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise PretrainedFolderError(f"{path}: the {what} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise PretrainedFolderError(f"{path}: the {what} is not a JSON object")
    return data


def read_component(folder: str | Path, allowed: tuple[str, ...], what: str) -> Component:
    """A diffusers model folder whose ``config.json`` names one of ``allowed`` classes."""
    path = Path(folder)
    if not path.is_dir():
        raise PretrainedFolderError(f"{path}: no such folder (expected the {what})")
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise PretrainedFolderError(f"{path}: config.json is missing (a diffusers {what} "
                                    f"folder holds config.json and {_WEIGHT_STEM}.safetensors)")
    config = _read_json(cfg_path, f"{what} config")
    cls = config.get("_class_name")
    if cls not in allowed:
        raise PretrainedFolderError(f"{cfg_path}: _class_name is {cls!r}; the {what} must be "
                                    f"one of {', '.join(allowed)}")
    for variant in _VARIANTS:
        for ext in _WEIGHT_EXTS:
            name = _WEIGHT_STEM + (f".{variant}" if variant else "") + ext
            if (path / name).is_file():
                return Component(path, cls, config, variant)
    raise PretrainedFolderError(f"{path}: no weights ({_WEIGHT_STEM}.safetensors, .bin or "
                                f"their .fp16 variants) next to config.json")


def find_vae(folder: str | Path) -> Component:
    """The autoencoder in ``folder``: the folder itself, or its ``vae/`` or ``vqvae/``."""
    root = Path(folder)
    if not root.is_dir():
        raise PretrainedFolderError(f"{root}: no such folder (expected a diffusers "
                                    "AutoencoderKL/VQModel folder or a pipeline with vae/)")
    if (root / "config.json").is_file():
        return read_component(root, VAE_CLASSES, "autoencoder")
    for sub in ("vae", "vqvae"):
        if (root / sub).is_dir():
            return read_component(root / sub, VAE_CLASSES, "autoencoder")
    raise PretrainedFolderError(f"{root}: neither config.json (an autoencoder folder) nor a "
                                "vae/ or vqvae/ subfolder (a latent-diffusion pipeline)")


def inspect_model(folder: str | Path) -> ModelFolder:
    """Check a diffusion pipeline folder (unet/ + scheduler/ [+ vae/ or vqvae/])."""
    root = Path(folder)
    if not root.is_dir():
        raise PretrainedFolderError(f"{root}: no such folder (expected a diffusers pipeline "
                                    "with unet/ and scheduler/)")
    if not (root / "unet").is_dir():
        raise PretrainedFolderError(f"{root}: unet/ is missing (a diffusers pipeline folder "
                                    "holds unet/, scheduler/ and vae/ or vqvae/)")
    unet = read_component(root / "unet", UNET_CLASSES, "U-Net")
    sched_dir = root / "scheduler"
    sched_cfg_path = sched_dir / "scheduler_config.json"
    if not sched_cfg_path.is_file():
        raise PretrainedFolderError(f"{root}: scheduler/scheduler_config.json is missing (the "
                                    "noise schedule of the model)")
    sched_cfg = _read_json(sched_cfg_path, "scheduler config")
    vae = None
    for sub in ("vae", "vqvae"):
        if (root / sub).is_dir():
            vae = read_component(root / sub, VAE_CLASSES, "autoencoder")
            break
    layout = ModelFolder(root, unet, sched_dir, sched_cfg, vae)
    _check_consistent(layout)
    return layout


def _check_consistent(m: ModelFolder) -> None:
    u = m.unet.config
    where = m.unet.path / "config.json"
    cin, cout = u.get("in_channels"), u.get("out_channels")
    if cin != cout:
        raise PretrainedFolderError(f"{where}: in_channels {cin} != out_channels {cout}; only "
                                    "noise/v-prediction U-Nets (no learned variance) work")
    if m.vae is None:
        if cin != 3:
            raise PretrainedFolderError(f"{m.root}: the U-Net has {cin} input channels but "
                                        "there is no vae/ or vqvae/ (a pixel model needs 3)")
    else:
        lat = _vae_latent_channels(m.vae)
        if lat != cin:
            raise PretrainedFolderError(f"{where}: in_channels {cin} does not match the "
                                        f"autoencoder's {lat} latent channels "
                                        f"({m.vae.path / 'config.json'})")
    pred = m.scheduler_config.get("prediction_type", "epsilon")
    if pred not in PREDICTION_TYPES:
        raise PretrainedFolderError(f"{m.scheduler_path / 'scheduler_config.json'}: "
                                    f"prediction_type {pred!r}; supported: "
                                    f"{', '.join(PREDICTION_TYPES)}")
    if "num_train_timesteps" not in m.scheduler_config:
        raise PretrainedFolderError(f"{m.scheduler_path / 'scheduler_config.json'}: no "
                                    "num_train_timesteps (not a DDPM-family scheduler)")


def _vae_latent_channels(vae: Component) -> int:
    cfg = vae.config
    if vae.class_name == "VQModel":
        return int(cfg.get("vq_embed_dim") or cfg.get("latent_channels", 3))
    return int(cfg.get("latent_channels", 4))


def vae_factor(vae: Component) -> int:
    """Spatial downsampling of the autoencoder (2 per encoder block after the first)."""
    return 2 ** (len(vae.config.get("block_out_channels", (64,))) - 1)


def vae_latent_channels(vae: Component) -> int:
    return _vae_latent_channels(vae)


def unet_downsampling(unet: Component) -> int:
    """How many times the U-Net halves its input (its sides must divide by 2 ** this)."""
    return len(unet.config.get("block_out_channels", (1,))) - 1


def config_fingerprint(component: Component) -> str:
    """sha256 (16 hex) of a model's architecture config (keys not starting with ``_``,
    ``_class_name`` kept): weights trained on one model refuse another architecture."""
    keep = {k: v for k, v in component.config.items()
            if not k.startswith("_") or k == "_class_name"}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- null embedding
def inspect_null_embedding(file: str | Path, dim: int | None = None) -> tuple[int, ...]:
    """Shape of the null-prompt embedding in ``file`` ([1, tokens, dim]); checks ``dim``."""
    t = load_null_embedding(file)
    if dim is not None and t.shape[-1] != dim:
        raise PretrainedFolderError(f"{file}: the embedding's last dimension is {t.shape[-1]}; "
                                    f"the U-Net's cross_attention_dim is {dim}")
    return tuple(t.shape)


def load_null_embedding(file: str | Path) -> torch.Tensor:
    """A [1, tokens, dim] float tensor from a safetensors file (one tensor, or one named
    ``embedding``/``null_embedding``/``prompt_embeds``) or a ``torch.save``d tensor."""
    path = Path(file)
    if not path.is_file():
        raise PretrainedFolderError(f"{path}: no such file (expected the null-prompt embedding, "
                                    "a [1, tokens, dim] tensor in safetensors or .pt)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            tensors = load_file(str(path), device="cpu")
            names = [n for n in ("embedding", "null_embedding", "prompt_embeds") if n in tensors]
            if names:
                t = tensors[names[0]]
            elif len(tensors) == 1:
                t = next(iter(tensors.values()))
            else:
                raise PretrainedFolderError(
                    f"{path}: {len(tensors)} tensors ({', '.join(sorted(tensors)[:4])}); keep "
                    "one, or name it 'embedding'")
        else:
            t = torch.load(path, map_location="cpu", weights_only=True)
    except PretrainedFolderError:
        raise
    except Exception as exc:  # a corrupt file: say which
        raise PretrainedFolderError(f"{path}: cannot read the null-prompt embedding "
                                    f"({type(exc).__name__}: {exc})") from None
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        raise PretrainedFolderError(f"{path}: not a float tensor")
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3 or t.shape[0] != 1:
        raise PretrainedFolderError(f"{path}: shape {tuple(t.shape)}; expected [1, tokens, dim]")
    return t.float()


# --------------------------------------------------------------------------- loaders
def load_component(c: Component, **overrides: Any) -> torch.nn.Module:
    """The diffusers model of a checked component folder, float32, eval, no gradients."""
    import diffusers

    cls = getattr(diffusers, c.class_name)
    if importlib.util.find_spec("accelerate") is None:
        overrides.setdefault("low_cpu_mem_usage", False)  # what diffusers falls back to
    try:
        model = cls.from_pretrained(str(c.path), variant=c.variant, torch_dtype=torch.float32,
                                    **overrides)
    except (OSError, ValueError, RuntimeError) as exc:
        raise PretrainedFolderError(f"{c.path}: cannot load the {c.class_name} "
                                    f"({type(exc).__name__}: {exc})") from None
    return model.eval().requires_grad_(False)


def load_alpha_bar(m: ModelFolder) -> tuple[torch.Tensor, str]:
    """(abar_0..abar_T in float64 with abar_0 = 1, prediction type) from ``scheduler/``."""
    import diffusers

    name = m.scheduler_config.get("_class_name", "DDPMScheduler")
    cls = getattr(diffusers, str(name), None)
    if cls is None or not hasattr(cls, "from_pretrained"):
        raise PretrainedFolderError(f"{m.scheduler_path / 'scheduler_config.json'}: unknown "
                                    f"scheduler class {name!r}")
    try:
        sched = cls.from_pretrained(str(m.scheduler_path))
    except (OSError, ValueError, TypeError) as exc:
        raise PretrainedFolderError(f"{m.scheduler_path}: cannot load the scheduler "
                                    f"({type(exc).__name__}: {exc})") from None
    ac = getattr(sched, "alphas_cumprod", None)
    if not isinstance(ac, torch.Tensor) or ac.ndim != 1:
        raise PretrainedFolderError(f"{m.scheduler_path}: {name} has no alphas_cumprod (a "
                                    "DDPM-family noise schedule is needed; flow-matching "
                                    "schedulers are not supported)")
    ab = torch.cat([torch.ones(1, dtype=torch.float64), ac.to(torch.float64)])
    return ab, str(m.scheduler_config.get("prediction_type", "epsilon"))
