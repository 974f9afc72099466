"""A run's linear-bandit statistics, computed inside the warehouse by one SQL aggregation.

LinUCB and LinTS (app/linear.py, TF-Agents' LinearBanditAgent) keep per arm the sums
A = Σ x xᵀ, b = Σ r x and a count. Sums can be computed where the rows are: one GROUP BY
action over the run's claimed examples (the ledger's, so each interaction is counted exactly
once, in exactly one run) returns arms × (1 + k + k(k+1)/2) numbers, and no example leaves
the warehouse. A per-arm policy's one shared model over the joint features [u, u ⊙ v] is the
same aggregation with one group (`per_arm_statistics`). Right after a run's first claim the
aggregation reads the claim's temporary table (the untrained rows it read once, the
observation already flat: `claiming=True`); a restarted run's reads its claims joined again
to predictions and feedback. The query text is generated once for DuckDB and BigQuery (only
the dialect's table names, parameter marks, array indexing and dedup by key differ:
app/warehouse/ledger.py).

Proved by tests/test_linear_statistics.py: equal to TF-Agents' `agent.train` on the same
examples (test_sql_statistics_equal_agent_train_on_the_claimed_examples; per-arm:
test_per_arm_sql_statistics_equal_the_per_arm_agent_train), and the BigQuery requests the
real client sends.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from app.linear import LinearState
from app.schemas import GLOBAL, PER_ARM
from app.warehouse import ledger


def _pairs(rank_k: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(rank_k) for j in range(i, rank_k)]


# The demo's corrupted candidate (gate.corrupt_rewards) learns from this minus each reward:
# a policy that prefers what users dislike (ratings are 1..5).
CORRUPTED_REWARD_FROM = 6.0


def statistics(
    d: ledger.Dialect,
    rank_k: int,
    holdout_every: int = 0,
    corrupt_rewards: bool = False,
    claiming: bool = False,
) -> str:
    """Per claimed action: count, Σ r·x_i and Σ x_i·x_j (i ≤ j), ordered by action.

    `holdout_every` n > 0 leaves out every n-th claimed example in key order (the order
    Warehouse.iter_claimed reads them in), which the Evaluator judges the candidate on
    (app/evaluation/gate.py::held_out); `corrupt_rewards` sums CORRUPTED_REWARD_FROM − r.
    `claiming`: over the claim's temporary table, right after the claim (ledger.Claim), not
    over the run's claims joined again to predictions and feedback (a restarted run)."""
    examples, u = _examples(d, GLOBAL, rank_k, claiming)
    return _sums(d, examples, "e.action", u, holdout_every, corrupt_rewards)


ARM_FEATURES, ARM_COUNT = "arm_features", "arm_count"  # the query parameters of per-arm sums


def per_arm_statistics(
    d: ledger.Dialect,
    rank_k: int,
    holdout_every: int = 0,
    corrupt_rewards: bool = False,
    claiming: bool = False,
) -> str:
    """A per-arm policy's one shared model (as `statistics`, one row, action 0) over the joint
    features x = [u, u ⊙ v] of each claimed example (app/environment.py::
    interaction_features): u is the logged observation, v the features of the chosen movie,
    whose catalogue index is the logged action (claimed with num_actions = the catalogue's
    movies, so every action has features). The catalogue is two query parameters
    (`arm_parameters`), so neither warehouse needs a catalogue table; the query makes it a
    relation of ARM_COUNT rows and joins it (indexing the parameter once per example cost
    DuckDB 11 CPU s per million examples instead of 4: benchmarks/quick.py)."""
    examples, u = _examples(d, PER_ARM, rank_k, claiming)
    features = u + [f"{u_i} * c.v{i}" for i, u_i in enumerate(u)]
    v = ", ".join(
        f"{d.at(d.param(ARM_FEATURES), f'm * {rank_k} + {i}')} AS v{i}" for i in range(rank_k)
    )
    catalogue = f"SELECT m AS movie, {v} FROM {d.numbers(d.param(ARM_COUNT))}"
    join = f"JOIN ({catalogue}) AS c ON c.movie = e.action"
    return _sums(d, examples, "0", features, holdout_every, corrupt_rewards, join)


def arm_parameters(arm_features: np.ndarray) -> dict[str, Any]:
    """per_arm_statistics' parameters: the catalogue's features (movies × rank_k), row by row
    (1,682 × 20 MovieLens movies: 33,640 values), and how many movies."""
    values = np.asarray(arm_features, dtype=np.float64)
    return {ARM_FEATURES: values.ravel().tolist(), ARM_COUNT: int(values.shape[0])}


def _examples(
    d: ledger.Dialect, policy_kind: str, rank_k: int, claiming: bool
) -> tuple[str, list[str]]:
    """The run's claimed examples (only those a policy of `policy_kind` served:
    tests/test_policy_kind.py) and the SQL of each observation value of an example `e`."""
    if claiming:
        rows = f"SELECT * FROM {ledger.CLAIMABLE} WHERE fault IS NULL"
        return rows, [f"e.{ledger.feature(i)}" for i in range(rank_k)]
    rows = ledger.claimed_unordered(d, policy_kind)
    return rows, [d.element("e.observation", i) for i in range(rank_k)]


def _sums(
    d: ledger.Dialect,
    examples: str,
    model: str,
    features: list[str],
    holdout_every: int,
    corrupt_rewards: bool,
    join: str = "",
) -> str:
    """One GROUP BY `model` over the `examples`: count, Σ r·x and the upper half of Σ x xᵀ of
    the `features` (SQL expressions over the example `e` and what `join` adds)."""
    values = ", ".join(f"{x} AS x{i}" for i, x in enumerate(features))
    reward = f"({CORRUPTED_REWARD_FROM:g} - e.reward)" if corrupt_rewards else "e.reward"
    sums = [
        "COUNT(*) AS n",
        *(f"SUM(s.reward * s.x{i}) AS b_{i}" for i in range(len(features))),
        *(f"SUM(s.x{i} * s.x{j}) AS a_{i}_{j}" for i, j in _pairs(len(features))),
    ]
    kept = "TRUE"
    if holdout_every > 0:
        examples = (
            f"SELECT c.*, ROW_NUMBER() OVER (ORDER BY c.request_id, c.instance_index) - 1 "
            f"AS position FROM ({examples}) AS c"
        )
        kept = f"MOD(e.position, {int(holdout_every)}) != {int(holdout_every) - 1}"
    return f"""SELECT s.action, {", ".join(sums)}
FROM (SELECT {model} AS action, {reward} AS reward, {values}
  FROM ({examples}) AS e {join} WHERE {kept}) AS s
GROUP BY s.action
ORDER BY s.action"""


def to_state(rows: Iterable[Sequence[float]], rank_k: int, num_actions: int) -> LinearState:
    """The aggregation's rows (action, n, b…, a…) as the agent's variables; arms without
    examples stay zero. Per-arm: rank_k is the joint features' 2k, num_actions 1 (the model)."""
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
