"""A run's linear-bandit statistics, computed inside the warehouse by one SQL aggregation.

LinUCB and LinTS (app/linear.py, TF-Agents' LinearBanditAgent) keep per arm the sums
A = Σ x xᵀ, b = Σ r x and a count. Sums can be computed where the rows are: one GROUP BY
action over the run's claimed examples (the ledger's, so each interaction is counted exactly
once, in exactly one run) returns arms × (1 + k + k(k+1)/2) numbers, and no example leaves
the warehouse. The query text is generated once for DuckDB and BigQuery (only the dialect's
table names, parameter marks and array indexing differ).

Proved by tests/test_linear_statistics.py: equal to TF-Agents' `agent.train` on the same
examples, and the BigQuery request the real client sends.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from app.linear import LinearState
from app.warehouse import ledger


def _pairs(rank_k: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(rank_k) for j in range(i, rank_k)]


# The demo's corrupted candidate (gate.corrupt_rewards) learns from this minus each reward:
# a policy that prefers what users dislike (ratings are 1..5).
CORRUPTED_REWARD_FROM = 6.0


def statistics(
    d: ledger.Dialect, rank_k: int, holdout_every: int = 0, corrupt_rewards: bool = False
) -> str:
    """Per claimed action: count, Σ r·x_i and Σ x_i·x_j (i ≤ j), ordered by action.

    `holdout_every` n > 0 leaves out every n-th claimed example in key order (the order
    Warehouse.iter_claimed reads them in), which the Evaluator judges the candidate on
    (app/evaluation/gate.py::held_out); `corrupt_rewards` sums CORRUPTED_REWARD_FROM − r."""
    values = ", ".join(f"{d.element('e.observation', i)} AS x{i}" for i in range(rank_k))
    reward = f"({CORRUPTED_REWARD_FROM:g} - e.reward)" if corrupt_rewards else "e.reward"
    sums = [
        "COUNT(*) AS n",
        *(f"SUM(s.reward * s.x{i}) AS b_{i}" for i in range(rank_k)),
        *(f"SUM(s.x{i} * s.x{j}) AS a_{i}_{j}" for i, j in _pairs(rank_k)),
    ]
    examples, kept = ledger.claimed_unordered(d), "TRUE"
    if holdout_every > 0:
        examples = (
            f"SELECT c.*, ROW_NUMBER() OVER (ORDER BY c.request_id, c.instance_index) - 1 "
            f"AS position FROM ({examples}) AS c"
        )
        kept = f"MOD(e.position, {int(holdout_every)}) != {int(holdout_every) - 1}"
    return f"""SELECT s.action, {", ".join(sums)}
FROM (SELECT e.action, {reward} AS reward, {values} FROM ({examples}) AS e WHERE {kept}) AS s
GROUP BY s.action
ORDER BY s.action"""


def to_state(rows: Iterable[Sequence[float]], rank_k: int, num_actions: int) -> LinearState:
    """The aggregation's rows (action, n, b…, a…) as the agent's variables; arms without
    examples stay zero."""
    state = LinearState.zeros(num_actions, rank_k)
    upper = tuple(np.array(_pairs(rank_k)).T)
    for row in rows:
        action = int(row[0])
        if not 0 <= action < num_actions:  # the claim admits none: a broken ledger would
            raise ValueError(f"claimed examples hold action {action}, outside 0..{num_actions - 1}")
        values = np.asarray(row[1:], dtype=np.float64)
        state.num_samples[action] = values[0]
        state.data_vector[action] = values[1 : 1 + rank_k]
        cov = np.zeros((rank_k, rank_k))
        cov[upper] = values[1 + rank_k :]
        state.cov_matrix[action] = cov + np.triu(cov, 1).T
    return state


def add(a: LinearState, b: LinearState) -> LinearState:
    """The statistics of both sets of examples (how a run continues the served policy)."""
    return LinearState(
        a.cov_matrix + b.cov_matrix, a.data_vector + b.data_vector, a.num_samples + b.num_samples
    )
