"""``BudgetEnv``: one arm of a scenario as a Gymnasium environment (docs/policies/rl.md).

Each step is one frame: the observation is the policy ``Observation`` of the frame about
to be encoded, as a vector (``rl/spaces.py``); the action is that frame's budget level on a
bits-per-pixel ladder; the reward is the frame's share of the arm's ``diffstream`` QoE
(``rl/reward.py``). The episode is the simulator's own ``ArmSimulation`` with
``external_budget=True``: the sender process hands each budget decision out
(``sim/decision.py``) and the environment advances SimPy's clock to the next one, in the
same thread. So replaying a policy's budgets as actions reproduces that policy's run frame
by frame. The run is network-only with the codec's rate-quality curve (``rl/endpoints.py``
says why).

``terminated`` is true after the arm's last frame (its observation is all zeros);
``truncated`` is never true. ``reset(seed=s)`` runs the scenario with ``seed: s`` (loss and
a seeded synthetic trace change; a file trace does not); ``reset()`` without a seed reruns
the last seed (the scenario's own at first), so an episode is a pure function of the seed
and the actions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from diffstream.control.policies.base import PolicyModel, RateQualityModel
from diffstream.errors import ConfigError
from diffstream.pipeline.records import FrameRecord
from diffstream.rl._gym import gymnasium
from diffstream.rl.endpoints import ModelledEndpoints, calibrate_arm
from diffstream.rl.reward import SlotQuality, cumulative_qoe, modelled_records, qoe_spec
from diffstream.rl.spaces import (
    BOUND,
    DEFAULT_LEVELS_BPP,
    FEATURES,
    check_levels,
    level_bits,
    observation_vector,
)
from diffstream.scenario.build import build_trace
from diffstream.scenario.load import load_scenario
from diffstream.scenario.schema import ArmSpec, Scenario
from diffstream.sim.arm import ArmResult, ArmSimulation
from diffstream.sim.decision import Decision

gym = gymnasium()


def find_arm(scenario: Scenario, label: str | None) -> ArmSpec:
    """The arm called ``label`` (the only arm when None); ConfigError naming the labels."""
    labels = [a.label for a in scenario.arms]
    if label is None and len(labels) == 1:
        return scenario.arms[0]
    for a in scenario.arms:
        if a.label == label:
            return a
    raise ConfigError(f"arm {label!r}: not an arm of scenario {scenario.name}; its arms: "
                      f"{', '.join(labels)}")


class BudgetEnv(gym.Env):
    """One arm as an environment (module docstring).

    ``scenario``: a path or a loaded ``Scenario`` (then ``scenario_path`` resolves its
    relative paths; default: the current folder). ``rate_quality`` and ``min_bits``: the
    codec's curve and floor; by default measured from the arm's codec (``calibrate_arm``).
    """

    metadata = {"render_modes": []}

    def __init__(self, scenario: str | Path | Scenario, arm: str | None = None, *,
                 levels_bpp: tuple[float, ...] = DEFAULT_LEVELS_BPP,
                 scenario_path: str | Path | None = None,
                 rate_quality: RateQualityModel | None = None,
                 min_bits: int | None = None, dense_rewards: bool = True) -> None:
        super().__init__()
        if isinstance(scenario, Scenario):
            self.scenario = scenario
            self.scenario_path = Path(scenario_path or Path.cwd() / "scenario.yaml")
        else:
            self.scenario, self.scenario_path = load_scenario(scenario)
        self.arm = find_arm(self.scenario, arm)
        self.levels = check_levels(levels_bpp)
        if rate_quality is None:
            rate_quality, floor = calibrate_arm(self.scenario, self.arm,
                                                self.scenario_path.parent)
            min_bits = floor if min_bits is None else min_bits
        self.rate_quality = rate_quality
        self.min_bits = int(min_bits or 0)
        # dense_rewards=False: every reward is 0 but the last, which is the whole QoE (the
        # same sum, without rescoring the prefix at every step: what CEM training needs)
        self.dense_rewards = dense_rewards
        self.action_space = gym.spaces.Discrete(len(self.levels))
        self.observation_space = gym.spaces.Box(-BOUND, BOUND, (len(FEATURES),), np.float32)
        self._seed = self.scenario.seed
        self.sim: ArmSimulation | None = None
        self.pending: Decision | None = None
        self.result: ArmResult | None = None
        self._score = 0.0

    # ------------------------------------------------------------------ episodes
    def episode_scenario(self) -> Scenario:
        return self.scenario.model_copy(update={"seed": self._seed})

    def make_simulation(self, *, external_budget: bool) -> ArmSimulation:
        """The arm's simulation for the current seed (external_budget=False: the arm's own
        policy decides, as in a normal run, over the same endpoints)."""
        sc = self.episode_scenario()
        trace = build_trace(sc, self.scenario_path).scaled(sc.link.share)
        endpoints = ModelledEndpoints(sc, self.rate_quality, self.min_bits)
        return ArmSimulation(sc, self.arm, trace, endpoints, calibrate=True,
                             external_budget=external_budget)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self._seed = int(seed)
        self.sim = self.make_simulation(external_budget=True)
        self.sim.start()
        self.result = None
        self._score = 0.0
        self._fill = SlotQuality(self.rate_quality, self.min_bits, qoe_spec(self.scenario).metric)
        self._prefix: list[FrameRecord] = []  # modelled records of the settled frames
        self.pending = self.sim.advance()
        assert self.pending is not None, "an arm has at least one frame"
        return observation_vector(self.pending.obs), {"frame": 0}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.sim is None or self.pending is None:
            raise RuntimeError("call reset() before step() (and after the episode ends)")
        a = int(action)
        if not self.action_space.contains(a):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        frame = self.pending.obs.frame_index
        bits = level_bits(self.pending.obs, self.levels[a])
        self.pending.decide(bits)
        self.pending = self.sim.advance()
        terminated = self.pending is None
        if terminated:
            self.result = self.sim.finish()
            score = self.score(self.result.records)
        elif self.dense_rewards:
            score = cumulative_qoe(self._settled_modelled(), self.scenario)
        else:
            score = self._score
        reward, self._score = score - self._score, score
        info = {"frame": frame, "budget_bits": bits, "qoe_so_far": score}
        if terminated:
            return (np.zeros(len(FEATURES), np.float32), float(reward), True, False, info)
        assert self.pending is not None
        return observation_vector(self.pending.obs), float(reward), False, False, info

    # ------------------------------------------------------------------ records
    def _settled_modelled(self) -> list[FrameRecord]:
        """Modelled records of frames 0..m-1 whose receiver outcome is known so far (a
        settled outcome never changes, so the prefix only grows)."""
        assert self.sim is not None
        seq = len(self._prefix)
        while seq in self.sim.sent and seq in self.sim.results:
            rec = FrameRecord.compose(seq, *self.sim.sent[seq], self.sim.results[seq])
            self._prefix.append(self._fill.next(rec))
            seq += 1
        return self._prefix

    def modelled(self, records: list[FrameRecord]) -> list[FrameRecord]:
        return modelled_records(records, self.rate_quality, self.min_bits,
                                qoe_spec(self.scenario).metric)

    def score(self, records: list[FrameRecord]) -> float:
        """The ``diffstream`` QoE terms of these records' slots (``rl/reward.py``)."""
        return cumulative_qoe(self.modelled(records), self.scenario)

    def run_arm_policy(self, seed: int | None = None, policy: PolicyModel | None = None
                       ) -> tuple[ArmResult, float]:
        """The arm's own policy (or ``policy`` in its place) through the normal simulator
        over the same endpoints, and its QoE as this environment scores it (what its
        rewards would add up to)."""
        if seed is not None:
            self._seed = int(seed)
        sim = self.make_simulation(external_budget=False)
        if policy is not None:  # same label: it travels in every frame's header
            sim.arm = self.arm.model_copy(update={"policy": policy, "name": self.arm.label})
        result = sim.run()
        return result, self.score(result.records)
