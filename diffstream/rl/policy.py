"""``LearnedPolicy``: a trained budget policy, loaded as a policy plugin (numpy only)::

    policy: {kind: "diffstream.rl.policy:LearnedPolicy", weights: lte_small.json}

``weights`` is a JSON file written by ``python -m diffstream.rl.train``: the bare name of a
file shipped in ``diffstream/rl/weights/`` (that file, whatever the current folder holds),
or a path (absolute, or relative to the current folder). A file that cannot be read, or
that does not fit this version's observation vector, is a scenario error on
``policy.weights``.

The model is linear-softmax over the standardised observation vector (``rl/spaces.py``):
``logits = W @ clip((x - mean) / scale, -5, 5) + b``; a run takes the most likely level
(greedy, so a run is deterministic). The clip bounds what a feature outside the training
range can do (a real codec's header is not the network-only header the policy trained
with, a link can be slower than any training seed): a linear model would otherwise
extrapolate it without limit. Why linear and hand-written rather than a torch MLP: the policy
runs in the coordinator at every frame, it must load without torch or gymnasium, and the
cross-entropy method that trains it (``rl/train.py``) searches its few hundred weights
directly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, PrivateAttr, field_validator

from diffstream.control.policies.base import Observation, PolicyModel
from diffstream.rl.spaces import FEATURES, check_levels, level_bits, observation_vector

FORMAT = "diffstream.rl.linear-softmax/1"
CLIP = 5.0  # standardised inputs are clipped to [-CLIP, CLIP]
SHIPPED = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class LinearSoftmax:
    """The policy's parameters (one row of ``w`` per ladder level)."""

    levels_bpp: tuple[float, ...]
    mean: np.ndarray
    scale: np.ndarray
    w: np.ndarray
    b: np.ndarray
    meta: dict[str, Any]

    def logits(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, np.float64) - self.mean) / self.scale
        return self.w @ np.clip(z, -CLIP, CLIP) + self.b

    def act(self, x: np.ndarray) -> int:
        return int(np.argmax(self.logits(x)))

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "features": list(FEATURES),
                "levels_bpp": list(self.levels_bpp), "mean": self.mean.tolist(),
                "scale": self.scale.tolist(), "w": self.w.tolist(), "b": self.b.tolist(),
                "meta": self.meta}

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LinearSoftmax:
        if data.get("format") != FORMAT:
            raise ValueError(f"format is {data.get('format')!r}, expected {FORMAT!r}")
        if list(data.get("features", [])) != list(FEATURES):
            raise ValueError("it was trained on another observation vector (its 'features' "
                             "differ from diffstream.rl.spaces.FEATURES); retrain it")
        levels = check_levels(data["levels_bpp"])
        f, n = len(FEATURES), len(levels)
        arrays = {k: np.asarray(data[k], np.float64) for k in ("mean", "scale", "w", "b")}
        shapes = {"mean": (f,), "scale": (f,), "w": (n, f), "b": (n,)}
        for k, shape in shapes.items():
            if arrays[k].shape != shape or not np.all(np.isfinite(arrays[k])):
                raise ValueError(f"{k} must be {shape} finite numbers, got shape "
                                 f"{arrays[k].shape}")
        if np.any(arrays["scale"] <= 0):
            raise ValueError("scale must be positive")
        return cls(levels, arrays["mean"], arrays["scale"], arrays["w"], arrays["b"],
                   dict(data.get("meta", {})))


def resolve_weights(ref: str) -> Path:
    """``ref`` as a file: a bare name that diffstream ships (``rl_markov_jpeg.json``) is
    the shipped file, whatever the current folder holds (write ``./NAME`` for a file of
    your own with a shipped name); anything else is a path (relative: to the current
    folder)."""
    shipped = SHIPPED / ref
    if Path(ref).name == ref and shipped.is_file():
        return shipped
    path = Path(ref).expanduser()
    if path.is_file():
        return path.resolve()
    names = ", ".join(sorted(p.name for p in SHIPPED.glob("*.json"))) or "none"
    raise ValueError(f"no such file: {ref} (a relative path is read from the current "
                     f"folder; bare names shipped in diffstream/rl/weights/: {names}); "
                     "train one with python -m diffstream.rl.train")


_LOADED: dict[tuple[str, float], LinearSoftmax] = {}


def load_weights(ref: str) -> LinearSoftmax:
    path = resolve_weights(ref)
    key = (str(path), path.stat().st_mtime)
    if key not in _LOADED:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            _LOADED[key] = LinearSoftmax.from_json(data)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a diffstream.rl weights file: {exc}") from None
    return _LOADED[key]


class LearnedPolicy(PolicyModel):
    """A policy trained in ``BudgetEnv``: the greedy level of a linear-softmax model."""

    weights: str = Field(description="weights JSON from python -m diffstream.rl.train")
    _model: LinearSoftmax = PrivateAttr()

    @field_validator("weights")
    @classmethod
    def _readable(cls, v: str) -> str:
        load_weights(v)  # a ValueError here is located at policy.weights
        return v

    def model_post_init(self, context: Any) -> None:
        self._model = load_weights(self.weights)

    @property
    def label(self) -> str:
        return f"learned({Path(self.weights).stem})"

    def budget_bits(self, obs: Observation) -> int:
        m = self._model
        return level_bits(obs, m.levels_bpp[m.act(observation_vector(obs))])
