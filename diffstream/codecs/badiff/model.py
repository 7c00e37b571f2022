"""BADiff (paper 000): the entropy-conditioned denoiser, its modules and its losses.

- Entropy embedding (§3.2 Eq. 6, App. F): e(H) = MLP(H), 3 layers with SiLU, added to the
  U-Net's timestep embedding through diffusers' identity class embedding, so every residual
  block's ``time_emb_proj`` turns (e_t + e(H)) into its per-channel bias: the additive FiLM
  of Eq. 7. App. F's widths [128, 256, 256] -> 256 are scaled to [64, 128] -> 128 (the
  time-embedding width of this 32-channel U-Net). The last layer is zero-initialised, so a
  BADiff fine-tuned from the plain DDPM starts as exactly the plain model.
- H_phi: ``entropy_predictor.py``; stop policy: ``stop_policy.py``.
- Losses (Eq. 8, 11, 16):
    L_ent  = mean abar_t max(0, (H_lic(x0_hat; q_op(H)) - H) / H)  (hinge; Eq. 8, below)
    L_cal  = mean (H_phi(x, delta_lic(x)) - bpp_lic(x))^2          (Eq. 11, see below)
    L      = L_simple + 0.1 L_ent + 1e-3 L_cal + 1e-2 L_stop       (Eq. 16, App. G weights)

The hinge (issue 16). Its entropy model is the real coder's: LIC's own differentiable rate
(``lic_rate.py``) at q_op(H), the scale at which the median real crop costs H, on the
clamped x0_hat, relative to H and weighted by alpha_bar_t. The earlier hinge (in bpp, on
H_phi of the pixel coder at delta_op(H), unclamped, t <= 600) asked of real crops 0.66 /
1.74 / 3.72 bpp for targets 0.25 / 0.45 / >= 0.9, so it always fired, and its gradient
was 6-1700x L_simple's: at the paper's lambda_ent = 0.1 it collapsed the sampler. The
text below about delta_op and H_phi concerns ``coder: own``, whose probabilities H_phi is.

Entropy operating point (our reconstruction; the paper leaves "entropy" as "expected code
length after an entropy-coding stage"). BADiff's image is coded in pixel space at a
quantiser step delta (codecs/badiff/logistic_coder.py), so a code length needs a delta. For a
budget H the hinge uses delta_op(H): the pixel step whose uniform-quantisation distortion
delta^2 / 12 equals the MSE that the reference learned codec (``lic``) reaches at H bpp on
the training crops (a table measured once, stored in the JSON). So "H_phi(x0_hat) <= H"
reads: at LIC-equal fidelity, this image costs at most H bits per pixel in our coder.

Calibration (Eq. 11). The paper's pixel-wise cross-entropy against the reference codec's
probabilities has no pixel-wise counterpart here (LIC's likelihoods live on its latent), so
we use the per-image form the brief allows: the squared error between H_phi's mean code
length at the LIC-matched step delta_lic(x) = sqrt(12 MSE_lic(x)) and LIC's *real* coded
bpp of that crop (cached offline from real rANS bytes). H_phi's own rate loss (its NLL
at random steps, which makes its probabilities the real coder's) is trained alongside.

Backbones. ``cfg.backbone`` empty: the project's pixel DDPM (the shipped weights, paper
000's DDPM-1k setup scaled down). ``{"kind": "latent", ...}``: an unconditional latent
diffusion model from a local diffusers folder (paper 000's LDM-200 setup), given to
``load`` as ``ldm=DIR``: the U-Net is loaded with diffusers' identity class embedding so
e(H) is added to its time embedding exactly as above, sampling runs in the latent, the
stop policy reads the latent U-Net's mid-block features, and the image the coder and H_phi
see is the VAE decoding of the latent x0_hat (the paper: "the current latent is decoded to
the final image"). The weights file then holds the fine-tuned latent U-Net and the BADiff
heads, not the VAE.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from diffstream.backbones.ddpm import DDPM, FP16_MIN, DDPMConfig, DDPMWeightsError
from diffstream.backbones.latent import LatentDiffusion, load_latent_diffusion
from diffstream.backbones.pretrained import config_fingerprint, inspect_model
from diffstream.codecs.badiff.entropy_predictor import DELTAS, EntropyPredictor
from diffstream.codecs.badiff.stop_policy import StopPolicy

# BADiff's own fine-tuned weights (the plain DDPM's live in diffstream/backbones/weights)
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

H_MIN, H_MAX = 0.2, 2.0
_TABLE_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length")
LAMBDA_ENT, LAMBDA_CAL, LAMBDA_STOP = 0.1, 1e-3, 1e-2
# delta_op(H) before the LIC table is measured: log-linear through (0.2, 64), (2.0, 12)
DEFAULT_DELTA_OP: tuple[tuple[float, float], ...] = ((0.2, 64.0), (2.0, 12.0))


@dataclass
class BADiffConfig:
    ddpm: dict[str, Any] = field(default_factory=dict)  # DDPMConfig fields (cond_dim set)
    embed_hidden: tuple[int, ...] = (64, 128)
    conditioned: bool = True  # False: the "w/o conditioning" ablation (e(H) = 0)
    delta_op: tuple[tuple[float, float], ...] = DEFAULT_DELTA_OP  # (H bpp, delta) table
    training: dict[str, Any] = field(default_factory=dict)
    backbone: dict[str, Any] = field(default_factory=dict)  # {} pixel; latent: latent_record

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BADiffConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["embed_hidden"] = tuple(known.get("embed_hidden", (64, 128)))
        known["delta_op"] = tuple(tuple(p) for p in known.get("delta_op", DEFAULT_DELTA_OP))
        return cls(**known)


class EntropyEmbedding(nn.Module):
    """H (bpp) -> e(H) of the time-embedding width; 3 linear layers, SiLU, last zero."""

    def __init__(self, dim: int, hidden: tuple[int, ...] = (64, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = 1
        for width in hidden:
            layers += [nn.Linear(prev, width), nn.SiLU()]
            prev = width
        last = nn.Linear(prev, dim)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        u = (h.float().view(-1, 1) - (H_MIN + H_MAX) / 2) / ((H_MAX - H_MIN) / 2)
        return self.net(u)


def log_log_interp(h: torch.Tensor | float, table: Sequence[tuple[float, float]]
                   ) -> np.ndarray:
    """The value at budget(s) H of an (H bpp, value) table, interpolated in log-log
    (clamped to its end rows); the operating points delta_op and q_op are such tables."""
    hs = np.log([p[0] for p in table])
    vs = np.log([p[1] for p in table])
    hv = np.log(np.clip(np.asarray(torch.as_tensor(h).detach().cpu(), dtype=np.float64),
                        1e-3, None))
    return np.exp(np.interp(hv, hs, vs))


def delta_op(h: torch.Tensor | float, table: tuple[tuple[float, float], ...]) -> torch.Tensor:
    """The own coder's quantiser step for budget H, from the LIC-matched table."""
    out = log_log_interp(h, table)
    return torch.as_tensor(np.clip(out, DELTAS[0], DELTAS[-1]), dtype=torch.float32)


def hinge_loss(h_pred: torch.Tensor, h_target: torch.Tensor,
               weight: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 8 made relative: mean w * max(0, (H_pred - H) / H); zero gradient under budget.

    Relative, so a budget of 0.2 bpp overshot by 0.1 weighs as much as 2 bpp overshot by 1
    (in bpp the low budgets' hinge vanished next to the high ones'); ``weight`` (the
    trainer's alpha_bar_t) damps the noisy x0_hat of large t, whose gradient with respect
    to eps is amplified by sqrt((1 - alpha_bar) / alpha_bar) (about 6 at t = 600)."""
    excess = torch.relu((h_pred - h_target) / h_target)
    return (excess if weight is None else weight * excess).mean()


def calibration_loss(h_pred: torch.Tensor, bpp_ref: torch.Tensor) -> torch.Tensor:
    """Eq. 11 in its per-image form: (H_phi at the LIC-matched step - LIC's real bpp)^2."""
    return ((h_pred - bpp_ref) ** 2).mean()


def latent_record(model: LatentDiffusion) -> dict[str, Any]:
    """``cfg.backbone`` of a BADiff on a latent model: which folder, which architecture."""
    assert model.folder is not None and model.folder.vae is not None
    return {"kind": "latent", "source": str(model.folder.root),
            "unet_config_sha256_16": config_fingerprint(model.folder.unet),
            "vae_class": model.folder.vae.class_name,
            "vae_config_sha256_16": config_fingerprint(model.folder.vae)}


def check_backbone_folder(cfg: BADiffConfig, ldm: str | Path | None, where: Path) -> None:
    """The LDM folder must be there exactly when the weights were trained on one, and be
    the architecture they were trained on (JSON only; the precheck calls this)."""
    from diffstream.backbones.pretrained import PretrainedFolderError

    latent = cfg.backbone.get("kind") == "latent"
    if latent and ldm is None:
        raise PretrainedFolderError(f"{where}: these BADiff weights were trained on the latent "
                                    f"diffusion model at {cfg.backbone.get('source')}; pass "
                                    "codec_options.ldm: that folder")
    if not latent and ldm is not None:
        raise PretrainedFolderError(f"{where}: these BADiff weights are for the pixel DDPM, "
                                    f"not a latent model; train BADiff on {ldm} with `python -m "
                                    f"diffstream.training badiff --ldm {ldm} --out OUT` and pass "
                                    "weights: OUT")
    if latent:
        m = inspect_model(ldm)
        if m.vae is None or m.conditional:
            raise PretrainedFolderError(f"{m.root}: BADiff needs an unconditional latent "
                                        "model (UNet2DModel + vae/ or vqvae/)")
        for part, comp in (("unet", m.unet), ("vae", m.vae)):
            if cfg.backbone.get(f"{part}_config_sha256_16") != config_fingerprint(comp):
                raise PretrainedFolderError(
                    f"{where}: trained on another {part} architecture "
                    f"({cfg.backbone.get('source')}) than {comp.path}")


class BADiff(nn.Module):
    """Conditioned DDPM + entropy embedding + H_phi + stop policy.

    ``backbone``: for ``cfg.backbone["kind"] == "latent"``, the ``LatentDiffusion`` whose
    U-Net has the identity class embedding (``load_latent_diffusion(...,
    class_embed_identity=True)``); the pixel DDPM is built from ``cfg.ddpm`` otherwise.
    """

    def __init__(self, cfg: BADiffConfig, backbone: LatentDiffusion | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.ddpm: DDPM | LatentDiffusion
        if cfg.backbone.get("kind") == "latent":
            if backbone is None:
                raise DDPMWeightsError("a BADiff on a latent model needs its LDM folder")
            if getattr(backbone.unet.config, "class_embed_type", None) != "identity":
                raise ValueError("the latent U-Net must be loaded with the identity class "
                                 "embedding (class_embed_identity=True)")
            self.ddpm = backbone
            dim = int(backbone.unet.time_embedding.linear_2.out_features)
            feat = int(backbone.unet.config.block_out_channels[-1])
        else:
            dcfg = DDPMConfig.from_json(cfg.ddpm) if cfg.ddpm else DDPMConfig()
            dcfg.cond_dim = dcfg.time_embed_dim
            dcfg.training = {}
            cfg.ddpm = asdict(dcfg)
            self.ddpm = DDPM(dcfg)
            dim, feat = dcfg.time_embed_dim, dcfg.channels[-1]
        self.embed = EntropyEmbedding(dim, cfg.embed_hidden)
        self.predictor = EntropyPredictor()
        self.policy = StopPolicy(feat, dim, dim)

    @property
    def unet(self) -> nn.Module:
        return self.ddpm.unet

    def cond(self, h: torch.Tensor | float, n: int = 1) -> torch.Tensor:
        """e(H) as the U-Net's class-embedding input (zeros for the unconditioned variant)."""
        dev = next(self.embed.parameters()).device
        ht = torch.as_tensor(h, dtype=torch.float32).reshape(-1).to(dev)
        ht = ht.expand(n) if ht.numel() == 1 else ht
        e = self.embed(ht)
        return e if self.cfg.conditioned else torch.zeros_like(e)

    def eps(self, x: torch.Tensor, t: int | torch.Tensor, h: torch.Tensor | float
            ) -> torch.Tensor:
        return self.ddpm.eps(x, t, self.cond(h, x.shape[0]))

    def delta_op(self, h: torch.Tensor | float) -> torch.Tensor:
        return delta_op(h, self.cfg.delta_op)

    @classmethod
    def from_plain(cls, plain: DDPM | LatentDiffusion, cfg: BADiffConfig | None = None
                   ) -> BADiff:
        """Fine-tuning start: the plain DDPM's weights, the new conditioning path at zero.

        A ``LatentDiffusion`` is reloaded from its folder with the identity class embedding
        (a fresh, trainable copy: the cached plain model stays untouched)."""
        cfg = cfg or BADiffConfig()
        if isinstance(plain, LatentDiffusion):
            assert plain.folder is not None
            bb = load_latent_diffusion(plain.folder.root, device=plain.alpha_bar.device,
                                       class_embed_identity=True)
            bb.unet.requires_grad_(True)
            cfg.ddpm, cfg.backbone = {}, latent_record(bb)
            return cls(cfg, bb)
        cfg.ddpm = {k: v for k, v in asdict(plain.cfg).items() if k != "training"}
        model = cls(cfg)
        model.ddpm.unet.load_state_dict(plain.unet.state_dict(), strict=True)
        return model

    # --- persistence --------------------------------------------------------------------
    def save(self, directory: str | Path, name: str = "badiff") -> Path:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, torch.Tensor] = {}
        for prefix, mod in (("unet.", self.unet), ("embed.", self.embed),
                            ("predictor.", self.predictor), ("policy.", self.policy)):
            for k, v in mod.state_dict().items():
                if k.endswith(_TABLE_BUFFERS):
                    continue  # compressai's CDF tables: rebuilt by update() on load
                half = prefix == "unet." and v.is_floating_point() and v.numel() > FP16_MIN
                tensors[prefix + k] = (v.half() if half else v).detach().cpu().contiguous()
        save_file(tensors, str(out / f"{name}.safetensors"))
        (out / f"{name}.json").write_text(json.dumps(asdict(self.cfg), indent=2) + "\n")
        return out / f"{name}.safetensors"

    @classmethod
    def load(cls, directory: str | Path | None = None, name: str = "badiff",
             ldm: str | Path | None = None, device: str | torch.device = "cpu") -> BADiff:
        """Weights (+ JSON) from ``directory``; ``ldm``: the latent diffusion folder the
        weights were trained on (``python -m diffstream.training badiff --ldm DIR``)."""
        d = Path(directory) if directory is not None else WEIGHTS_DIR
        cfg_path, w_path = d / f"{name}.json", d / f"{name}.safetensors"
        for p in (cfg_path, w_path):
            if not p.is_file():
                how = (f"--ldm {ldm} --out {d}" if ldm is not None
                       else "(needs ddpm weights)")
                raise DDPMWeightsError(f"{p} is missing: train it with `python -m "
                                       f"diffstream.training badiff {how}`")
        cfg = BADiffConfig.from_json(json.loads(cfg_path.read_text()))
        check_backbone_folder(cfg, ldm, cfg_path)
        backbone = (load_latent_diffusion(ldm, class_embed_identity=True)
                    if ldm is not None else None)
        model = cls(cfg, backbone)
        state = load_file(str(w_path), device="cpu")
        for prefix, mod in (("unet.", model.unet), ("embed.", model.embed),
                            ("predictor.", model.predictor), ("policy.", model.policy)):
            sub = {k[len(prefix):]: (v.float() if v.is_floating_point() else v)
                   for k, v in state.items() if k.startswith(prefix)}
            own = {k for k in mod.state_dict() if not k.endswith(_TABLE_BUFFERS)}
            if own - set(sub):
                raise DDPMWeightsError(f"{w_path}: missing {sorted(own - set(sub))[:3]}")
            try:
                mod.load_state_dict(sub, strict=False)
            except RuntimeError as exc:
                raise DDPMWeightsError(f"{w_path}: {exc}") from exc
        model.predictor.entropy_bottleneck.update(force=True)
        return model.to(device).eval()


def target_bpp(budget_bits: int, shape: tuple[int, int]) -> float:
    """The entropy budget H of a frame: its bit budget per pixel, clipped to the trained range."""
    return float(min(max(budget_bits / (shape[0] * shape[1]), H_MIN), H_MAX))


def log_uniform(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return np.exp(rng.uniform(math.log(lo), math.log(hi), n))
