"""One device profile's cost of one codec: per call and per codec step (``compute:``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProfileCost(_Strict):
    encode_ms: float = Field(ge=0)
    decode_ms: float = Field(ge=0)
    per_step_ms: float = Field(0.0, ge=0, description="added per codec step (diffusion)")
    decode_per_step_ms: float | None = Field(
        None, ge=0, description="per step on decode, when it differs (default: per_step_ms); "
        "0 for codecs whose steps all run at the sender (BADiff generates, then codes)")
