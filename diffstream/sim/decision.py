"""A budget decision handed out of the simulation (the arm driven from outside, e.g. by
``diffstream.rl.env.BudgetEnv``).

The sender process yields a ``Decision`` where it would have asked the policy, and whoever
drives the SimPy environment answers it with ``decide(bits)``. The answer is scheduled at
the current instant with a priority ahead of every other event (SimPy's own ``URGENT`` is
0), so the process resumes as the very next step: nothing else runs between the
observation and the encode, exactly as when the policy answers synchronously. That is what
makes a replayed run identical to the original one frame by frame.
"""

from __future__ import annotations

import simpy

from diffstream.control.policies.base import Observation

FIRST = -1  # ahead of simpy.core.URGENT (0) and NORMAL (1) at the same instant


class Decision(simpy.Event):
    """A pending budget decision for frame ``obs.frame_index``."""

    def __init__(self, env: simpy.Environment, obs: Observation) -> None:
        super().__init__(env)
        self.obs = obs

    def decide(self, budget_bits: int) -> None:
        """Answer with a budget; the waiting sender process resumes at the next step."""
        if self.triggered:
            raise RuntimeError(f"frame {self.obs.frame_index}: budget already decided")
        # what Event.succeed does, but at the FIRST priority (simpy's Initialize and
        # Timeout set these two fields the same way)
        self._ok = True
        self._value = int(budget_bits)
        self.env.schedule(self, FIRST)
