"""The observation vector and LearnedPolicy (diffstream/rl/spaces.py, policy.py): numpy
only, so these run without the [rl] extra."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from diffstream.control.policies.base import Observation
from diffstream.errors import ConfigError
from diffstream.rl.policy import FORMAT, SHIPPED, LearnedPolicy, LinearSoftmax, resolve_weights
from diffstream.rl.spaces import FEATURES, SAMPLES, observation_vector
from diffstream.scenario.load import load_scenario
from tests.conftest import tiny_scenario

KIND = "diffstream.rl.policy:LearnedPolicy"


def _obs(samples: tuple[float, ...] = (), **over) -> Observation:
    base = dict(now_s=1.05, frame_index=10, frame_interval_s=0.1, pixels=4096,
                mode="interactive", capture_s=1.0, deadline_s=1.3, throughput_bps=samples,
                rtt_s=0.07 if samples else None, one_way_delay_s=0.035 if samples else None,
                loss_rate=0.01, inflight_bytes=1500.0, buffer_s=0.0, encode_s=0.002,
                decode_s=0.004, min_bits=760, max_bits=16384,
                wire_bytes=lambda b: 60.0 + b / 8.0, backlog_bytes=500.0, skip_run=2,
                skip_run_max_bits=409)
    base.update(over)
    return Observation(**base)


def _vec(obs: Observation) -> dict[str, float]:
    return dict(zip(FEATURES, observation_vector(obs).tolist(), strict=True))


def test_the_vector_layout() -> None:
    v = _vec(_obs(samples=(40e3, 80e3)))
    assert len(FEATURES) == 20 + SAMPLES
    assert v["lag_s"] == pytest.approx(0.05) and v["time_to_deadline_s"] == pytest.approx(0.25)
    assert v["has_feedback"] == 1 and v["rtt_s"] == pytest.approx(0.07)
    assert v["inflight_kB"] == pytest.approx(1.5) and v["backlog_kB"] == pytest.approx(0.5)
    assert v["min_bpp"] == pytest.approx(760 / 4096) and v["max_bpp"] == pytest.approx(4.0)
    assert v["header_kB"] == pytest.approx(0.06) and v["skip_run"] == 2
    # oldest first, left-padded: the newest sample is always the last entry
    assert [v[f"throughput_mbps_{i}"] for i in range(SAMPLES)] == pytest.approx(
        [0.0] * (SAMPLES - 2) + [0.04, 0.08])
    assert v["n_samples"] == 2
    harmonic = 2 / (1 / 40e3 + 1 / 80e3)
    assert v["link_bpp"] == pytest.approx(harmonic * 0.1 / 4096)


def test_the_vector_before_any_feedback_and_in_playback() -> None:
    v = _vec(_obs(mode="playback", deadline_s=None, buffer_s=0.8, backlog_bytes=None))
    assert v["playback"] == 1 and v["has_feedback"] == 0 and v["rtt_s"] == 0
    assert v["time_to_deadline_s"] == pytest.approx(0.9)  # buffer + one interval
    assert v["backlog_kB"] == pytest.approx(1.5)  # no estimate: the in-flight bytes
    assert v["link_bpp"] == 0 and v["n_samples"] == 0
    assert np.isfinite(observation_vector(_obs(samples=(float("inf"),)))).all()


def _weights(tmp_path: Path, levels: list[float], w: np.ndarray, b: list[float],
             name: str = "w.json") -> Path:
    f = len(FEATURES)
    model = LinearSoftmax(tuple(levels), np.zeros(f), np.ones(f), w, np.asarray(b), {})
    path = tmp_path / name
    model.save(path)
    return path


def test_the_policy_takes_the_most_likely_level(tmp_path: Path) -> None:
    # level 1 (1.5 bpp) wins exactly when link_bpp > 0.5
    w = np.zeros((2, len(FEATURES)))
    w[1, FEATURES.index("link_bpp")] = 1.0
    path = _weights(tmp_path, [0.2, 1.5], w, [0.5, 0.0])
    pol = LearnedPolicy(kind=KIND, weights=str(path))
    slow = _obs(samples=(4096 * 10 * 0.4,) * 5)  # the link carried 0.4 bpp a frame
    fast = _obs(samples=(4096 * 10 * 0.6,) * 5)
    assert pol.budget_bits(slow) == int(0.2 * 4096)
    assert pol.budget_bits(fast) == int(1.5 * 4096)
    assert pol.budget_bits(_obs(samples=(4096 * 10 * 9.0,) * 5, max_bits=5000)) == 5000


def test_an_input_far_outside_training_is_clipped(tmp_path: Path) -> None:
    # level 1 needs a standardised header_kB above 6, beyond the clip at +5: never taken
    w = np.zeros((2, len(FEATURES)))
    w[1, FEATURES.index("header_kB")] = 1.0
    pol = LearnedPolicy(kind=KIND, weights=str(_weights(tmp_path, [0.2, 1.5], w, [6.0, 0.0])))
    assert pol.budget_bits(_obs(wire_bytes=lambda b: 1e6 + b / 8.0)) == int(0.2 * 4096)
    # and below the clip the input counts: bias 4 is beaten by a header of 4.5 kB
    pol = LearnedPolicy(kind=KIND, weights=str(_weights(tmp_path, [0.2, 1.5], w, [4.0, 0.0],
                                                        name="w2.json")))
    assert pol.budget_bits(_obs(wire_bytes=lambda b: 4500.0 + b / 8.0)) == int(1.5 * 4096)


def _scenario_with(tmp_path: Path, weights: str) -> Path:
    return tiny_scenario(tmp_path, arms=[{"codec": "jpeg", "policy": {"kind": KIND,
                                                                       "weights": weights}}])


def test_a_missing_weights_file_is_a_config_error_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"arms\[0\]\.policy\.weights.*no such file"):
        load_scenario(_scenario_with(tmp_path, str(tmp_path / "nope.json")))


@pytest.mark.parametrize("damage", ["not json", "format", "features", "shape", "scale"])
def test_a_broken_weights_file_is_a_config_error(tmp_path: Path, damage: str) -> None:
    path = _weights(tmp_path, [0.2, 1.5], np.zeros((2, len(FEATURES))), [0.0, 0.0])
    data = json.loads(path.read_text())
    if damage == "not json":
        path.write_text("{")
    else:
        if damage == "format":
            data["format"] = "something/else"
        elif damage == "features":
            data["features"] = data["features"][:-1]
        elif damage == "shape":
            data["b"] = [0.0]
        else:
            data["scale"][0] = 0.0
        path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"arms\[0\]\.policy\.weights.*not a diffstream.rl"):
        load_scenario(_scenario_with(tmp_path, str(path)))


def test_the_shipped_weights_load_by_name(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = sorted(p.name for p in SHIPPED.glob("*.json"))
    assert "rl_markov_jpeg.json" in shipped
    sc, _ = load_scenario(_scenario_with(tmp_path, "rl_markov_jpeg.json"))
    pol = sc.arms[0].policy
    assert isinstance(pol, LearnedPolicy) and pol.label == "learned(rl_markov_jpeg)"
    data = json.loads((SHIPPED / "rl_markov_jpeg.json").read_text())
    # a file of that name in the current folder does not shadow the shipped one
    monkey = tmp_path / "cwd"
    monkey.mkdir()
    (monkey / "rl_markov_jpeg.json").write_text("{")
    monkeypatch.chdir(monkey)
    assert resolve_weights("rl_markov_jpeg.json") == SHIPPED / "rl_markov_jpeg.json"
    assert resolve_weights("./rl_markov_jpeg.json") == monkey / "rl_markov_jpeg.json"
    assert data["format"] == FORMAT and data["meta"]["scenario"] == "rl_markov"


def test_without_gymnasium_the_env_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gymnasium", None)  # import gymnasium -> ImportError
    from diffstream.rl._gym import MissingExtra, gymnasium

    with pytest.raises(MissingExtra, match=r'pip install -e "\.\[rl\]"'):
        gymnasium()
