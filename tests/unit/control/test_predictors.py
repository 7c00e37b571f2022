"""Throughput predictors (control/predictors.py) on synthetic sample series with known answers,
and the ``predictor:`` option of the rate, deadline and MPC policies."""

from __future__ import annotations

import math
import random

import pytest
from pydantic import ValidationError

from diffstream.control.feedback import SenderView
from diffstream.control.policies import DeadlinePolicy, MPCPolicy, RatePolicy, parse_policy
from diffstream.control.policies.base import robust_throughput_bps
from diffstream.control.predictors import (
    SAMPLE_HISTORY,
    Ewma,
    HarmonicMean,
    Kalman,
    robust_discount,
)
from tests.unit.control.test_policy import make_obs

CONSTANT = (2e5,) * 12
STEP = (4e5,) * 10 + (1e5,) * 4  # a 4x drop, four samples ago
rng = random.Random(3)
NOISY = tuple(3e5 * math.exp(rng.gauss(0.0, 0.3)) for _ in range(40))


# --- harmonic mean --------------------------------------------------------------------------


def test_harmonic_mean_by_hand() -> None:
    hm = HarmonicMean(window=3)
    assert hm.predict(CONSTANT) == pytest.approx(2e5)
    assert hm.predict((1e5, 2e5, 4e5)) == pytest.approx(3 / (1e-5 + 0.5e-5 + 0.25e-5))
    assert hm.predict((9e9, 1e5, 2e5, 4e5)) == hm.predict((1e5, 2e5, 4e5))  # window
    assert hm.predict(()) is None and hm.predict((0.0, math.inf)) is None
    # the step: the last 3 samples are all after the drop
    assert hm.predict(STEP) == pytest.approx(1e5)


def test_robust_harmonic_is_the_old_rule_bit_for_bit() -> None:
    for series in (CONSTANT, STEP, NOISY, (1e6, 2e6), ()):
        for window in (1, 3, 5, 8):
            assert (HarmonicMean(window=window, robust=True).predict(series)
                    == robust_throughput_bps(series, window))
    # by hand: (1e6, 2e6), window 5: hm 4e6/3, the 2e6 sample predicted at 1e6 -> error 0.5
    assert HarmonicMean(robust=True).predict((1e6, 2e6)) == pytest.approx(4e6 / 3 / 1.5)


# --- EWMA -----------------------------------------------------------------------------------


def test_ewma_constant_series_predicts_itself() -> None:
    # the zero-start correction: without it a short series would average towards 0
    assert Ewma().predict(CONSTANT[:2]) == pytest.approx(2e5, rel=1e-12)
    assert Ewma().predict(CONSTANT) == pytest.approx(2e5, rel=1e-12)


def test_ewma_by_hand_and_min_of_half_lives() -> None:
    # half-life 1: a = 1/2. Samples 100, 300: S = 50, then 0.5*50 + 0.5*300 = 175;
    # corrected by 1 - 0.5**2 = 0.75 -> 233.33
    assert Ewma(half_lives=(1.0,)).predict((100.0, 300.0)) == pytest.approx(175 / 0.75)
    # on a drop the fast average is lower, on a rise the slow one: min takes the lower
    fast, slow = Ewma(half_lives=(1.0,)), Ewma(half_lives=(8.0,))
    both = Ewma(half_lives=(1.0, 8.0))
    assert both.predict(STEP) == pytest.approx(fast.predict(STEP))
    rise = tuple(reversed(STEP))
    assert both.predict(rise) == pytest.approx(slow.predict(rise))
    assert fast.predict(STEP) < slow.predict(STEP)


def test_ewma_step_weights() -> None:
    # after a step from A to B, n samples in: the half-life-h average weighs the old level
    # by a**n (bias-corrected): a half-life of 1 and 4 samples after -> old weight 1/16
    a, b = 4e5, 1e5
    got = Ewma(half_lives=(1.0,)).predict(STEP)
    w_old = (0.5**4 - 0.5**14) / (1 - 0.5**14)  # the old level's share of the weight
    assert got == pytest.approx(w_old * a + (1 - w_old) * b)


def test_ewma_options_validated() -> None:
    with pytest.raises(ValidationError, match="half_lives"):
        Ewma(half_lives=(3.0, -1.0))
    with pytest.raises(ValidationError, match="half_lives"):
        Ewma(half_lives=())


# --- Kalman ---------------------------------------------------------------------------------


def test_kalman_steady_state_gain_matches_the_closed_form() -> None:
    for q, r in ((0.05, 0.1), (0.01, 0.5), (1.0, 0.01)):
        k = Kalman(process_noise=q, measurement_noise=r)
        prior = (q + math.sqrt(q * q + 4 * q * r)) / 2
        assert k.steady_state_gain() == pytest.approx(prior / (prior + r))
        run = k.steps(NOISY * 5)  # the gain does not depend on the data, only on n
        assert run[0].gain == 1.0  # the first sample sets the state
        assert run[-1].gain == pytest.approx(k.steady_state_gain(), rel=1e-9)
    assert Kalman().steady_state_gain() == pytest.approx(0.5)  # the documented default


def test_kalman_constant_step_and_noise() -> None:
    k = Kalman()
    assert k.predict(CONSTANT) == pytest.approx(2e5, rel=1e-12)
    assert k.predict(()) is None and k.predict((-1.0, math.nan)) is None
    # by hand, defaults (q 0.05, r 0.1): after 100 then 400 the gain is 0.15/0.25 = 0.6 and
    # the log moves 60 % of the way: exp(log 100 + 0.6 log 4)
    assert k.predict((100.0, 400.0)) == pytest.approx(math.exp(math.log(100) + 0.6 * math.log(4)))
    # a step: the estimate moves towards the new level, strictly between the two
    got = k.predict(STEP)
    assert 1e5 < got < 4e5
    # noise around a level: within the samples' spread and near their geometric mean
    geo = math.exp(sum(math.log(x) for x in NOISY) / len(NOISY))
    assert 0.5 * geo < k.predict(NOISY) < 2 * geo


def test_kalman_more_process_noise_tracks_faster() -> None:
    slow = Kalman(process_noise=0.001).predict(STEP)
    fast = Kalman(process_noise=1.0).predict(STEP)
    assert fast < slow  # closer to the new (lower) level
    assert fast == pytest.approx(1e5, rel=0.05)


# --- robust discount ------------------------------------------------------------------------


def test_robust_discount_any_predictor() -> None:
    e = Ewma(half_lives=(1.0,))
    plain = e.predict(STEP)
    errors = [abs(e.predict(STEP[:i]) - STEP[i]) / STEP[i] for i in range(len(STEP) - 5, len(STEP))]
    assert Ewma(half_lives=(1.0,), robust=True).predict(STEP) == pytest.approx(
        plain / (1 + max(errors)))
    assert robust_discount(Kalman().predict, CONSTANT, 5) == pytest.approx(2e5)
    assert Kalman(robust=True).predict(STEP) < Kalman().predict(STEP)


def test_sender_keeps_enough_samples() -> None:
    view = SenderView()
    assert view.samples.maxlen == SAMPLE_HISTORY
    # the EWMA's slow half-life leaves under 0.4 % of weight beyond the kept history
    assert 0.5 ** (SAMPLE_HISTORY / max(Ewma().half_lives)) < 0.004


# --- the predictor option -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rate", "deadline", "mpc"])
def test_predictor_round_trip(kind: str) -> None:
    spec = {"kind": kind, "predictor": {"kind": "kalman", "process_noise": 0.2}}
    policy = parse_policy(spec)
    assert isinstance(policy.predictor, Kalman) and policy.predictor.process_noise == 0.2
    again = parse_policy(policy.model_dump())
    assert again == policy
    obs = make_obs(throughput_bps=NOISY)
    assert policy.predicted_throughput_bps(obs) == policy.predictor.predict(NOISY)
    assert "kalman" in policy.label


@pytest.mark.parametrize(("spec", "field"), [
    ({"kind": "rate", "predictor": {"kind": "ewmaa"}}, "predictor"),
    ({"kind": "rate", "predictor": {"kind": "ewma", "half_life": [3]}}, "half_life"),
    ({"kind": "mpc", "predictor": {"kind": "kalman", "process_noise": -1}}, "process_noise"),
    ({"kind": "deadline", "predictor": {"kind": "harmonic", "windw": 5}}, "windw"),
])
def test_predictor_typos_fail_with_the_field(spec: dict, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_policy(spec)
    assert field in str(err.value)


def test_predictor_and_legacy_window_conflict() -> None:
    with pytest.raises(ValidationError, match="window: an option of the default"):
        RatePolicy(window=3, predictor={"kind": "ewma"})
    with pytest.raises(ValidationError, match="robust"):
        DeadlinePolicy(robust=False, predictor={"kind": "ewma"})
    RatePolicy(window=3)  # fine alone
    RatePolicy(predictor={"kind": "harmonic", "window": 3})  # fine inside


def test_default_predictors_are_todays_rules() -> None:
    obs = make_obs(throughput_bps=NOISY)
    assert RatePolicy(window=4).predicted_throughput_bps(obs) == HarmonicMean(
        window=4).predict(NOISY)
    assert DeadlinePolicy().predicted_throughput_bps(obs) == robust_throughput_bps(NOISY, 5)
    assert DeadlinePolicy(robust=False).predicted_throughput_bps(obs) == HarmonicMean(
        ).predict(NOISY)
    assert MPCPolicy().predicted_throughput_bps(obs) == robust_throughput_bps(NOISY, 5)
    # labels of default arms are unchanged (they name arms and plot legends)
    assert RatePolicy().label == "rate(k=5,s=0.85)"
    assert MPCPolicy().label == "mpc(h=3,L=8,k=5,sw=1,st=50)"


def test_predictor_changes_the_budget() -> None:
    obs = make_obs(throughput_bps=STEP, min_bits=0)
    hm = RatePolicy().budget_bits(obs)
    slow = RatePolicy(predictor={"kind": "ewma", "half_lives": [8.0]}).budget_bits(obs)
    assert slow > hm  # the slow EWMA still remembers the 4x higher rate
