"""LPIPS and DISTS, loaded only from weight files the user points to (nothing is downloaded).

Both metrics are learnt: their numbers mean something only with the published weights, and
those come from the internet (torchvision's ImageNet backbones plus the metrics' own layers).
diffstream never fetches them. Make the file once on a machine with internet, copy it over,
and pass its path.

File format: the ``state_dict`` of the whole metric network (backbone and metric layers),
saved with ``torch.save`` (any suffix) or as ``.safetensors``. Every tensor must be there
with the right shape; a missing file, a file that is not a state dict, or tensors that do not
match the network raise ``diffstream.errors.ConfigError`` naming the path.

Making the files (on a machine with internet, once)::

    pip install lpips DISTS_pytorch
    python - <<'EOF'
    import torch, lpips
    from DISTS_pytorch import DISTS
    for net in ("alex", "vgg", "squeeze"):  # the LPIPS trunks; alex is the usual one
        torch.save(lpips.LPIPS(net=net).state_dict(), f"lpips_{net}.pth")
    torch.save(DISTS().state_dict(), "dists.pth")
    EOF

(``lpips.LPIPS(net=...)`` fetches the torchvision ImageNet trunk and adds the calibrated
linear layers shipped inside the lpips package; ``DISTS()`` fetches torchvision's VGG16 and
reads the alpha/beta weights that DISTS_pytorch installs.) Then
``load_lpips("lpips_alex.pth")`` and ``load_dists("dists.pth")``.

LPIPS is the ``lpips`` package's own network (Zhang et al. 2018, version 0.1), built with a
random trunk (``pretrained=False, pnet_rand=True``: no download) and then filled from the
file with ``strict=True`` (the package's own ``model_path`` loads with ``strict=False``,
which would silently keep random tensors). DISTS (Ding et al. 2020) is written here, because
both packaged implementations fetch weights in their constructors (``DISTS_pytorch`` calls
``torchvision.models.vgg16(pretrained=True)``; ``piq.DISTS`` also downloads its alpha/beta
from a URL). It follows ``DISTS_pytorch`` line for line, with the same parameter names, so
``DISTS_pytorch.DISTS().state_dict()`` loads into it unchanged; the tests check the two give
the same numbers. Unlike the DISTS reference script we never resize large images to 256 px.

Inputs: recon and orig, N x H x W x 3 uint8 RGB (paired). Output: N float64 distances
(0 for identical images, larger is worse). Runs on CUDA when available.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from diffstream.errors import ConfigError

LPIPS_NETS = ("alex", "vgg", "squeeze")
BATCH = 16  # images per forward pass: bounds memory on large frames


# --- loading ---------------------------------------------------------------------------


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ConfigError(f"{path}: weights file not found (make it as the "
                          "diffstream.metrics.perceptual docstring shows)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any reader failure means "not a weights file we can use"
        raise ConfigError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ConfigError(f"{path}: expected a state_dict (a mapping of names to tensors), got "
                          f"{type(state).__name__}")
    return dict(state)


def _load_into(module: nn.Module, path: Path, what: str) -> nn.Module:
    """Fill every tensor of module from the file at path, or raise ConfigError saying why."""
    state = _read_state_dict(path)
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
             for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected),
                             ("wrong shape", wrong)):
            if items:
                more = f" and {len(items) - 5} more" if len(items) > 5 else ""
                parts.append(f"{label}: {', '.join(items[:5])}{more}")
        raise ConfigError(f"{path}: tensors do not match the {what} network ("
                          + "; ".join(parts) + ")")
    module.load_state_dict(state, strict=True)
    return module.eval().requires_grad_(False)


# --- the callable ----------------------------------------------------------------------


def _check_images(recon: np.ndarray, orig: np.ndarray) -> None:
    for label, a in (("recon", recon), ("orig", orig)):
        if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 4 or a.shape[3] != 3:
            desc = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
            raise ValueError(f"{label} must be an N x H x W x 3 uint8 array, got {desc}")
    if recon.shape != orig.shape:
        raise ValueError(f"recon and orig must be paired (same shape): {recon.shape} vs "
                         f"{orig.shape}")
    if recon.shape[0] == 0:
        raise ValueError("recon and orig are empty sets (N = 0)")


class PerceptualMetric:
    """A loaded LPIPS or DISTS network: ``metric(recon, orig)`` -> N distances."""

    def __init__(self, name: str, module: nn.Module, path: Path, *, signed: bool,
                 device: str | torch.device | None = None) -> None:
        self.name = name
        self.path = path
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self._module = module.to(self.device)
        self._signed = signed  # inputs in [-1, 1] (LPIPS) rather than [0, 1] (DISTS)

    def __repr__(self) -> str:
        return f"PerceptualMetric({self.name!r}, {str(self.path)!r}, device={self.device})"

    def _tensor(self, images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
        x = x.permute(0, 3, 1, 2).float() / 255.0
        return x * 2.0 - 1.0 if self._signed else x

    @torch.no_grad()
    def __call__(self, recon: np.ndarray, orig: np.ndarray) -> np.ndarray:
        _check_images(recon, orig)
        out = []
        for start in range(0, len(recon), BATCH):
            r = self._tensor(recon[start : start + BATCH])
            o = self._tensor(orig[start : start + BATCH])
            out.append(self._module(r, o).reshape(-1).double().cpu())
        return torch.cat(out).numpy()


# --- LPIPS -----------------------------------------------------------------------------


def load_lpips(path: str | Path, net: str = "alex", *,
               device: str | torch.device | None = None) -> PerceptualMetric:
    """LPIPS v0.1 (``lpips`` package) with trunk ``net`` ("alex", "vgg" or "squeeze")."""
    if net not in LPIPS_NETS:
        raise ConfigError(f"lpips net must be one of {', '.join(LPIPS_NETS)}, got {net!r}")
    import lpips

    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=`
        warnings.simplefilter("ignore", UserWarning)
        module = lpips.LPIPS(pretrained=False, net=net, pnet_rand=True, verbose=False)
    path = Path(path)
    return PerceptualMetric(f"lpips-{net}", _load_into(module, path, f"LPIPS ({net})"), path,
                            signed=True, device=device)


# --- DISTS -----------------------------------------------------------------------------


class L2Pooling(nn.Module):
    """DISTS's anti-aliased pooling: sqrt(Hann-3x3 blur of x^2), stride 2."""

    def __init__(self, channels: int, filter_size: int = 5, stride: int = 2) -> None:
        super().__init__()
        self.padding = (filter_size - 2) // 2
        self.stride = stride
        a = np.hanning(filter_size)[1:-1]
        g = torch.tensor(a[:, None] * a[None, :], dtype=torch.float32)
        g = g / g.sum()
        self.register_buffer("filter", g[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x**2, self.filter, stride=self.stride, padding=self.padding,
                       groups=x.shape[1])
        return (out + 1e-12).sqrt()


class Dists(nn.Module):
    """DISTS (Ding et al. 2020): VGG16 with L2 pooling; per-channel structure and texture
    similarities of the feature maps, weighted by the learnt alpha and beta."""

    CHANNELS = (3, 64, 128, 256, 512, 512)

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        # VGG16's feature layers, as torchvision numbers them, randomly initialised: the
        # weights come from the file. (vgg16(weights=None) would also build and initialise
        # the 120M-parameter classifier, which takes seconds and is thrown away.)
        features = make_layers(cfgs["D"], batch_norm=False)
        bounds = ((0, 4), (5, 9), (10, 16), (17, 23), (24, 30))
        pools = {4: 64, 9: 128, 16: 256, 23: 512}  # VGG's max-pools become L2 pooling
        for stage, (lo, hi) in enumerate(bounds, start=1):
            seq = nn.Sequential()
            if lo - 1 in pools:
                seq.add_module(str(lo - 1), L2Pooling(channels=pools[lo - 1]))
            for i in range(lo, hi):
                seq.add_module(str(i), features[i])
            setattr(self, f"stage{stage}", seq)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, -1, 1, 1))
        total = sum(self.CHANNELS)
        self.alpha = nn.Parameter(torch.full((1, total, 1, 1), 0.1))
        self.beta = nn.Parameter(torch.full((1, total, 1, 1), 0.1))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = (x - self.mean) / self.std
        feats = [x]  # the raw image is DISTS's first "feature map"
        for stage in (self.stage1, self.stage2, self.stage3, self.stage4, self.stage5):
            h = stage(h)
            feats.append(h)
        return feats

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y: N x 3 x H x W in [0, 1]; returns N distances (1 - weighted similarity)."""
        fx, fy = self.features(x), self.features(y)
        c1 = c2 = 1e-6
        w_sum = self.alpha.sum() + self.beta.sum()
        alpha = torch.split(self.alpha / w_sum, list(self.CHANNELS), dim=1)
        beta = torch.split(self.beta / w_sum, list(self.CHANNELS), dim=1)
        dist1 = dist2 = 0.0
        for k in range(len(self.CHANNELS)):
            x_mean = fx[k].mean([2, 3], keepdim=True)
            y_mean = fy[k].mean([2, 3], keepdim=True)
            s1 = (2 * x_mean * y_mean + c1) / (x_mean**2 + y_mean**2 + c1)
            dist1 = dist1 + (alpha[k] * s1).sum(1, keepdim=True)
            x_var = ((fx[k] - x_mean) ** 2).mean([2, 3], keepdim=True)
            y_var = ((fy[k] - y_mean) ** 2).mean([2, 3], keepdim=True)
            xy_cov = (fx[k] * fy[k]).mean([2, 3], keepdim=True) - x_mean * y_mean
            s2 = (2 * xy_cov + c2) / (x_var + y_var + c2)
            dist2 = dist2 + (beta[k] * s2).sum(1, keepdim=True)
        return (1 - (dist1 + dist2)).reshape(-1)


def load_dists(path: str | Path, *, device: str | torch.device | None = None) -> PerceptualMetric:
    """DISTS with the weights in the file at path (see the module docstring)."""
    path = Path(path)
    return PerceptualMetric("dists", _load_into(Dists(), path, "DISTS"), path, signed=False,
                            device=device)
