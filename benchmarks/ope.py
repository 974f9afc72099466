"""`python -m benchmarks.ope`: evaluating a candidate on 1M logged rows (not a timed test).

Times each stage of the Evaluator's work on synthetic logged data of the demo's shape
(rank 20, 20 arms): the candidate's action distribution (LinUCB scores + ε-greedy), the
cross-fitted reward model, and IPS + SNIPS + DR with intervals. Results: docs/safe-promotion.md.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from app.agents import AgentSpec, linear_bandit
from app.evaluation import ope, reward_model
from app.exploration import EPSILON_GREEDY, Exploration, probabilities

ROWS, RANK, ARMS = 1_000_000, 20, 20


def main() -> int:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS, RANK))
    actions = rng.integers(ARMS, size=ROWS)
    rewards = rng.normal(3.5, 1.0, size=ROWS)
    logged = ope.Logged(x, actions, rewards, np.full(ROWS, 1 / ARMS))
    model = linear_bandit(AgentSpec("linucb", ARMS, RANK, alpha=1.0, tikhonov_weight=1.0))
    model.update(x[:10_000], actions[:10_000], rewards[:10_000])
    timings = {}
    started = time.perf_counter()
    exploration = Exploration(EPSILON_GREEDY, 0.1)
    target = ope.in_chunks(lambda rows: probabilities(model.scores(rows), exploration), x)
    timings["candidate distribution"] = time.perf_counter() - started
    started = time.perf_counter()
    predicted = reward_model.cross_fitted(x, actions, rewards, ARMS)
    timings["reward model"] = time.perf_counter() - started
    started = time.perf_counter()
    estimates = ope.estimate_all(logged, target, predicted)
    timings["IPS + SNIPS + DR"] = time.perf_counter() - started
    for stage, seconds in timings.items():
        print(f"{stage:>24}: {seconds:6.2f} s")
    print(f"{'total':>24}: {sum(timings.values()):6.2f} s for {ROWS:,} rows")
    print({k: round(v.value, 4) for k, v in estimates.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
