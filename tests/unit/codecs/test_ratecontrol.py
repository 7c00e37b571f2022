"""The shared rate-control search (codecs/ratecontrol.py) on synthetic rate functions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffstream.codecs.ratecontrol import (
    DENSE_LIMIT,
    FunctionModel,
    TableModel,
    fit_budget,
    predict_knob,
)


class Counting:
    """A payload of ``size(knob)`` bits (rounded up to bytes), counting real encodes."""

    def __init__(self, size) -> None:  # noqa: ANN001
        self.size = size
        self.calls: list[int] = []

    def __call__(self, knob: int) -> bytes:
        self.calls.append(knob)
        return bytes(math.ceil(self.size(knob) / 8))

    def bits(self, knob: int) -> int:
        return 8 * math.ceil(self.size(knob) / 8)


def optimum(enc: Counting, budget: int, lo: int, hi: int) -> int | None:
    """The best knob by brute force: the largest payload that fits (ties: higher knob)."""
    fits = [(enc.bits(k), k) for k in range(lo, hi + 1) if enc.bits(k) <= budget]
    return max(fits)[1] if fits else None


def exp_curve(k: int) -> float:
    return 400 * math.exp(k / 20)  # bits grow 5 % per knob step, 1..100


def flat_model(lo: int, hi: int) -> TableModel:
    return TableModel({lo: 1000.0, hi: 1000.0})  # knows nothing


@pytest.mark.parametrize("model", [
    TableModel({k: exp_curve(k) for k in (1, 50, 100)}),  # a good model
    TableModel({k: 3 * exp_curve(k) ** 0.7 for k in (1, 30, 60, 100)}),  # wrong shape, scale
    flat_model(1, 100),  # no information at all
])
@pytest.mark.parametrize("bpp_budget", [600, 2000, 9000, 40000, 10**6])
def test_finds_the_optimum_on_a_monotone_curve(model: TableModel, bpp_budget: int) -> None:
    enc = Counting(exp_curve)
    found = fit_budget(enc, bpp_budget, 1, 100, model, max_probes=20)
    assert found.knob == optimum(enc, bpp_budget, 1, 100)
    assert found.bits == enc.bits(found.knob) <= bpp_budget
    assert found.probes == len(enc.calls) == len(set(enc.calls))  # no knob encoded twice
    assert found.probed == {k: enc.bits(k) for k in enc.calls}


def test_a_good_model_needs_few_probes() -> None:
    model = TableModel({k: exp_curve(k) for k in (*range(1, 101, 10), 100)})
    probes = []
    for budget in np.geomspace(500, 50000, 25).astype(int):
        enc = Counting(exp_curve)
        found = fit_budget(enc, int(budget), 1, 100, model)
        assert found.knob == optimum(enc, int(budget), 1, 100)
        probes.append(found.probes)
    assert np.mean(probes) <= 3.5 and max(probes) <= 4  # bracketing the exact optimum


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), budget=st.integers(0, 60000),
       max_probes=st.integers(1, 10))
def test_never_over_budget_and_bounded_on_a_non_monotone_curve(seed: int, budget: int,
                                                               max_probes: int) -> None:
    rng = np.random.default_rng(seed)
    jitter = rng.uniform(0.7, 1.3, 101)  # +-30 %: far rougher than any real codec
    enc = Counting(lambda k: exp_curve(k) * jitter[k])
    found = fit_budget(enc, budget, 1, 100, flat_model(1, 100), max_probes=max_probes)
    assert found.probes <= max_probes + 1  # +1: the floor probe that settles a skip
    assert len(enc.calls) == found.probes
    if found.knob is None:
        assert found.payload == b"" and 1 in enc.calls  # a skip rests on a real encode at lo
        assert found.floor_bits == enc.bits(1) > budget
    else:
        assert found.bits <= budget and found.bits == enc.bits(found.knob)
        # the best of every probe that fitted
        assert found.bits == max(b for b in found.probed.values() if b <= budget)


def test_skip_when_even_the_lowest_knob_does_not_fit() -> None:
    enc = Counting(exp_curve)
    found = fit_budget(enc, 100, 1, 100, TableModel({1: 400.0, 100: 400 * math.e ** 5}))
    assert found.knob is None and found.payload == b"" and found.floor_bits == enc.bits(1)


def test_probe_cap_returns_the_best_so_far() -> None:
    enc = Counting(exp_curve)
    found = fit_budget(enc, 9000, 1, 100, flat_model(1, 100), max_probes=2)
    assert found.probes == 2 and found.knob is not None and found.bits <= 9000


def test_tolerance_stops_early_within_the_budget() -> None:
    enc = Counting(exp_curve)
    exact = fit_budget(Counting(exp_curve), 20000, 1, 100, flat_model(1, 100), max_probes=20)
    rough = fit_budget(enc, 20000, 1, 100, flat_model(1, 100), max_probes=20, tolerance=0.2)
    assert rough.bits <= 20000 and rough.bits >= 0.8 * 20000
    assert rough.probes < exact.probes


def test_large_ranges_are_bisected_on_the_model() -> None:
    """4096 knobs (GIC's q grid): the model is evaluated a few dozen times, not 4096."""
    hi = 4095
    assert hi > DENSE_LIMIT

    def size(k: int) -> float:
        return 500 * math.exp(k / 600)

    evaluated: list[int] = []

    def ideal(k: int) -> float:
        evaluated.append(k)
        return size(k) * 0.9  # a model 10 % low

    enc = Counting(size)
    found = fit_budget(enc, 30000, 0, hi, FunctionModel(ideal), max_probes=12)
    assert found.knob == optimum(enc, 30000, 0, hi)
    assert found.probes <= 6
    assert len(set(evaluated)) < 200


def test_predict_knob_uses_this_calls_probes() -> None:
    model = TableModel({1: 1000.0, 100: 100000.0})
    plain = predict_knob(model, {}, 10000, 0, 101)
    # a probe at the prediction that came out twice as large pulls the next guess down
    corrected = predict_knob(model, {plain: 20000}, 10000, 0, plain)
    assert corrected < plain


def test_table_model_tracks_the_frame() -> None:
    model = TableModel({1: 100.0, 50: 1000.0, 100: 10000.0})
    new = model.updated({50: 2000})
    assert new.points[50] == 2000 and new.points[1] == pytest.approx(200)
    assert model.points[50] == 1000  # frozen: the old model is untouched
    with pytest.raises(ValueError):
        TableModel({})


def test_rejects_an_empty_range() -> None:
    with pytest.raises(ValueError):
        fit_budget(Counting(exp_curve), 1000, 5, 4, flat_model(1, 100))


def test_large_range_model_that_is_not_monotone_everywhere() -> None:
    """GIC's code length grows again at its coarsest q (low knobs). The prediction must find
    the topmost fitting region, not jump to the lowest knob because the bottom does not
    fit (the bug a plain bisection of the model had: 15 dB frames at 32x32)."""
    def size(k: int) -> float:
        return 500 * math.exp(k / 600) if k >= 600 else 500 * math.e * (4 - 3 * k / 600)

    model = FunctionModel(size)
    assert size(0) > 3000 and size(600) < 3000  # the bottom does not fit, the middle does
    assert predict_knob(model, {}, 3000, -1, 4096) == max(
        k for k in range(4096) if size(k) <= 3000)
    enc = Counting(size)
    found = fit_budget(enc, 3000, 0, 4095, FunctionModel(lambda k: 1.05 * size(k)),
                       max_probes=12)
    assert found.knob == optimum(enc, 3000, 0, 4095)
    assert 0 not in enc.calls and found.probes <= 8
