"""Charging codec work to virtual time: per call, per step, and per-end step costs."""

from __future__ import annotations

import pytest

from diffstream.pipeline.compute import PROFILES, ComputeModel, ComputeSpec, ProfileCost


def model(**costs: ProfileCost) -> ComputeModel:
    return ComputeModel(ComputeSpec(kind="profile", profile=costs))


def test_per_step_cost_on_both_ends_by_default() -> None:
    m = model(c=ProfileCost(encode_ms=10, decode_ms=5, per_step_ms=2))
    assert m.encode_s("c", 99.0, steps=3) == pytest.approx(0.016)
    assert m.decode_s("c", 99.0, steps=3) == pytest.approx(0.011)


def test_decode_per_step_overrides_for_sender_side_steps() -> None:
    m = model(g=ProfileCost(encode_ms=100, decode_ms=16, per_step_ms=8, decode_per_step_ms=0))
    assert m.encode_s("g", 0.0, steps=50) == pytest.approx(0.5)
    assert m.decode_s("g", 0.0, steps=50) == pytest.approx(0.016)


def test_missing_codec_is_charged_what_it_measured() -> None:
    m = model(c=ProfileCost(encode_ms=1, decode_ms=1))
    assert not m.deterministic_for("other")
    assert m.encode_s("other", 0.25, steps=7) == 0.25


def test_cpu_profile_covers_every_builtin_codec() -> None:
    from diffstream.codecs.registry import builtin_codec_names

    names = set(builtin_codec_names())
    assert {"jpeg", "webp", "gic", "lic", "diffc", "badiff"} <= names  # not vacuous
    assert names <= set(PROFILES["cpu-2core"])
