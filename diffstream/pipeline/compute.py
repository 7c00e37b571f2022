"""Charging codec work to virtual time (docs/architecture.md, "Virtual time").

Codec work runs for real; what it *costs in simulated time* is either what it took here
(``measured``: realistic for this machine, but run-to-run noise makes the network results
irreproducible) or a device profile's cost (``profile``: per call plus per codec step), which
makes the whole network timeline a pure function of scenario and seed and lets a CPU-only
machine simulate another device.

Each codec declares its own costs per profile (``compute_costs`` on the codec class, with the
numbers and the command that measured them next to them); ``PROFILES`` below overrides them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

# ProfileCost lives in a leaf module so the paper-derived tables can use it without a cycle.
from diffstream.pipeline.device_profiles import PAPER_PROFILES
from diffstream.pipeline.profile_cost import ProfileCost, _Strict


# The scenario's ``compute:`` section. Declared here, not in the scenario schema, so that
# charging owns its types and the schema imports them (no cycle).
class ComputeSpec(_Strict):
    """``measured``: charge what the codec took on this machine (not reproducible).
    ``profile``: charge a device profile's costs (named, or inline per codec): deterministic."""

    kind: Literal["measured", "profile"] = "profile"
    profile: str | dict[str, ProfileCost] = "cpu-2core"


# The central table is an override, not the registry of costs: each codec declares its own
# (``compute_costs`` on the codec class, profile name -> ProfileCost; the ``cpu-2core``
# numbers and the commands that measured them live next to each codec). An entry here wins
# over a codec's declaration for that profile, so a site can correct one codec's cost
# without touching the codec. Lookup order (``ComputeModel.for_codec``): the scenario's
# inline profile > PROFILES[name][codec] > the codec's declared compute_costs[name] >
# measured.
PROFILES: dict[str, dict[str, ProfileCost]] = {
    "cpu-2core": {
        # the network-only endpoints' stand-in codec (``sim.endpoints``): costs nothing
        "fixed": ProfileCost(encode_ms=0.0, decode_ms=0.0),
    },
}

CostSource = Literal["inline", "table", "declared", "measured"]


@dataclass(frozen=True)
class CodecCharge:
    """What one codec's calls cost under a compute spec (``ComputeModel.for_codec``)."""

    codec: str
    cost: ProfileCost | None  # None: charged what it measured
    source: CostSource  # where the cost came from

    @property
    def deterministic(self) -> bool:
        return self.cost is not None

    def encode_s(self, measured_s: float, steps: int = 1) -> float:
        if self.cost is None:
            return measured_s
        return (self.cost.encode_ms + self.cost.per_step_ms * max(0, steps)) / 1000.0

    def decode_s(self, measured_s: float, steps: int = 1) -> float:
        c = self.cost
        if c is None:
            return measured_s
        per_step = c.per_step_ms if c.decode_per_step_ms is None else c.decode_per_step_ms
        return (c.decode_ms + per_step * max(0, steps)) / 1000.0


@dataclass
class ComputeModel:
    """Decides the virtual seconds a codec call costs.

    This module may not import the codecs (docs/architecture.md, the import rule), so a
    codec's declared costs come in from above: the cores pass them to ``for_codec``
    (``declared``: profile name -> cost, from ``codecs.base.declared_costs``).
    """

    spec: ComputeSpec

    def for_codec(self, codec: str, declared: Mapping[str, ProfileCost] | None = None
                  ) -> CodecCharge:
        """The cost of ``codec``: inline profile > PROFILES[name][codec] > ``declared``
        [name] > measured."""
        if self.spec.kind == "measured":
            return CodecCharge(codec, None, "measured")
        if not isinstance(self.spec.profile, str):
            cost = self.spec.profile.get(codec)
            return CodecCharge(codec, cost, "measured" if cost is None else "inline")
        name = self.spec.profile
        cost = PROFILES.get(name, {}).get(codec)
        if cost is not None:
            return CodecCharge(codec, cost, "table")
        cost = (declared or {}).get(name)
        return CodecCharge(codec, cost, "measured" if cost is None else "declared")

    # Shorthands for a codec that declares nothing (tests, network-only runs).
    def deterministic_for(self, codec: str,
                          declared: Mapping[str, ProfileCost] | None = None) -> bool:
        return self.for_codec(codec, declared).deterministic

    def encode_s(self, codec: str, measured_s: float, steps: int = 1) -> float:
        return self.for_codec(codec).encode_s(measured_s, steps)

    def decode_s(self, codec: str, measured_s: float, steps: int = 1) -> float:
        return self.for_codec(codec).decode_s(measured_s, steps)

    @property
    def description(self) -> str:
        if self.spec.kind == "measured":
            return "measured on this machine"
        name = self.spec.profile if isinstance(self.spec.profile, str) else "inline"
        return f"device profile '{name}'"


# The paper-derived GPU profiles (rtx4090-paper, a40-paper): device_profiles.py, docs/compute.md.
PROFILES.update(PAPER_PROFILES)
