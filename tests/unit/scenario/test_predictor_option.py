"""A policy's ``predictor:`` in a scenario file: typos fail at load with file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffstream.control.predictors import Kalman
from diffstream.errors import ConfigError
from diffstream.scenario.load import load_scenario
from tests.conftest import tiny_scenario


def _load(tmp_path: Path, policy: dict):
    return load_scenario(tiny_scenario(tmp_path, arms=[{"codec": "jpeg", "policy": policy}]))


def test_predictor_loads(tmp_path: Path) -> None:
    sc, _ = _load(tmp_path, {"kind": "mpc", "predictor": {"kind": "kalman",
                                                          "measurement_noise": 0.2}})
    assert sc.arms[0].policy.predictor == Kalman(measurement_noise=0.2)


@pytest.mark.parametrize(("policy", "expected"), [
    ({"kind": "rate", "predictor": {"kind": "ewma", "half_life": [3]}},
     "arms[0].policy.predictor.half_life: Extra inputs are not permitted (unknown key; "
     "did you mean 'half_lives'?)"),
    ({"kind": "mpc", "predictor": {"kind": "kalmann"}},
     "arms[0].policy.predictor.kind: Input tag 'kalmann'"),
    ({"kind": "rate", "window": 3, "predictor": {"kind": "ewma"}},
     "arms[0].policy: Value error, window: an option of the default harmonic-mean predictor"),
])
def test_predictor_typos_name_the_line_and_field(tmp_path: Path, policy: dict,
                                                 expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, policy)
    assert "tiny.yaml:" in str(err.value) and expected in str(err.value)
