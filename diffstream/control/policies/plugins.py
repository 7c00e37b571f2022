"""Policies from outside diffstream: ``policy: {kind: "package.module:ClassName", ...}`` or
a name an installed distribution registers under the entry-point group
``diffstream.policies``.

A plugin policy is either

- a ``PolicyModel`` subclass (recommended): pydantic fields are its options, validated with
  ``extra="forbid"`` like the built-in policies; it keeps the inherited ``kind: str`` (the
  reference is stored there, so a worker process that re-validates the scenario finds the
  class again); or
- any class with ``budget_bits(obs) -> int``: its options are validated by its ``Options``
  pydantic model when it has one (the constructor gets the validated fields), else bound
  against its constructor's signature. It is wrapped in ``ClassPolicy``.

``validate_policy`` routes a ``policy:`` mapping: a plugin kind is resolved here, anything
else goes to the built-in discriminated union unchanged (so its error messages are too).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError
from pydantic_core import PydanticCustomError

from diffstream.control.feedback import DeliveryReport
from diffstream.control.policies.base import Observation, PolicyModel
from diffstream.plugins import (
    POLICIES_GROUP,
    Loaded,
    PluginError,
    describe_object,
    entry_points_in,
    is_import_path,
    load_entry_point,
    load_import_path,
)

_RESOLVED: dict[str, Loaded] = {}


class ClassPolicy(PolicyModel):
    """A plugin policy that is a plain class, behind the ``PolicyModel`` interface.

    Its options are stored as extra fields (so the resolved scenario shows them and a worker
    rebuilds the same policy from it); the instance is built once, at validation.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    _impl: Any = PrivateAttr(None)

    @property
    def label(self) -> str:
        label = getattr(self._impl, "label", None)
        return label if isinstance(label, str) else self.kind

    @property
    def needs_rate_quality(self) -> bool:
        """The wrapped class's ``needs_rate_quality`` (``obs.rate_quality`` is then filled)."""
        return getattr(self._impl, "needs_rate_quality", False) is True

    def budget_bits(self, obs: Observation) -> int:
        return int(self._impl.budget_bits(obs))

    def on_report(self, report: DeliveryReport, now_s: float) -> None:
        """The wrapped class's optional ``on_report`` hook (see ``SenderCore.on_report``)."""
        hook = getattr(self._impl, "on_report", None)
        if callable(hook):
            hook(report, now_s)

    def predicted_throughput_bps(self, obs: Observation) -> float | None:
        """The wrapped class's prediction, when it has one (logged per frame)."""
        predict = getattr(self._impl, "predicted_throughput_bps", None)
        return predict(obs) if callable(predict) else None


def is_plugin_kind(kind: Any, builtin: set[str]) -> bool:
    """A ``kind`` that names a plugin: an import path, or an entry-point name that is not
    a built-in kind (built-ins win)."""
    return (isinstance(kind, str) and kind not in builtin
            and (is_import_path(kind) or kind in entry_points_in(POLICIES_GROUP)))


def entry_point_policy_names(builtin: set[str]) -> list[str]:
    return sorted(n for n in entry_points_in(POLICIES_GROUP) if n not in builtin)


def policy_class(ref: str) -> Loaded:
    """Resolve a plugin policy reference and check the contract (PluginError otherwise)."""
    if ref in _RESOLVED:
        return _RESOLVED[ref]
    eps = entry_points_in(POLICIES_GROUP)
    loaded = load_import_path(ref) if is_import_path(ref) else load_entry_point(eps[ref])
    cls = loaded.obj
    if not isinstance(cls, type):
        raise PluginError(f"{ref!r} is {describe_object(cls)}, not a class",
                          "point the kind at the policy class: 'module:ClassName'")
    where = f"{cls.__module__}.{cls.__qualname__} (from {ref!r})"
    if not callable(getattr(cls, "budget_bits", None)) or (
            issubclass(cls, PolicyModel) and cls.budget_bits is PolicyModel.budget_bits):
        raise PluginError(f"{where} is not a policy: it has no budget_bits(obs) method",
                          "a policy needs budget_bits(obs) -> int; see docs/plugins.md")
    _RESOLVED[ref] = loaded
    return loaded


def build_plugin_policy(kind: str, data: Mapping[str, Any]) -> PolicyModel:
    """Validate a plugin policy's mapping; raises pydantic ValidationError, located at
    ``kind`` for a reference that does not resolve, at the option otherwise."""
    try:
        cls = policy_class(kind).obj
    except PluginError as exc:
        raise _error(("kind",), kind, str(exc)) from None
    options = {k: v for k, v in data.items() if k != "kind"}
    if issubclass(cls, PolicyModel):
        try:
            return cls.model_validate({**options, "kind": kind})
        except ValidationError as exc:
            if any(tuple(e.get("loc", ())) == ("kind",) for e in exc.errors()):
                raise _error(("kind",), kind, f"{cls.__qualname__} rejects its own reference "
                             f"{kind!r} as kind; keep PolicyModel's 'kind: str' (do not "
                             "redeclare it as a Literal)") from None
            raise
    return _wrap(cls, kind, options)


def _wrap(cls: type, kind: str, options: dict[str, Any]) -> ClassPolicy:
    model = getattr(cls, "Options", None)
    if isinstance(model, type) and issubclass(model, BaseModel):
        unknown = sorted(set(options) - set(model.model_fields))
        if unknown:  # even when the author's model allows extras: a typo is an error
            raise _error((unknown[0],), options[unknown[0]],
                         f"unknown option; {cls.__qualname__}'s options: "
                         f"{', '.join(sorted(model.model_fields)) or 'none'}")
        validated = model.model_validate(options)  # errors located at the option
        kwargs = {k: getattr(validated, k) for k in type(validated).model_fields}
        stored = validated.model_dump(mode="json")
    else:
        try:
            inspect.signature(cls).bind(**options)
        except TypeError as exc:
            raise _error(("kind",), kind, f"{cls.__qualname__}{inspect.signature(cls)} does "
                         f"not take these options: {exc}") from None
        kwargs, stored = dict(options), dict(options)
    try:
        impl = cls(**kwargs)
    except Exception as exc:  # noqa: BLE001 - the plugin's constructor: report, not crash
        raise _error(("kind",), kind, f"{cls.__qualname__}(...) raised "
                     f"{type(exc).__name__}: {exc}") from None
    policy = ClassPolicy(kind=kind, **stored)
    policy._impl = impl
    return policy


def _error(loc: tuple[Any, ...], value: Any, reason: str) -> ValidationError:
    return ValidationError.from_exception_data("policy", [{
        "type": PydanticCustomError("policy_reference", "{reason}", {"reason": reason}),
        "loc": loc, "input": value}])
