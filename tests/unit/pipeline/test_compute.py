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


# --- lookup order: inline > central table > the codec's declaration > measured -----------

DECLARED = {"cpu-2core": ProfileCost(encode_ms=3, decode_ms=2),
            "gpu-x": ProfileCost(encode_ms=1, decode_ms=1, per_step_ms=0.5)}


def test_declared_costs_charge_the_named_profile() -> None:
    m = ComputeModel(ComputeSpec(kind="profile", profile="gpu-x"))
    charge = m.for_codec("c", DECLARED)
    assert charge.source == "declared" and charge.deterministic
    assert charge.encode_s(99.0, steps=4) == pytest.approx(0.003)
    assert m.for_codec("c", {"other": DECLARED["cpu-2core"]}).source == "measured"
    assert m.for_codec("c", {"other": DECLARED["cpu-2core"]}).encode_s(0.25) == 0.25


def test_central_table_overrides_a_declaration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PROFILES, "gpu-x", {"c": ProfileCost(encode_ms=50, decode_ms=40)})
    charge = ComputeModel(ComputeSpec(profile="gpu-x")).for_codec("c", DECLARED)
    assert charge.source == "table" and charge.encode_s(0.0) == pytest.approx(0.05)
    other = ComputeModel(ComputeSpec(profile="gpu-x")).for_codec("d", DECLARED)
    assert other.source == "declared"  # the table overrides only the codecs it names


def test_inline_profile_wins_and_ignores_declarations() -> None:
    inline = ComputeSpec(profile={"c": ProfileCost(encode_ms=7, decode_ms=7)})
    assert ComputeModel(inline).for_codec("c", DECLARED).encode_s(0.0) == pytest.approx(0.007)
    missing = ComputeModel(inline).for_codec("d", DECLARED)
    assert missing.source == "measured" and missing.decode_s(0.5) == 0.5


def test_measured_kind_ignores_every_table() -> None:
    charge = ComputeModel(ComputeSpec(kind="measured")).for_codec("c", DECLARED)
    assert charge.source == "measured" and not charge.deterministic
    assert charge.encode_s(0.125, steps=9) == 0.125


def test_central_table_holds_no_codec_costs() -> None:
    """The costs live in the codecs now; the table only overrides (and the network-only
    stand-in, which is not a codec)."""
    assert set(PROFILES["cpu-2core"]) == {"fixed"}
