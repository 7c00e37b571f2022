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
noise-free state". The q range of our entropy model is [q_lo, q_hi] = [0.03, 3.0].
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from diffstream.codecs.gic.autoencoder import AutoEncoder
from diffstream.codecs.gic.hyperprior import RateVariableHyperprior
from diffstream.codecs.gic.reverse import ReverseNet

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
    q_hi: float = 3.0  # largest
    q_train_min: float = 1e-3  # reverse-network training lower bound (< q_lo, §3.1)
    q1: float = 0.13
    beta: float = 0.075
    stages: list[str] = field(default_factory=list)  # trained stages
    training: dict[str, Any] = field(default_factory=dict)  # per-stage time / loss notes

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GicConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("ae_widths", "unet_channels", "unet_attention"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)


class GicModel(nn.Module):
    """The three trained parts; device placement is the caller's (``.to(device)``)."""

    def __init__(self, cfg: GicConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.ae = AutoEncoder(cfg.latent_channels, cfg.ae_widths)
        self.hyper = RateVariableHyperprior(cfg.latent_channels, cfg.z_channels,
                                            cfg.hyper_hidden, cfg.scale_max, cfg.scale_levels)
        self.reverse = ReverseNet(cfg.latent_channels, cfg.unet_channels, cfg.unet_layers,
                                  cfg.unet_attention, cfg.sigma_data)

    def stage_state(self, stage: str) -> dict[str, torch.Tensor]:
        module = {"ae": self.ae, "entropy": self.hyper, "reverse": self.reverse}[stage]
        return {PREFIX[stage] + k: v.detach().cpu().contiguous()
                for k, v in module.state_dict().items() if _persist(k)}

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
             require: tuple[str, ...] = STAGES) -> GicModel:
        """Load config + weights (safetensors, mapped to ``device``); eval mode.

        Raises WeightsMissingError naming the file and the training command when the files
        or a required stage are missing.
        """
        d = Path(directory) if directory is not None else WEIGHTS_DIR
        cfg_path, w_path = d / CONFIG_NAME, d / WEIGHTS_NAME
        for p in (cfg_path, w_path):
            if not p.is_file():
                raise WeightsMissingError(
                    f"GIC weights not found: {p} is missing. Train them with "
                    f"`{TRAIN_COMMAND}` (about 45 min on 2 CPU cores), or pass the folder "
                    f"that holds {WEIGHTS_NAME} and {CONFIG_NAME}.")
        cfg = GicConfig.from_json(json.loads(cfg_path.read_text()))
        missing = [s for s in require if s not in cfg.stages]
        if missing:
            raise WeightsMissingError(
                f"{w_path} lacks trained stage(s) {', '.join(missing)}; run "
                f"`python -m diffstream.training gic --stage {missing[0]}`.")
        model = cls(cfg)
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


def _load_module(module: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    own = {k: v for k, v in module.state_dict().items() if _persist(k)}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise WeightsMissingError(f"{path}: weights do not match the architecture in the "
                                  f"config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for k, v in own.items():
        if v.shape != state[k].shape:
            raise WeightsMissingError(f"{path}: {k} has shape {tuple(state[k].shape)}, "
                                      f"expected {tuple(v.shape)}")
    module.load_state_dict({k: v.float() if v.is_floating_point() else v
                            for k, v in state.items()}, strict=False)
