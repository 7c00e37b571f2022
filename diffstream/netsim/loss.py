"""Random packet loss on the link: none, Bernoulli, Gilbert-Elliott.

A loss model answers "which of the next n packets are lost?" as a boolean mask. State
persists across calls, and every model draws its random numbers one packet at a time in
order, so asking for 10 packets twice gives the same mask as asking for 20 once: the loss
pattern depends on the seed and the packet sequence, not on how the link batches frames.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Protocol

import numpy as np


class LossModel(Protocol):
    def lost(self, n: int) -> np.ndarray:
        """Bool mask for the next ``n`` packets, in order; state persists across calls."""
        ...

    def all_arrive(self, n: int) -> float:
        """The probability that ``n`` consecutive packets all arrive, from the model's
        stationary state (what an offline planner that knows the model but not the draws
        expects of one frame's packets)."""
        ...


def _check_prob(name: str, p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
    return float(p)


class NoLoss:
    """Every packet arrives."""

    def lost(self, n: int) -> np.ndarray:
        return np.zeros(n, dtype=bool)

    def all_arrive(self, n: int) -> float:
        return 1.0


class Bernoulli:
    """Each packet is lost independently with probability ``p``."""

    def __init__(self, p: float, seed: int) -> None:
        self.p = _check_prob("p", p)
        self._rng = np.random.Generator(np.random.PCG64(seed))

    def lost(self, n: int) -> np.ndarray:
        return self._rng.random(n) < self.p

    def all_arrive(self, n: int) -> float:
        return float((1.0 - self.p) ** max(0, n))


class GilbertElliott:
    """Two-state Markov loss: bursts of loss in the bad state.

    Per packet: the current state decides the loss probability (``loss_good`` or
    ``loss_bad``), then the state moves (good->bad with ``p_good_to_bad``, bad->good with
    ``p_bad_to_good``). Stationary loss rate = pi_bad * loss_bad + pi_good * loss_good with
    pi_bad = p_gb / (p_gb + p_bg); a bad run lasts 1 / p_bad_to_good packets on average.

    The state path is drawn as geometric run lengths from one generator and the per-packet
    loss coins from another (both from ``seed``), which keeps the cost O(runs) and the mask
    independent of how calls are batched. The first state is drawn from the stationary
    distribution so short runs are not biased towards "good".
    """

    def __init__(
        self,
        p_good_to_bad: float,
        p_bad_to_good: float,
        loss_good: float = 0.0,
        loss_bad: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.p_gb = _check_prob("p_good_to_bad", p_good_to_bad)
        self.p_bg = _check_prob("p_bad_to_good", p_bad_to_good)
        self.loss_good = _check_prob("loss_good", loss_good)
        self.loss_bad = _check_prob("loss_bad", loss_bad)
        state_seq, coin_seq = np.random.SeedSequence(seed).spawn(2)
        self._state_rng = np.random.Generator(np.random.PCG64(state_seq))
        self._coin_rng = np.random.Generator(np.random.PCG64(coin_seq))
        self._bad = bool(self._state_rng.random() < self.pi_bad)
        self._left = self._run_length()  # packets left in the current state

    @property
    def pi_bad(self) -> float:
        total = self.p_gb + self.p_bg
        return self.p_gb / total if total > 0 else 0.0

    @property
    def stationary_loss(self) -> float:
        return self.pi_bad * self.loss_bad + (1.0 - self.pi_bad) * self.loss_good

    def _run_length(self) -> int:
        p = self.p_bg if self._bad else self.p_gb
        return int(self._state_rng.geometric(p)) if p > 0 else sys.maxsize

    def _states(self, n: int) -> np.ndarray:
        """Bad-state flag of the next ``n`` packets, advancing the run state."""
        bad = np.empty(n, dtype=bool)
        i = 0
        while i < n:
            take = min(self._left, n - i)
            bad[i : i + take] = self._bad
            i += take
            self._left -= take
            if self._left == 0:
                self._bad = not self._bad
                self._left = self._run_length()
        return bad

    def all_arrive(self, n: int) -> float:
        """``pi D (T D)^(n-1) 1``: the state decides each packet's fate (``D`` the diagonal
        of arrival probabilities), then moves (``T``); the first packet's state is drawn
        from the stationary distribution ``pi``. Bursts make this larger than
        ``(1 - stationary_loss)^n``: losses cluster in fewer frames."""
        if n <= 0:
            return 1.0
        d = np.array([1.0 - self.loss_good, 1.0 - self.loss_bad])
        t = np.array([[1.0 - self.p_gb, self.p_gb], [self.p_bg, 1.0 - self.p_bg]])
        v = np.array([1.0 - self.pi_bad, self.pi_bad]) * d
        for _ in range(n - 1):
            v = (v @ t) * d
        return float(v.sum())

    def lost(self, n: int) -> np.ndarray:
        bad = self._states(n)
        coins = self._coin_rng.random(n)
        return coins < np.where(bad, self.loss_bad, self.loss_good)


def frame_delivery_prob(loss: LossModel, mtu: int) -> Callable[[float], float] | None:
    """``P(a frame of w on-link bytes arrives whole)`` for a planner (None: no loss). A frame
    of ``w`` on-link bytes is ``ceil(w / mtu)`` packets (``transport.packets``: full packets
    are ``mtu`` bytes on the link)."""
    if isinstance(loss, NoLoss):
        return None
    cache: dict[int, float] = {}

    def prob(wire_bytes: float) -> float:
        n = max(1, math.ceil(float(wire_bytes) / mtu - 1e-9))
        if n not in cache:
            cache[n] = loss.all_arrive(n)
        return cache[n]

    return prob
