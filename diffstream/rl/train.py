"""Train a ``LearnedPolicy`` in ``BudgetEnv`` with the cross-entropy method::

    python -m diffstream.rl.train SCENARIO --arm ARM --out WEIGHTS.json

CEM (Rubinstein 1999; as used for policy search, e.g. Szita & Lőrincz 2006): a Gaussian over
the linear-softmax weights; each iteration samples ``--population`` weight vectors, scores
each by the greedy policy's return (the arm's modelled ``diffstream`` QoE, averaged over
the training seeds), and refits the mean and the per-weight deviation to the best
``--elite`` fraction (plus a small noise floor that decays, so the search does not
collapse early). Why CEM and not policy gradients: the return is a single episode score,
the model has a few hundred weights, and CEM needs neither gradients nor a value function,
only episodes (about 0.4 s each for 300 frames). Everything is seeded (``--seed``).

The features are standardised with the mean and deviation of the observations of one
episode per training seed at the middle ladder level (the policy clips them to +-5). At
the end it prints the learned policy's return next to the ``rate`` and ``mpc`` policies
(run through the normal simulator over the same endpoints, scored the same way) on the
training seeds and on held-out seeds, and writes the weights with that comparison in
their ``meta``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from diffstream.control.policies.mpc import MPCPolicy
from diffstream.control.policies.simple import RatePolicy
from diffstream.errors import DiffstreamError
from diffstream.rl.policy import LearnedPolicy, LinearSoftmax
from diffstream.rl.spaces import DEFAULT_LEVELS_BPP, FEATURES

if TYPE_CHECKING:  # imported in main: without gymnasium the command says what to install
    from diffstream.rl.env import BudgetEnv


def episode_return(env: BudgetEnv, model: LinearSoftmax, seed: int) -> float:
    obs, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        obs, r, done, _, _ = env.step(model.act(obs))
        total += r
    return total


def feature_stats(env: BudgetEnv, seeds: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and deviation of the observations at the middle level. The deviation is at
    least a tenth of the feature's mean (a nearly constant feature, such as the header
    size, must not turn a small change outside training into a large input) and 1 for a
    constant feature."""
    rows = []
    mid = env.action_space.n // 2
    for s in seeds:
        obs, _ = env.reset(seed=s)
        done = False
        while not done:
            rows.append(obs)
            obs, _, done, _, _ = env.step(mid)
    x = np.asarray(rows, np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(std > 1e-6, np.maximum(std, 0.1 * np.abs(mean)), 1.0)
    return mean, std


def train(env: BudgetEnv, *, iterations: int, population: int, elite: float, seeds: list[int],
          rng_seed: int, log: Any = print) -> tuple[LinearSoftmax, list[float]]:
    """CEM over (w, b); returns the final mean's model and the per-iteration elite means."""
    rng = np.random.default_rng(rng_seed)
    mean_x, scale_x = feature_stats(env, seeds)
    n, f = len(env.levels), len(FEATURES)
    dim = n * (f + 1)
    mu, sigma = np.zeros(dim), np.full(dim, 0.5)
    n_elite = max(2, round(elite * population))

    def model(theta: np.ndarray, meta: dict[str, Any] | None = None) -> LinearSoftmax:
        w = theta[: n * f].reshape(n, f)
        return LinearSoftmax(env.levels, mean_x, scale_x, w, theta[n * f:], meta or {})

    def score(theta: np.ndarray) -> float:
        return float(np.mean([episode_return(env, model(theta), s) for s in seeds]))

    history: list[float] = []
    t0 = time.perf_counter()
    for it in range(iterations):
        thetas = mu + sigma * rng.standard_normal((population, dim))
        thetas[0] = mu  # keep the current mean in the race
        scores = np.array([score(t) for t in thetas])
        best = np.argsort(scores)[::-1][:n_elite]
        mu = thetas[best].mean(axis=0)
        noise = 0.05 * max(0.0, 1.0 - it / max(1, iterations - 1))
        sigma = thetas[best].std(axis=0) + noise
        history.append(float(scores[best].mean()))
        log(f"iteration {it + 1}/{iterations}: elite mean {history[-1]:.3f}, best "
            f"{scores[best[0]]:.3f}, current mean's {scores[0]:.3f}, sigma "
            f"{sigma.mean():.3f} ({time.perf_counter() - t0:.1f} s)")
    return model(mu), history


def compare(env: BudgetEnv, model: LinearSoftmax, seeds: Sequence[int]) -> dict[str, float]:
    """Mean return over ``seeds``: the learned policy and the rate and mpc policies."""
    out = {"learned": float(np.mean([episode_return(env, model, s) for s in seeds]))}
    for name, pol in (("rate", RatePolicy()), ("mpc", MPCPolicy())):
        out[name] = float(np.mean([env.run_arm_policy(s, pol)[1] for s in seeds]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m diffstream.rl.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", type=Path)
    ap.add_argument("--arm", help="arm label (default: the scenario's only arm)")
    ap.add_argument("--out", type=Path, required=True, help="weights JSON to write")
    ap.add_argument("--iterations", type=int, default=12)
    ap.add_argument("--population", type=int, default=24)
    ap.add_argument("--elite", type=float, default=0.25, help="fraction kept per iteration")
    ap.add_argument("--seeds", type=int, default=2, help="training seeds per evaluation")
    ap.add_argument("--eval-seeds", type=int, default=3, help="held-out seeds at the end")
    ap.add_argument("--seed", type=int, default=0, help="seeds the search and the episodes")
    ap.add_argument("--levels", type=float, nargs="+", default=list(DEFAULT_LEVELS_BPP),
                    help="bits-per-pixel ladder (the actions)")
    args = ap.parse_args(argv)
    if args.iterations < 1 or args.population < 2 or not 0 < args.elite <= 1:
        ap.error("need --iterations >= 1, --population >= 2 and 0 < --elite <= 1")
    try:
        from diffstream.rl.env import BudgetEnv

        t0 = time.perf_counter()
        env = BudgetEnv(args.scenario, args.arm, levels_bpp=tuple(args.levels),
                        dense_rewards=False)
        print(f"{env.scenario.name} / {env.arm.label}: {env.scenario.frames_per_arm} frames "
              f"an episode, {len(env.levels)} levels, {len(FEATURES)} features; codec floor "
              f"{env.min_bits} bits (calibrated in {time.perf_counter() - t0:.1f} s)",
              flush=True)
        base = 1000 * args.seed
        seeds = [base + i for i in range(args.seeds)]
        held_out = [base + 500 + i for i in range(args.eval_seeds)]
        model, history = train(env, iterations=args.iterations, population=args.population,
                               elite=args.elite, seeds=seeds, rng_seed=args.seed,
                               log=lambda s: print(s, flush=True))
        train_s = time.perf_counter() - t0
        on_train = compare(env, model, seeds)
        on_held = compare(env, model, held_out)
        for name, res in (("training seeds", on_train), ("held-out seeds", on_held)):
            print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in res.items()))
        meta = {"scenario": env.scenario.name, "arm": env.arm.label, "seed": args.seed,
                "iterations": args.iterations, "population": args.population,
                "elite": args.elite, "train_seeds": seeds, "held_out_seeds": held_out,
                "train_s": round(train_s, 1), "elite_means": history,
                "return_train_seeds": on_train, "return_held_out_seeds": on_held}
        LinearSoftmax(model.levels_bpp, model.mean, model.scale, model.w, model.b,
                      meta).save(args.out)
        LearnedPolicy(kind="diffstream.rl.policy:LearnedPolicy", weights=str(args.out))
    except DiffstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"wrote {args.out} (trained in {train_s:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
