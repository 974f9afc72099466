"""The re-training pipeline's steps with `agent` actor_critic, on real local parts (DuckDB,
policy folders), as kfp.local runs them."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.deployer import pointer
from app.evaluation import gate
from app.policy_store import read_metadata
from tests.synthetic import write_movielens
from tests.test_gate import make_runs


def test_the_trainer_step_trains_the_actor_critic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Ingester → Trainer → Evaluator → Deployer: the Trainer saves the actor-critic's slate
    policy (trained on the slate environment); the gate blocks it, saying why, and the bandit
    policy keeps serving."""
    runs = make_runs(tmp_path, write_movielens(tmp_path / "ml", movies=300), monkeypatch)
    runs.log(40, seed=1)
    assert runs.run("r1") == (gate.PROMOTED, "v-r1")

    runs.log(10, seed=2)
    assert runs.run("r2", agent="actor_critic", training_loops=2) == (gate.BLOCKED, "v-r1")
    trained = read_metadata(str(tmp_path / "r2" / "p"))
    assert (trained.agent, trained.policy_version, trained.num_actions) == (
        "actor_critic",
        "v-r2",
        300,
    )
    assert trained.trained_interactions == 2 * 16 * 10 * 10  # loops × users × lists × K
    blocked = runs.warehouse.promotions()[-1]
    assert (blocked.run_id, blocked.decision) == ("r2", gate.BLOCKED)
    assert "a slate policy has no offline gate" in blocked.reason
    assert pointer.current_version(runs.policies) == "v-r1"
    assert runs.warehouse.find_run("r2") is None  # nothing committed
