"""`python -m benchmarks.ope`: the Evaluator's gate on 1M logged rows (not a timed test).

Times each stage of the Evaluator's work (app/loop/evaluator.py) on synthetic logged data
of the demo's shape (rank 20, 20 arms): the logged rows as arrays (`gate.logged_rows`, from
the (observation, action, reward, propensity) tuples the warehouse's pages give), the
candidate's and the serving policy's action distributions (LinUCB scores + ε-greedy), and
`gate.decide` (cross-fitted reward model, IPS + SNIPS + DR with intervals, the serving
policy's value and the paired lower bound). Not timed: reading the claimed rows from the
warehouse. Results: docs/safe-promotion.md.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from app.agents import AgentSpec, linear_bandit
from app.config import GateConfig
from app.evaluation import gate, ope
from app.exploration import EPSILON_GREEDY, Exploration, probabilities

ROWS, RANK, ARMS = 1_000_000, 20, 20


def main() -> int:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS, RANK))
    actions = rng.integers(ARMS, size=ROWS)
    rewards = rng.normal(3.5, 1.0, size=ROWS)
    pages = [
        (row, int(a), float(r), 1 / ARMS)
        for row, a, r in zip(x.tolist(), actions.tolist(), rewards.tolist(), strict=True)
    ]
    exploration = Exploration(EPSILON_GREEDY, 0.1)
    policies = []
    for seed in (1, 2):
        model = linear_bandit(AgentSpec("linucb", ARMS, RANK, alpha=1.0, tikhonov_weight=1.0))
        some = np.random.default_rng(seed).integers(ROWS, size=10_000)
        model.update(x[some], actions[some], rewards[some])
        policies.append(model)
    timings = {}
    started = time.perf_counter()
    logged = gate.logged_rows(iter(pages), holdout_every=0)
    assert logged is not None
    timings["logged rows as arrays"] = time.perf_counter() - started
    distributions = []
    for name, model in zip(("candidate", "serving"), policies, strict=True):
        started = time.perf_counter()
        distributions.append(
            ope.in_chunks(lambda rows, m=model: probabilities(m.scores(rows), exploration), x)
        )
        timings[f"{name} distribution"] = time.perf_counter() - started
    started = time.perf_counter()
    decision = gate.decide(
        "bench", "v-candidate", "v-serving", logged, gate.Candidates(*distributions), GateConfig()
    )
    timings["gate.decide"] = time.perf_counter() - started
    for stage, seconds in timings.items():
        print(f"{stage:>24}: {seconds:6.2f} s")
    print(f"{'total':>24}: {sum(timings.values()):6.2f} s for {ROWS:,} rows")
    print(decision.decision, {k: round(getattr(decision, k), 4) for k in ("ips", "snips", "dr")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
