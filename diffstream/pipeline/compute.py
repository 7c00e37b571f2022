"""Charging codec work to virtual time (docs/architecture.md, "Virtual time").

Codec work runs for real; what it *costs in simulated time* is either what it took here
(``measured``: realistic for this machine, but run-to-run noise makes the network results
irreproducible) or a device profile's cost (``profile``: per call plus per codec step), which
makes the whole network timeline a pure function of scenario and seed and lets a CPU-only
machine simulate another device.

Built-in profiles hold costs measured for this project's codecs; the numbers and the command
that measured them are listed next to each entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


# The scenario's ``compute:`` section. Declared here, not in the scenario schema, so that
# charging owns its types and the schema imports them (no cycle).
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProfileCost(_Strict):
    encode_ms: float = Field(ge=0)
    decode_ms: float = Field(ge=0)
    per_step_ms: float = Field(0.0, ge=0, description="added per codec step (diffusion)")
    decode_per_step_ms: float | None = Field(
        None, ge=0, description="per step on decode, when it differs (default: per_step_ms); "
        "0 for codecs whose steps all run at the sender (BADiff generates, then codes)")


class ComputeSpec(_Strict):
    """``measured``: charge what the codec took on this machine (not reproducible).
    ``profile``: charge a device profile's costs (named, or inline per codec): deterministic."""

    kind: Literal["measured", "profile"] = "profile"
    profile: str | dict[str, ProfileCost] = "cpu-2core"


# cpu-2core: the 2-core CI/dev machine (Python 3.11, Pillow 13, libjpeg-turbo, libwebp
# method 2), 128x128 frames, mean of 200 calls at budgets cycling 0.25-2 bpp, the encoder's
# budget search included: `python benchmarks/bench_codecs.py` printed jpeg 0.38 / 0.13 ms
# and webp 2.04 / 0.18 ms (encode / decode). Costs are per call, whatever the frame size.
PROFILES: dict[str, dict[str, ProfileCost]] = {
    "cpu-2core": {
        "jpeg": ProfileCost(encode_ms=0.4, decode_ms=0.15),
        "webp": ProfileCost(encode_ms=2.0, decode_ms=0.2),
        "fixed": ProfileCost(encode_ms=0.0, decode_ms=0.0),
        # gic / lic (paper 003): 64x64 frames, one torch thread, Kodak crops with budgets
        # cycling 0.15-1.5 bpp, rate control included: `python benchmarks/bench_gic.py`
        # printed gic 8.42 / 20.37 ms and lic 8.34 / 7.07 ms (encode / decode). The gic
        # decode is the default 2-step sampler (D_theta 5.9 ms per step); per_step_ms stays
        # 0 because steps are also charged on encode, where no D_theta runs. These costs
        # grow with frame size (about 4x at 128x128); use compute: measured or an inline
        # profile for other sizes or step counts.
        "gic": ProfileCost(encode_ms=8.4, decode_ms=20.4),
        "lic": ProfileCost(encode_ms=8.3, decode_ms=7.1),
        # diffc (paper 002): 32x32 frames, one torch thread, `python benchmarks/bench_diffc.py`:
        # encode 15.6 ms per step (U-Net 9.2 + fused PFR 5.6) plus the step it computes and
        # discards when the next one no longer fits; decode 10.4 ms per step plus the DDIM
        # flow denoiser (9 ms per DDIM step, ceil(50 t / 1000) of them). One per-step cost
        # serves both ends, so per_step_ms is their mean and the per-call costs absorb the
        # rest: 170 / 160 ms (encode / decode) at 10 steps, 365 / 355 ms at all 25.
        "diffc": ProfileCost(encode_ms=40.0, decode_ms=30.0, per_step_ms=13.0),
        # BADiff (paper 000) and its baselines: 32x32, one torch thread,
        # `python benchmarks/bench_badiff.py --seeds 6`: U-Net 8.1 ms per step (+0.4 ms for
        # BADiff's stop policy), all at the sender; the receiver only decodes the payload
        # (BADiff's logistic coder 16 ms, LIC 4.5 ms, JPEG/WebP 0.2 ms). Steps are U-Net
        # calls: ~50 for BADiff's adaptive stop, 100 for the full sampler, 20 DPM-Solver,
        # 51 PNDM; per-call costs hold the coding (and Early-Stop's LIC probes).
        "badiff": ProfileCost(encode_ms=125.0, decode_ms=16.0, per_step_ms=8.5,
                              decode_per_step_ms=0.0),
        "cascade-lic": ProfileCost(encode_ms=10.0, decode_ms=4.5, per_step_ms=8.1,
                                   decode_per_step_ms=0.0),
        "cascade-jpeg": ProfileCost(encode_ms=1.0, decode_ms=0.2, per_step_ms=8.1,
                                    decode_per_step_ms=0.0),
        "cascade-webp": ProfileCost(encode_ms=2.5, decode_ms=0.2, per_step_ms=8.1,
                                    decode_per_step_ms=0.0),
        "earlystop-lic": ProfileCost(encode_ms=60.0, decode_ms=4.5, per_step_ms=8.1,
                                     decode_per_step_ms=0.0),
        "dpmsolver-lic": ProfileCost(encode_ms=10.0, decode_ms=4.5, per_step_ms=8.1,
                                     decode_per_step_ms=0.0),
        "pndm-lic": ProfileCost(encode_ms=10.0, decode_ms=4.5, per_step_ms=8.1,
                                decode_per_step_ms=0.0),
    },
}
# Codecs missing from a named profile are charged their measured time and the run says so.


@dataclass
class ComputeModel:
    """Decides the virtual seconds a codec call costs."""

    spec: ComputeSpec

    def _cost(self, codec: str) -> ProfileCost | None:
        if self.spec.kind == "measured":
            return None
        table = (
            PROFILES[self.spec.profile] if isinstance(self.spec.profile, str) else self.spec.profile
        )
        return table.get(codec)

    def deterministic_for(self, codec: str) -> bool:
        return self._cost(codec) is not None

    def encode_s(self, codec: str, measured_s: float, steps: int = 1) -> float:
        cost = self._cost(codec)
        if cost is None:
            return measured_s
        return (cost.encode_ms + cost.per_step_ms * max(0, steps)) / 1000.0

    def decode_s(self, codec: str, measured_s: float, steps: int = 1) -> float:
        cost = self._cost(codec)
        if cost is None:
            return measured_s
        per_step = cost.per_step_ms if cost.decode_per_step_ms is None else cost.decode_per_step_ms
        return (cost.decode_ms + per_step * max(0, steps)) / 1000.0

    @property
    def description(self) -> str:
        if self.spec.kind == "measured":
            return "measured on this machine"
        name = self.spec.profile if isinstance(self.spec.profile, str) else "inline"
        return f"device profile '{name}'"


# The paper-derived GPU profiles (rtx4090-paper, a40-paper): device_profiles.py, docs/compute.md.
from diffstream.pipeline.device_profiles import PAPER_PROFILES  # noqa: E402 (uses ProfileCost)

PROFILES.update(PAPER_PROFILES)
