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


def test_the_actor_critic_trainer_step_takes_tuned_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """A best_hyperparameters.json tuned for actor_critic sets its values; one tuned for
    another agent is refused in one line, as for the bandits."""
    from app.tuning import space

    runs = make_runs(tmp_path, write_movielens(tmp_path / "ml", movies=300), monkeypatch)
    runs.log(10, seed=1)
    best = tmp_path / "best.json"
    values = {
        "gamma": 0.5,
        "actor_learning_rate": 2e-3,
        "critic_learning_rate": 3e-4,
        "exploration_std": 0.2,
    }
    best.write_text(space.dumps_best("actor_critic", values, 0.3))
    switches = {"agent": "actor_critic", "training_loops": 1, "best_hyperparameters": str(best)}
    assert runs.run("r1", **switches)[0] == gate.BLOCKED
    out = capsys.readouterr().out
    assert (
        "training actor_critic with gamma=0.5, actor_learning_rate=0.002, "
        "critic_learning_rate=0.0003, exploration_std=0.2 (tuned)" in out
    )

    best.write_text(space.dumps_best("linucb", {"agent_alpha": 1, "tikhonov_weight": 1}, 0.1))
    with pytest.raises(ValueError, match="was tuned for --agent linucb, not actor_critic"):
        runs.run("r2", **switches)
