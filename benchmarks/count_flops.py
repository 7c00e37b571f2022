"""FLOPs of the project's codecs and of the papers' networks: the numbers behind the
paper-derived GPU profiles (``diffstream/pipeline/device_profiles.py``, docs/compute.md).

Counting: ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per multiply-add of every
matmul, convolution and attention; element-wise ops are not counted), with a forward
pre-hook counting U-Net calls.

- Project side: the real models loaded from the package weights, at the frame size of each
  codec's shipped scenario (gic/lic 64x64: scenarios/gic_lte.yaml; diffc and the BADiff
  family 32x32: diffc_lte.yaml, badiff_lte.yaml), on real calls: pan-sequence frames (or
  generation requests) at budgets cycling 0.25-2 bpp. A codec's per-step FLOPs are those of
  one U-Net call (plus BADiff's stop policy); its per-call FLOPs are the rest of the call.
- Paper side: each paper's network built from its published architecture with random
  weights (on the meta device where it is large), one forward at the paper's size.

    python benchmarks/count_flops.py [--frames 8] [--json FILE] [--quick]

``--quick`` skips the sampler runs (BADiff generation and DiffC encode/decode), keeping the
single-call counts (used by tests/unit/pipeline/test_device_profiles.py's slow check).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

BPPS = (0.25, 0.5, 1.0, 2.0)
G = 1e9


def flops(fn: Callable[[], Any]) -> tuple[float, dict[str, float], Any]:
    """(total FLOPs, FLOPs per top-level module class, fn's result) of one call."""
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        out = fn()
    per = {k: float(sum(v.values())) for k, v in fc.get_flop_counts().items() if "." not in k}
    return float(fc.get_total_flops()), per, out


class CallCounter:
    """Counts forward calls of a module (the U-Net: the sampler's steps)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.n = 0
        self._h = module.register_forward_pre_hook(self._hook)

    def _hook(self, *_: Any) -> None:
        self.n += 1

    def close(self) -> None:
        self._h.remove()


# --------------------------------------------------------------------------- papers
def paper_flops() -> dict[str, float]:
    from compressai.models import Cheng2020Anchor
    from diffusers import UNet2DConditionModel, UNet2DModel

    out: dict[str, float] = {}
    # Paper 000 App. F: a DDPM U-Net with levels [128, 256, 512, 512], two residual blocks
    # per level, attention at the 8x8 level (down and up) and in the 512-channel bottleneck,
    # on CIFAR-10 32x32. Read as diffusers' UNet2DModel (the DDPM reference layout).
    with torch.device("meta"):
        unet = UNet2DModel(sample_size=32, in_channels=3, out_channels=3,
                           block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                           down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D",
                                             "DownBlock2D"),
                           up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D",
                                           "UpBlock2D"))
        out["badiff_appf_unet_32"] = flops(
            lambda: unet(torch.zeros(1, 3, 32, 32), torch.tensor([500])))[0]
        # Reference point for the counter: DDPM's own CIFAR-10 U-Net (35.7 M parameters,
        # 6.1 GMACs in the pruning literature).
        ddpm = UNet2DModel(sample_size=32, in_channels=3, out_channels=3,
                           block_out_channels=(128, 256, 256, 256), layers_per_block=2,
                           down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D",
                                             "DownBlock2D"),
                           up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D",
                                           "UpBlock2D"))
        out["ddpm_cifar10_unet_32"] = flops(
            lambda: ddpm(torch.zeros(1, 3, 32, 32), torch.tensor([500])))[0]
        # Paper 002 Table 1: Stable Diffusion 1.5's U-Net (its published config) on the
        # 64x64x4 latent of a 512x512 image, one text context of 77 tokens (one pass: the
        # paper communicates at guidance scale ~1).
        sd = UNet2DConditionModel(
            sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768,
            attention_head_dim=8,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                              "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                            "CrossAttnUpBlock2D"))
        out["sd15_unet_64"] = flops(lambda: sd(torch.zeros(1, 4, 64, 64), torch.tensor([500]),
                                              encoder_hidden_states=torch.zeros(1, 77, 768)))[0]
    # Paper 000 App. E: LIC is CompressAI's Cheng2020 (anchor), here N = 128 (its qualities
    # 1-3). CIFAR's 32x32 must be padded to 64x64 (the hyperprior downsamples by 64).
    # Encode = g_a + h_a + h_s + context model + entropy parameters; decode = the same
    # without g_a, h_a, plus g_s (the serial context decode does the same FLOPs).
    torch.manual_seed(0)
    cheng = Cheng2020Anchor(N=128).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        cheng(torch.rand(1, 3, 64, 64))
    sub = {k.split(".", 1)[1]: float(sum(v.values()))
           for k, v in fc.get_flop_counts().items() if k.count(".") == 1}
    common = sub["h_s"] + sub["context_prediction"] + sub["entropy_parameters"]
    out["cheng2020_enc_64"] = sub["g_a"] + sub["h_a"] + common
    out["cheng2020_dec_64"] = common + sub["g_s"]
    return out


# --------------------------------------------------------------------------- project
def _frames(size: int, n: int) -> list:
    from diffstream.content.sources import pan_sequence

    src = pan_sequence(size, size)
    return [src.frame(7 * k) for k in range(n)]


def _budget(k: int, size: int) -> int:
    return int(BPPS[k % len(BPPS)] * size * size)


def lic_gic_flops(n: int) -> dict[str, float]:
    """Per-call encode/decode FLOPs (mean over frames) of gic and lic."""
    from diffstream.codecs import create_codec

    out: dict[str, float] = {}
    for name, size in (("gic", 64), ("lic", 64), ("lic", 32)):
        codec = create_codec(name)
        enc_f, dec_f, decoded = 0.0, 0.0, 0
        for k, frame in enumerate(_frames(size, n)):
            f_e, _, enc = flops(lambda c=codec, f=frame, k=k, s=size: c.encode(f, _budget(k, s)))
            enc_f += f_e
            if not enc.skipped:  # a skipped frame (budget under the floor) has no decode
                dec_f += flops(lambda c=codec, e=enc, s=size:
                               c.decode(e.payload, e.meta, (s, s)))[0]
                decoded += 1
        out[f"{name}_enc_{size}"] = enc_f / n
        out[f"{name}_dec_{size}"] = dec_f / max(1, decoded)
    return out


def unet_flops() -> dict[str, float]:
    """One call of the plain DDPM U-Net (DiffC, the BADiff baselines) at 32x32."""
    from diffstream.codecs.badiff.samplers import load_plain_ddpm

    ddpm = load_plain_ddpm()
    return {"ddpm_unet_32": flops(lambda: ddpm.eps(torch.zeros(1, 3, 32, 32), 500))[0]}


def badiff_flops(n: int) -> dict[str, float]:
    """BADiff generation: per step (conditioned U-Net + stop policy) and the rest of the
    call (the entropy-coded payload's rate search), decode."""
    from diffstream.codecs import create_codec
    from diffstream.content.requests import GenerationRequest

    codec = create_codec("badiff")
    steps_f, code_f, dec_f, calls, decoded = 0.0, 0.0, 0.0, 0, 0
    for k in range(n):
        counter = CallCounter(codec.model.unet)
        total, per, enc = flops(lambda k=k: codec.generate(GenerationRequest(seed=100 + k),
                                                           _budget(k, 32), (32, 32)))
        counter.close()
        step = per.get("UNet2DModel", 0.0) + per.get("StopPolicy", 0.0)
        steps_f, code_f, calls = steps_f + step, code_f + total - step, calls + counter.n
        if not enc.skipped:
            dec_f += flops(lambda e=enc: codec.decode(e.payload, e.meta, (32, 32)))[0]
            decoded += 1
    return {"badiff_step_32": steps_f / calls, "badiff_code_enc_32": code_f / n,
            "badiff_dec_32": dec_f / max(1, decoded), "badiff_mean_steps": calls / n}


def diffc_flops(n: int) -> dict[str, float]:
    """DiffC at 32x32: U-Net calls per encode and decode, PFR chunks per kept step."""
    from diffstream.codecs import create_codec

    codec = create_codec("diffc")
    kept = enc_calls = dec_calls = chunks = decoded = 0
    rest = 0.0
    f_unet = unet_flops()["ddpm_unet_32"]
    for k, frame in enumerate(_frames(32, n)):
        counter = CallCounter(codec.model.unet)
        total, _, enc = flops(lambda f=frame, k=k: codec.encode(f, _budget(k, 32)))
        enc_calls, kept = enc_calls + counter.n, kept + enc.steps
        chunks += sum(s.chunks for s in codec.last_stats.steps[:enc.steps])
        rest += total - counter.n * f_unet
        counter.n = 0
        if not enc.skipped:
            total, _, _ = flops(lambda e=enc: codec.decode(e.payload, e.meta, (32, 32)))
            dec_calls += counter.n - enc.steps  # the DDIM denoiser's calls
            rest += total - counter.n * f_unet
            decoded += 1
        counter.close()
    return {"diffc_mean_kept_steps": kept / n, "diffc_extra_encode_calls": (enc_calls - kept) / n,
            "diffc_chunks_per_step": chunks / max(1, kept),
            "diffc_ddim_calls": dec_calls / max(1, decoded),
            "diffc_other_flops": rest / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=8, help="frames / requests per codec")
    ap.add_argument("--json", help="also write the counts to this JSON file")
    ap.add_argument("--quick", action="store_true", help="single-call counts only")
    args = ap.parse_args()
    torch.set_num_threads(1)
    counts = {**paper_flops(), **unet_flops(), **lic_gic_flops(args.frames)}
    if not args.quick:
        counts.update(badiff_flops(args.frames))
        counts.update(diffc_flops(args.frames))
    for key, value in counts.items():
        shown = f"{value / G:12.6f} GFLOPs" if value > 1e4 else f"{value:12.3f}"
        print(f"{key:28s} {shown}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(counts, fh, indent=1)


if __name__ == "__main__":
    main()
