"""Reinforcement learning over the simulator (issue 19, item 7; docs/policies/rl.md).

``env.BudgetEnv``: one arm of a scenario as a Gymnasium environment (the ``[rl]`` extra).
``policy.LearnedPolicy``: a trained policy, loadable as a policy plugin (numpy only).
``train``: ``python -m diffstream.rl.train SCENARIO --arm ARM --out WEIGHTS`` (CEM).

Only ``env.py`` and ``train.py`` need gymnasium; ``spaces.py`` (the observation vector and
the action ladder) and ``policy.py`` run without it, so a scenario that names the learned
policy runs on a plain install.
"""
