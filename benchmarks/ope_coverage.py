"""`python -m benchmarks.ope_coverage`: how often the off-policy intervals hold the truth in
the regime the gate runs in (not a test: a measurement, reported in docs/safe-promotion.md).

tests/test_ope.py proves the stated rate in one regime (8 arms, ε = 0.3 logging, a softmax
target, 1,000 rows). The gate runs with 20 arms, ε-greedy serving (ε = 0.1 in dev and prod,
0.2 in the demo) and a LinUCB candidate served ε-greedy too, on a few hundred to a few
thousand rows. This measures, over 300 seeds of the simulator (synthetic ratings, rank 8),
the 90% two-sided intervals' coverage of the candidate's value and how often the gate's
paired one-sided 90% lower bound lies below the true difference; and, for comparison, the
coverage and width of an interval the gate does not use (`phantom_el_interval`).
"""

from __future__ import annotations

import sys

import numpy as np

from app.agents import AgentSpec, linear_bandit
from app.environment import MovieLensBandit, factorize
from app.evaluation import ope, reward_model
from app.exploration import EPSILON_GREEDY, Exploration, probabilities, sample

ARMS, RANK, USERS, SEEDS, CONFIDENCE = 20, 8, 3000, 300, 0.9
REGIMES = ((512, 0.2), (512, 0.1), (1024, 0.1), (4096, 0.1))  # (rows, ε)


def phantom_el_interval(logged: ope.Logged, target: np.ndarray) -> tuple[float, float]:
    """A candidate remedy, measured here only: the Euclidean (Cressie-Read λ = −2) empirical
    likelihood interval of V from the moments E[w] = 1 and E[w r] = V, with one extra
    "phantom" support point at the largest possible weight W = 1/min propensity whose reward
    is the logged extreme (rmin for the lower end, rmax for the upper), so the interval sees
    heavy rows that were never drawn (after Karampatziakis, Mineiro & Ramdas, "Empirical
    Likelihood for Contextual Bandits", NeurIPS 2020, who use the log likelihood). The
    phantom's mass q0 ∈ [0, 1/W] is profiled on a grid; (nan, nan) if no q0 fits."""
    w, r = ope.weights(logged, target), logged.rewards
    n, wmax = len(w), 1 / logged.propensities.min()
    g = np.stack([np.ones(n), w, w * r])
    inverse = np.linalg.pinv(g @ g.T / n)
    base = np.array([0.0, 1 - w.mean(), -(w * r).mean()])
    q0 = np.linspace(0, 1 / wmax, 257)
    bound = ope.z_value(CONFIDENCE) ** 2 / n  # χ²₁ quantile / n
    ends = []
    for rho, sign in ((r.min(), -1), (r.max(), 1)):
        b = base + q0[:, None] * np.array([-1.0, -wmax, -wmax * rho])
        a, half_b = inverse[2, 2], b @ inverse[:, 2]
        disc = half_b**2 - a * (np.einsum("ij,jk,ik->i", b, inverse, b) - bound)
        if not np.any(disc >= 0):
            return float("nan"), float("nan")
        v = (-half_b[disc >= 0] + sign * np.sqrt(disc[disc >= 0])) / a
        ends.append(float(v.min() if sign < 0 else v.max()))
    return ends[0], ends[1]


def trained(env: MovieLensBandit, interactions: int, seed: int):
    model = linear_bandit(AgentSpec("linucb", ARMS, RANK, alpha=1.0, tikhonov_weight=1.0))
    rng = np.random.default_rng(seed)
    users = rng.integers(env.num_users, size=interactions)
    actions = rng.integers(ARMS, size=interactions)
    model.update(
        env.factorization.user_features[users],
        actions,
        env.factorization.approx_ratings[users, actions],
    )
    return model


def measure(env: MovieLensBandit, rows: int, epsilon: float) -> dict[str, tuple[float, float]]:
    """estimator → (interval coverage, paired lower bound's rate) over SEEDS seeds; and
    "phantom_el" → (its coverage, its median width)."""
    serving, candidate = trained(env, 200, seed=1), trained(env, 5000, seed=2)
    exploration = Exploration(EPSILON_GREEDY, epsilon=epsilon)
    covered = dict.fromkeys(ope.ESTIMATORS, 0)
    held = dict.fromkeys(ope.ESTIMATORS, 0)
    el_covered, el_widths = 0, []
    for seed in range(SEEDS):
        rng = np.random.default_rng(seed)
        users = rng.integers(env.num_users, size=rows)
        x = env.factorization.user_features[users]
        served = probabilities(serving.scores(x), exploration)
        actions, propensities = sample(served, rng)
        logged = ope.Logged(x, actions, env.outcome(users, actions).rewards, propensities)
        target = probabilities(candidate.scores(x), exploration)
        expected = env.factorization.approx_ratings[users]
        truth = float((target * expected).sum(axis=1).mean())
        difference = truth - float((served * expected).sum(axis=1).mean())
        predicted = reward_model.cross_fitted(x, actions, logged.rewards, ARMS)
        for name, e in ope.estimate_all(logged, target, predicted, CONFIDENCE).items():
            covered[name] += e.low <= truth <= e.high
            _, low = ope.difference_lower_bound(name, logged, target, served, predicted, CONFIDENCE)
            held[name] += low <= difference
        el_low, el_high = phantom_el_interval(logged, target)
        el_covered += el_low <= truth <= el_high  # an empty (nan) interval covers nothing
        el_widths.append(el_high - el_low)
    result = {name: (covered[name] / SEEDS, held[name] / SEEDS) for name in ope.ESTIMATORS}
    return result | {"phantom_el": (el_covered / SEEDS, float(np.nanmedian(el_widths)))}


def environment() -> MovieLensBandit:
    """The simulator on synthetic ratings (also tests/test_ope.py's gate-regime case)."""
    rng = np.random.default_rng(5)
    ratings = np.clip(np.round(3 + rng.normal(size=(USERS, 3)) @ rng.normal(size=(3, ARMS))), 1, 5)
    return MovieLensBandit(factorize(ratings, RANK, ARMS), batch_size=1, seed=0)


def main() -> int:
    env = environment()
    print(
        f"{CONFIDENCE:.0%} intervals, {SEEDS} seeds: coverage of V(candidate) | paired bound "
        "(phantom_el: coverage | median width)"
    )
    for rows, epsilon in REGIMES:
        result = measure(env, rows, epsilon)
        cells = "  ".join(f"{n} {c:.2f} | {h:.2f}" for n, (c, h) in result.items())
        print(f"rows {rows:>5}, ε {epsilon}: {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
