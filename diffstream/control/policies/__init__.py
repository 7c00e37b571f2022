"""Budget controllers: ``policy.budget_bits(observation) -> payload bits for this frame``.

A scenario names its policy with ``kind`` plus options; ``PolicySpec`` is the discriminated
union the scenario loader embeds, so a typo in a kind or option fails at load time with the
field's name.
"""

from __future__ import annotations

from typing import Annotated, Any, get_args

from pydantic import Field, TypeAdapter

from diffstream.control.policies.base import (
    Observation,
    OracleView,
    Policy,
    PolicyModel,
    RateQualityModel,
    clamp_bits,
    harmonic_mean,
    payload_bits_for_wire_budget,
)
from diffstream.control.policies.mpc import MPCPolicy
from diffstream.control.policies.oracle import OraclePolicy
from diffstream.control.policies.simple import BufferPolicy, DeadlinePolicy, FixedPolicy, RatePolicy

PolicySpec = Annotated[
    FixedPolicy | RatePolicy | DeadlinePolicy | BufferPolicy | MPCPolicy | OraclePolicy,
    Field(discriminator="kind"),
]

_ADAPTER: TypeAdapter[Any] = TypeAdapter(PolicySpec)


def policy_kinds() -> list[str]:
    """The ``kind`` values a scenario may use, in declaration order."""
    members = get_args(get_args(PolicySpec)[0])
    return [get_args(m.model_fields["kind"].annotation)[0] for m in members]


def parse_policy(data: Any) -> PolicyModel:
    """Validate a scenario's ``policy:`` mapping (raises pydantic ``ValidationError``)."""
    return _ADAPTER.validate_python(data)


__all__ = [
    "BufferPolicy",
    "DeadlinePolicy",
    "FixedPolicy",
    "MPCPolicy",
    "Observation",
    "OraclePolicy",
    "OracleView",
    "Policy",
    "PolicyModel",
    "PolicySpec",
    "RatePolicy",
    "RateQualityModel",
    "clamp_bits",
    "harmonic_mean",
    "parse_policy",
    "payload_bits_for_wire_budget",
    "policy_kinds",
]
