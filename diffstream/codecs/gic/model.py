"""The GIC model bundle: autoencoder + rate-variable hyperprior + reverse network.

Weights live in one safetensors file with a JSON config beside it
(``diffstream/codecs/gic/weights/gic.safetensors`` and ``gic.json``), written by
``python -m diffstream.training gic``. Parameters are prefixed ``ae.``, ``hyper.`` and
``reverse.``; the JSON records the architecture, the q range, which stages are trained, and
each stage's training time and final loss.

Units of q. The paper's q values (App. A: q1 = 0.13; Table 1: q0 in 0.45..1.2) are in the
units of its VAE latent. We normalise our latent to unit standard deviation per channel and
use q in those units, i.e. we assume the paper's KL-f4 latent is O(1) in scale; the
intermediate level q1 = 0.13 then leaves residual quantization noise of std
0.13 / sqrt(12) = 0.0375, about 3.8 % of the latent's std, which is App. A's "close to the
noise-free state". The q range of our entropy model is [q_lo, q_hi] = [0.03, 8.0]
(format 2; format 1 stopped at 3.0, which left the floor high: docs/gic.md).

Two autoencoders. ``autoencoder: "own"`` (the shipped weights) is our small trained
autoencoder (``autoencoder.py``); ``autoencoder: "diffusers"`` is a frozen pretrained
diffusers VAE from a local folder (``vae.py``; the paper's setup), given to ``load`` as
``vae=DIR``. Then the weights file holds only the VAE latent's normalisation (``ae.``),
the entropy model and the reverse network, and ``vae`` in the JSON records which VAE
they were trained on.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from diffstream.backbones.latent import LatentVAE
from diffstream.codecs.gic.autoencoder import AutoEncoder
from diffstream.codecs.gic.hyperprior import RateVariableHyperprior
from diffstream.codecs.gic.reverse import ReverseNet
from diffstream.codecs.gic.vae import NORM_KEYS, VaeAutoencoder, config_fingerprint

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
WEIGHTS_NAME = "gic.safetensors"
CONFIG_NAME = "gic.json"
STAGES = ("ae", "entropy", "reverse")
PREFIX = {"ae": "ae.", "entropy": "hyper.", "reverse": "reverse."}
TRAIN_COMMAND = "python -m diffstream.training gic --stage all"
FP16_MIN = 1024  # tensors with more elements are stored as float16


class WeightsMissingError(FileNotFoundError):
    """The GIC weights (or one of their stages) are not there; says how to make them."""


@dataclass
class GicConfig:
    latent_channels: int = 4
    ae_widths: tuple[int, int, int] = (32, 64, 96)
    z_channels: int = 8
    hyper_hidden: int = 64
    scale_max: float = 64.0
    scale_levels: int = 64
    unet_channels: tuple[int, ...] = (32, 64, 96)
    unet_layers: int = 1
    unet_attention: tuple[bool, ...] = (False, False, True)
    sigma_data: float = 1.0
    q_lo: float = 0.03  # smallest q the entropy model supports (= q_min of Eq. 13)
    q_hi: float = 8.0  # largest (format 2; 3.0 before: see docs/gic.md "Floor")
    q_train_min: float = 1e-3  # reverse-network training lower bound (< q_lo, §3.1)
    q1: float = 0.13
    beta: float = 0.075
    stages: list[str] = field(default_factory=list)  # trained stages
    training: dict[str, Any] = field(default_factory=dict)  # per-stage time / loss notes
    autoencoder: str = "own"  # "own" (autoencoder.py) or "diffusers" (a pretrained VAE)
    vae: dict[str, Any] = field(default_factory=dict)  # the VAE's record (vae.vae_record)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GicConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("ae_widths", "unet_channels", "unet_attention"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)


class GicModel(nn.Module):
    """The three trained parts; device placement is the caller's (``.to(device)``).

    ``vae``: the pretrained VAE when ``cfg.autoencoder == "diffusers"``."""

    def __init__(self, cfg: GicConfig, vae: LatentVAE | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.ae: AutoEncoder | VaeAutoencoder
        if cfg.autoencoder == "diffusers":
            if vae is None:
                raise WeightsMissingError(
                    f"these GIC weights were trained on the VAE at "
                    f"{cfg.vae.get('source', '?')}; pass its folder (codec_options.vae)")
            if vae.channels != cfg.latent_channels:
                raise WeightsMissingError(
                    f"the VAE at {vae.source} has {vae.channels} latent channels; these GIC "
                    f"weights were trained on {cfg.latent_channels}")
            self.ae = VaeAutoencoder(vae)
        elif vae is not None:
            raise WeightsMissingError(
                "these GIC weights are for GIC's own autoencoder, not a pretrained VAE: "
                "train GIC on the VAE with `python -m diffstream.training gic --vae DIR "
                "--images DIR --out OUT` and pass weights: OUT")
        else:
            self.ae = AutoEncoder(cfg.latent_channels, cfg.ae_widths)
        self.hyper = RateVariableHyperprior(cfg.latent_channels, cfg.z_channels,
                                            cfg.hyper_hidden, cfg.scale_max, cfg.scale_levels)
        self.reverse = ReverseNet(cfg.latent_channels, cfg.unet_channels, cfg.unet_layers,
                                  cfg.unet_attention, cfg.sigma_data)

    @property
    def factor(self) -> int:
        """The autoencoder's spatial downsampling (4 for ours and for KL-f4, 8 for SD's)."""
        return int(self.ae.factor)

    def stage_state(self, stage: str) -> dict[str, torch.Tensor]:
        module = {"ae": self.ae, "entropy": self.hyper, "reverse": self.reverse}[stage]
        return {PREFIX[stage] + k: v.detach().cpu().contiguous()
                for k, v in own_state(module).items()}

    def save(self, directory: str | Path) -> Path:
        """Write gic.safetensors (trained stages only) and gic.json into ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, torch.Tensor] = {}
        for stage in self.cfg.stages:
            for k, v in self.stage_state(stage).items():
                # Big conv/linear weights of the AE and U-Net ship as float16 (half the
                # size; both codec ends load the same file). The entropy model stays fp32.
                half = stage != "entropy" and v.is_floating_point() and v.numel() > FP16_MIN
                tensors[k] = v.half() if half else v
        save_file(tensors, str(out / WEIGHTS_NAME), metadata={"stages": ",".join(self.cfg.stages)})
        (out / CONFIG_NAME).write_text(json.dumps(asdict(self.cfg), indent=2) + "\n")
        return out / WEIGHTS_NAME

    @classmethod
    def load(cls, directory: str | Path | None = None, device: str | torch.device = "cpu",
             require: tuple[str, ...] = STAGES, vae: str | Path | LatentVAE | None = None
             ) -> GicModel:
        """Load config + weights (safetensors, mapped to ``device``); eval mode.

        ``vae``: the pretrained VAE's folder (or the loaded ``LatentVAE``) for weights
        trained with ``--vae``. Raises WeightsMissingError naming the file and the training
        command when the files or a required stage are missing, or when the weights and the
        VAE do not belong together.
        """
        d = Path(directory) if directory is not None else WEIGHTS_DIR
        cfg_path, w_path = d / CONFIG_NAME, d / WEIGHTS_NAME
        for p in (cfg_path, w_path):
            if not p.is_file():
                raise WeightsMissingError(
                    f"GIC weights not found: {p} is missing. Train them with "
                    f"`{TRAIN_COMMAND}` (about an hour on one CPU core), or pass the folder "
                    f"that holds {WEIGHTS_NAME} and {CONFIG_NAME}.")
        cfg = GicConfig.from_json(json.loads(cfg_path.read_text()))
        missing = [s for s in require if s not in cfg.stages]
        if missing:
            extra = " --vae DIR --images DIR" if cfg.autoencoder == "diffusers" else ""
            raise WeightsMissingError(
                f"{w_path} lacks trained stage(s) {', '.join(missing)}; run "
                f"`python -m diffstream.training gic --stage {missing[0]}{extra}`.")
        model = cls(cfg, _open_vae(vae, cfg, d))
        state = load_file(str(w_path), device="cpu")
        for stage in cfg.stages:
            prefix = PREFIX[stage]
            sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            module = {"ae": model.ae, "entropy": model.hyper, "reverse": model.reverse}[stage]
            _load_module(module, sub, w_path)
        return model.to(device).eval()


def _persist(key: str) -> bool:
    """compressai CDF tables are rebuilt by update(); do not ship them."""
    return key.split(".")[-1] not in ("_offset", "_quantized_cdf", "_cdf_length")


def own_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors GIC ships for a module: compressai tables and a pretrained VAE left out."""
    if isinstance(module, VaeAutoencoder):
        return module.gic_state()
    return {k: v for k, v in module.state_dict().items() if _persist(k)}


def _open_vae(vae: str | Path | LatentVAE | None, cfg: GicConfig, weights_dir: Path
              ) -> LatentVAE | None:
    """The VAE for ``cfg`` (loaded on the CPU; the caller moves the model), checked against
    the record the weights carry."""
    if vae is None or isinstance(vae, LatentVAE):
        return vae
    from diffstream.backbones.latent import load_vae
    from diffstream.backbones.pretrained import find_vae

    comp = find_vae(vae)
    if cfg.autoencoder == "diffusers":
        want = cfg.vae.get("config_sha256_16")
        if want and want != config_fingerprint(comp):
            raise WeightsMissingError(
                f"{weights_dir / CONFIG_NAME} was trained on another VAE architecture "
                f"({cfg.vae.get('class')} from {cfg.vae.get('source')}) than {comp.path}; "
                "retrain with `python -m diffstream.training gic --vae DIR --images DIR`")
    return load_vae(comp)


def _load_module(module: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    own = own_state(module)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise WeightsMissingError(f"{path}: weights do not match the architecture in the "
                                  f"config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for k, v in own.items():
        if v.shape != state[k].shape:
            raise WeightsMissingError(f"{path}: {k} has shape {tuple(state[k].shape)}, "
                                      f"expected {tuple(v.shape)}")
    if isinstance(module, VaeAutoencoder):
        with torch.no_grad():
            for k in NORM_KEYS:
                getattr(module, k).copy_(state[k].float())
        return
    module.load_state_dict({k: v.float() if v.is_floating_point() else v
                            for k, v in state.items()}, strict=False)
