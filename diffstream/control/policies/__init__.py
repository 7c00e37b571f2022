"""Budget controllers: ``policy.budget_bits(observation) -> payload bits for this frame``.

A scenario names its policy with ``kind`` plus options; ``PolicySpec`` is what the scenario
loader embeds: the discriminated union of the built-in policies, so a typo in a kind or
option fails at load time with the field's name, plus plugin policies (``kind`` an import
path ``"package.module:ClassName"`` or a ``diffstream.policies`` entry-point name), which
``plugins.py`` resolves and validates with the plugin's own model.
"""

from __future__ import annotations

from typing import Annotated, Any, get_args

from pydantic import Field, SerializeAsAny, TypeAdapter, ValidatorFunctionWrapHandler, WrapValidator

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
from diffstream.control.policies.gcc import GccPolicy
from diffstream.control.policies.mpc import MPCPolicy
from diffstream.control.policies.optimal import OptimalPolicy
from diffstream.control.policies.oracle import OraclePolicy
from diffstream.control.policies.plugins import (
    ClassPolicy,
    build_plugin_policy,
    entry_point_policy_names,
    is_plugin_kind,
)
from diffstream.control.policies.simple import BufferPolicy, DeadlinePolicy, FixedPolicy, RatePolicy

BuiltinPolicySpec = Annotated[
    FixedPolicy | RatePolicy | DeadlinePolicy | BufferPolicy | MPCPolicy | OraclePolicy
    | GccPolicy | OptimalPolicy,
    Field(discriminator="kind"),
]
_BUILTIN_CLASSES = get_args(get_args(BuiltinPolicySpec)[0])


def policy_kinds() -> list[str]:
    """The built-in ``kind`` values, in declaration order."""
    return [get_args(m.model_fields["kind"].annotation)[0] for m in _BUILTIN_CLASSES]


_BUILTIN_KINDS = set(policy_kinds())


def _validate_policy(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    if isinstance(value, PolicyModel) and not isinstance(value, _BUILTIN_CLASSES):
        return value  # an already validated plugin policy (e.g. a sweep's codecs x policies)
    kind = value.get("kind") if isinstance(value, dict) else None
    if is_plugin_kind(kind, _BUILTIN_KINDS):
        return build_plugin_policy(kind, value)
    return handler(value)  # the built-in union, its messages unchanged


# SerializeAsAny: a plugin policy is dumped with its own fields (the union knows none).
PolicySpec = Annotated[SerializeAsAny[BuiltinPolicySpec], WrapValidator(_validate_policy)]

_ADAPTER: TypeAdapter[Any] = TypeAdapter(PolicySpec)


def entry_point_policies() -> list[str]:
    """Policy kinds installed distributions register (``diffstream.policies``)."""
    return entry_point_policy_names(_BUILTIN_KINDS)


def parse_policy(data: Any) -> PolicyModel:
    """Validate a scenario's ``policy:`` mapping (raises pydantic ``ValidationError``)."""
    return _ADAPTER.validate_python(data)


__all__ = [
    "BufferPolicy",
    "BuiltinPolicySpec",
    "ClassPolicy",
    "DeadlinePolicy",
    "FixedPolicy",
    "GccPolicy",
    "MPCPolicy",
    "Observation",
    "OptimalPolicy",
    "OraclePolicy",
    "OracleView",
    "Policy",
    "PolicyModel",
    "PolicySpec",
    "RatePolicy",
    "RateQualityModel",
    "clamp_bits",
    "entry_point_policies",
    "harmonic_mean",
    "parse_policy",
    "payload_bits_for_wire_budget",
    "policy_kinds",
]
