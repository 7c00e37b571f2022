"""Paper-derived GPU device profiles: what this project's codecs would cost on the GPUs the
papers timed them on, so that a CPU host can simulate a GPU deployment (docs/compute.md).

No GPU was used to make these numbers. Each one is a timing the paper reports, cited to its
table, scaled to this project's network by one rule:

    project ms = paper ms x FLOPs(project network, project frame size)
                           / FLOPs(paper network, paper size)

i.e. the paper's network runs at the paper's FLOPs per millisecond on the paper's GPU, and
ours runs at the same rate. Per codec step (a U-Net call) and per call (coding) are scaled
separately, as ``ProfileCost`` charges them: ``encode_ms + per_step_ms x steps``.
Image codecs (JPEG, WebP) run on the host's CPU in a GPU deployment too, so they keep the
``cpu-2core`` costs (as BADiff's own BPG baseline ran on the CPU, paper 000 App. E).

FLOPs: ``python benchmarks/count_flops.py`` (FlopCounterMode: 2 per multiply-add of every
matmul, convolution and attention, element-wise ops not counted). The project's side on the
real models from the package weights, on real calls at budgets cycling 0.25-2 bpp, at the
frame size of each codec's shipped scenario (gic/lic 64x64, diffc and the BADiff family
32x32); the papers' side on their networks rebuilt from the published architectures. Costs
grow roughly with the pixel count: for other frame sizes use an inline profile (the rule
and the FLOPs below give the numbers).

Caveat (docs/compute.md): the rule assumes the GPU stays as busy on our small networks as on
the papers' large ones. Batch-1 calls of a 1 M-parameter U-Net are bound by kernel launches,
not FLOPs, so a real GPU would be slower than these profiles on the U-Net steps: read them as
the papers' throughput applied to our models, a lower bound on compute time.
"""

from __future__ import annotations

from diffstream.pipeline.profile_cost import ProfileCost

# --------------------------------------------------------------------------- FLOPs (GFLOPs)
# Papers' networks, rebuilt from their published architectures (count_flops.py).
PAPER_BADIFF_UNET_GF = 17.497063  # paper 000 App. F U-Net ([128,256,512,512]), CIFAR 32x32
PAPER_CHENG2020_ENC_GF = 1.431310  # paper 000 App. E LIC = Cheng2020-anchor N=128, 32x32
#                                    padded to 64x64; encode: g_a, h_a, h_s, context, params
PAPER_SD15_UNET_GF = 803.273441  # paper 002: Stable Diffusion 1.5 U-Net, 64x64x4 latent
PAPER_GIC_GF = 201.479  # paper 003 App. C (stated): "#params: 173.457M, 201.479 GFLOPs";
#                         the resolution is not stated, read as one Kodak image (Table 2's)
# This project's networks (count_flops.py --frames 8), per call.
DDPM_UNET_GF = 0.495518  # plain pixel DDPM U-Net, 32x32 (DiffC, the BADiff baselines)
BADIFF_STEP_GF = 0.495616  # conditioned U-Net + stop policy, one BADiff step, 32x32
BADIFF_CODE_ENC_GF = 3.859885  # BADiff's coder in generate (rate search), mean, 32x32
BADIFF_DEC_GF = 0.590758  # BADiff's logistic decoder, 32x32
LIC32_ENC_GF, LIC32_DEC_GF = 0.109245, 0.154522  # lic inside the BADiff baselines, 32x32
GIC64_ENC_GF, GIC64_DEC_GF = 0.436978, 0.927171  # gic, 64x64 (decode: 2 D_theta steps)
LIC64_ENC_GF, LIC64_DEC_GF = 0.436978, 0.618086  # lic, 64x64 (12-channel latent)
# Counts of the same runs: DiffC keeps 11.1 steps on average (one more U-Net call and PFR
# is computed and discarded when the next step no longer fits), sends 5.348 PFR chunks per
# step, and its decoder's DDIM flow denoiser makes 7.625 U-Net calls.
DIFFC_CHUNKS_PER_STEP = 5.348
DIFFC_DDIM_CALLS = 7.625
DIFFC_CHUNK_BITS = 12  # the diffc codec's default chunk_bits
EARLYSTOP_CHECK_EVERY = 5  # earlystop-lic probes LIC (one analysis) every 5 steps

# --------------------------------------------------------------------------- RTX 4090
# Paper 000 Table 2 (DDPM-1k, CIFAR-10 32x32, RTX 4090, ms per image): Cascade + LIC takes
# 115 ms at every budget (1000 U-Net calls, then LIC); BADiff takes 65 ms at the Low budget,
# where it "stops about 50% earlier" (§3.4), i.e. ~500 calls, and its latency falls linearly
# with the steps run (App. D). Two equations, time = calls x step + coding:
BADIFF_T2_CASCADE_LIC_MS = 115.0
BADIFF_T2_LOW_MS = 65.0
BADIFF_FULL_STEPS = 1000
BADIFF_LOW_STOP_FRACTION = 0.5
UNET_STEP_MS_4090 = (BADIFF_T2_CASCADE_LIC_MS - BADIFF_T2_LOW_MS) / (
    BADIFF_FULL_STEPS * (1 - BADIFF_LOW_STOP_FRACTION))  # 0.1 ms per App. F U-Net call
LIC_CODE_MS_4090 = BADIFF_T2_CASCADE_LIC_MS - BADIFF_FULL_STEPS * UNET_STEP_MS_4090  # 15 ms
MS_PER_GF_UNET_4090 = UNET_STEP_MS_4090 / PAPER_BADIFF_UNET_GF  # 0.0057 ms/GFLOP (175 TFLOP/s)
# The 15 ms is per image outside the U-Net: Cheng2020's encode. The paper times no LIC
# decode; the same ms per GFLOP is charged for our decoders.
MS_PER_GF_LIC_4090 = LIC_CODE_MS_4090 / PAPER_CHENG2020_ENC_GF  # 10.48 ms/GFLOP
# Paper 003 App. C Table 2 (Kodak, RTX 4090 + Xeon 8375C): GIC encodes in 123 ms and
# decodes in 280 ms (2 reverse steps); together they are the 201.479 GFLOPs above.
GIC_T2_ENC_MS, GIC_T2_DEC_MS = 123.0, 280.0
MS_PER_GF_GIC_4090 = (GIC_T2_ENC_MS + GIC_T2_DEC_MS) / PAPER_GIC_GF  # 2.0 ms/GFLOP
# Paper 002 §3 (A40): "Encoding a 16-bit chunk takes less than 3 milliseconds" with its
# CUDA PFR kernel. PFR's work grows with its 2^bits candidates, so one of our 12-bit chunks
# costs 3 ms x 2^(12-16). It is the only RCC timing in the papers; the RTX 4090 profile
# uses it as it is (the bound, taken as the cost).
RCC_16BIT_CHUNK_MS = 3.0
RCC_CHUNK_MS = RCC_16BIT_CHUNK_MS * 2.0 ** (DIFFC_CHUNK_BITS - 16)  # 0.1875 ms
RCC_STEP_MS = DIFFC_CHUNKS_PER_STEP * RCC_CHUNK_MS  # ~1.0 ms per DiffC step

# --------------------------------------------------------------------------- A40
# Paper 002 Table 1 (Kodak, A40, SD 1.5): encoding takes 0.6-9.4 s over its 10-150 steps,
# decoding 2.9-8.5 s over 50-150 steps (the ends of each range read as matching). Slopes:
# encode 62.9 ms per step (U-Net + RCC), decode 56.0 ms per step (U-Net; the receiver only
# regenerates the chosen candidates). Intercepts: encode -0.03 s (none), decode 0.1 s (SD's
# VAE decoder, which our pixel DDPM does not have: not charged).
DIFFC_T1_ENC_S, DIFFC_T1_ENC_STEPS = (0.6, 9.4), (10, 150)
DIFFC_T1_DEC_S, DIFFC_T1_DEC_STEPS = (2.9, 8.5), (50, 150)
UNET_STEP_MS_A40 = 1000 * (DIFFC_T1_DEC_S[1] - DIFFC_T1_DEC_S[0]) / (
    DIFFC_T1_DEC_STEPS[1] - DIFFC_T1_DEC_STEPS[0])  # 56 ms per SD 1.5 U-Net call
MS_PER_GF_UNET_A40 = UNET_STEP_MS_A40 / PAPER_SD15_UNET_GF  # 0.070 ms/GFLOP (14 TFLOP/s)

# --------------------------------------------------------------------------- host CPU
# JPEG and WebP run on the host CPU: cpu-2core's measured costs (compute.py,
# benchmarks/bench_codecs.py and bench_badiff.py), per call.
HOST_CPU: dict[str, ProfileCost] = {
    "jpeg": ProfileCost(encode_ms=0.4, decode_ms=0.15),
    "webp": ProfileCost(encode_ms=2.0, decode_ms=0.2),
    "fixed": ProfileCost(encode_ms=0.0, decode_ms=0.0),
}
CASCADE_IMAGE_CODEC_MS = {"cascade-jpeg": (1.0, 0.2), "cascade-webp": (2.5, 0.2)}


def _ddpm_family(unet_ms: float, lic_ms_per_gf: float) -> dict[str, ProfileCost]:
    """BADiff and its baselines: every U-Net step at the sender (decode_per_step 0), the
    coding per call; ``unet_ms``: one plain-DDPM call of ours on this GPU."""
    lic_enc, lic_dec = lic_ms_per_gf * LIC32_ENC_GF, lic_ms_per_gf * LIC32_DEC_GF
    lic = ProfileCost(encode_ms=lic_enc, decode_ms=lic_dec, per_step_ms=unet_ms,
                      decode_per_step_ms=0.0)
    out = {name: lic for name in ("cascade-lic", "dpmsolver-lic", "pndm-lic")}
    # Early-Stop also analyses the predicted x0 with LIC every EARLYSTOP_CHECK_EVERY steps.
    out["earlystop-lic"] = lic.model_copy(
        update={"per_step_ms": unet_ms + lic_enc / EARLYSTOP_CHECK_EVERY})
    for name, (enc, dec) in CASCADE_IMAGE_CODEC_MS.items():
        out[name] = ProfileCost(encode_ms=enc, decode_ms=dec, per_step_ms=unet_ms,
                                decode_per_step_ms=0.0)
    return out


def _diffc(unet_ms: float) -> ProfileCost:
    """Each kept step: one U-Net call and its PFR chunks at the sender, one U-Net call at the
    receiver; per call: the discarded extra step, and the receiver's DDIM denoiser."""
    step = unet_ms + RCC_STEP_MS
    return ProfileCost(encode_ms=step, decode_ms=DIFFC_DDIM_CALLS * unet_ms, per_step_ms=step,
                       decode_per_step_ms=unet_ms)


def _rtx4090() -> dict[str, ProfileCost]:
    unet_ms = MS_PER_GF_UNET_4090 * DDPM_UNET_GF
    return {
        **HOST_CPU,
        # gic/lic: per call (gic's 2 decoder steps are inside decode_ms, as in cpu-2core:
        # its steps are also charged on encode, so per_step_ms stays 0).
        "gic": ProfileCost(encode_ms=MS_PER_GF_GIC_4090 * GIC64_ENC_GF,
                           decode_ms=MS_PER_GF_GIC_4090 * GIC64_DEC_GF),
        "lic": ProfileCost(encode_ms=MS_PER_GF_GIC_4090 * LIC64_ENC_GF,
                           decode_ms=MS_PER_GF_GIC_4090 * LIC64_DEC_GF),
        "badiff": ProfileCost(encode_ms=MS_PER_GF_LIC_4090 * BADIFF_CODE_ENC_GF,
                              decode_ms=MS_PER_GF_LIC_4090 * BADIFF_DEC_GF,
                              per_step_ms=MS_PER_GF_UNET_4090 * BADIFF_STEP_GF,
                              decode_per_step_ms=0.0),
        **_ddpm_family(unet_ms, MS_PER_GF_LIC_4090),
        # DiffC's U-Net is the same pixel DDPM, so paper 000's U-Net rate applies.
        "diffc": _diffc(unet_ms),
    }


def _a40() -> dict[str, ProfileCost]:
    # Paper 002 times only DiffC (and other learned codecs we do not have) on the A40; the
    # other codecs are missing here and charged their measured time (the run says so):
    # use rtx4090-paper for them.
    return {**HOST_CPU, "diffc": _diffc(MS_PER_GF_UNET_A40 * DDPM_UNET_GF)}


PAPER_PROFILES: dict[str, dict[str, ProfileCost]] = {
    "rtx4090-paper": _rtx4090(),  # paper-derived: papers 000 (Table 2) and 003 (App. C)
    "a40-paper": _a40(),  # paper-derived: paper 002 (Table 1, §3)
}
