"""Generator → Ingester → off-policy Trainer → Deployer on real local parts."""

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from app import movielens
from app.agents import LINUCB, AgentSpec, linear_bandit
from app.deployer import pointer
from app.environment import MovieLensBandit, factorize
from app.loop import generator, ingester, offpolicy
from app.policy_store import read_metadata
from app.predictor.policy import load_policy
from app.warehouse.duckdb_store import DuckDBWarehouse
from app.warehouse.records import TrainingRunRecord

RANK, ACTIONS = 5, 10


@pytest.fixture
def env(movielens_dir: Path) -> MovieLensBandit:
    ratings = movielens.load_ratings_matrix(movielens_dir / "u.data")
    return MovieLensBandit(factorize(ratings, RANK, ACTIONS), batch_size=8, seed=0)


def test_generator_writes_rewarded_random_predictions(env, tmp_path: Path):
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    assert generator.generate(env, warehouse, driver_steps=3) == 24
    assert warehouse.count_untrained(RANK, ACTIONS) == 24
    warehouse.claim("r", 100, RANK, ACTIONS)
    examples = [e for page in warehouse.iter_claimed("r") for e in page]
    assert len(examples) == 24
    assert all(e.propensity == pytest.approx(1 / ACTIONS) for e in examples)
    assert len({e.action for e in examples}) > 3


def test_ingest_streams_shards_and_training_matches_a_direct_update(
    env, tmp_path: Path, monkeypatch
):
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    generator.generate(env, warehouse, driver_steps=40)  # 320 examples
    monkeypatch.setattr(ingester, "SHARD_ROWS", 100)
    result = ingester.ingest(warehouse, str(tmp_path / "examples"), "r", 250, RANK, ACTIONS)
    assert result.examples == 250 and len(result.shards) == 3
    assert json.loads((tmp_path / "examples" / "manifest.json").read_text())["examples"] == 250

    spec = AgentSpec(LINUCB, ACTIONS, RANK, alpha=1.0, tikhonov_weight=0.5)
    trained = offpolicy.train_offline(
        str(tmp_path / "examples"), str(tmp_path / "policy"), spec, batch_size=32
    )
    examples = [e for page in warehouse.iter_claimed("r") for e in page]
    direct = linear_bandit(spec)
    direct.update(
        np.array([e.observation for e in examples], dtype=np.float32).astype(np.float64),
        np.array([e.action for e in examples]),
        np.array([e.reward for e in examples], dtype=np.float32),
    )
    served = load_policy(trained.policy_dir)
    np.testing.assert_allclose(
        served.scorer.model.state.cov_matrix, direct.state.cov_matrix, rtol=1e-5
    )
    assert read_metadata(trained.policy_dir).trained_interactions == 250


def test_warm_start_adds_to_the_served_policy(env, tmp_path: Path):
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    spec = AgentSpec(LINUCB, ACTIONS, RANK, alpha=1.0, tikhonov_weight=0.5)
    generator.generate(env, warehouse, driver_steps=5)
    ingester.ingest(warehouse, str(tmp_path / "e1"), "r1", 1000, RANK, ACTIONS)
    first = offpolicy.train_offline(str(tmp_path / "e1"), str(tmp_path / "p1"), spec, 16)
    warehouse.commit(TrainingRunRecord("r1", "v1", None, None, 40, RANK, ACTIONS, "p1"))
    generator.generate(env, warehouse, driver_steps=5, seed=1)
    e2 = ingester.ingest(warehouse, str(tmp_path / "e2"), "r2", 1000, RANK, ACTIONS)
    assert (e2.examples, e2.parent_run_id, e2.warm_start) == (40, "r1", "p1")
    second = offpolicy.train_offline(
        str(tmp_path / "e2"), str(tmp_path / "p2"), spec, 16, warm_start=first.policy_dir
    )
    assert read_metadata(second.policy_dir).trained_interactions == 80
    counts = load_policy(second.policy_dir).scorer.model.state.num_samples
    assert counts.sum() == 80


def test_offpolicy_refuses_incompatible_warm_start(env, tmp_path: Path):
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    generator.generate(env, warehouse, driver_steps=2)
    ingester.ingest(warehouse, str(tmp_path / "e"), "r", 100, RANK, ACTIONS)
    spec = AgentSpec(LINUCB, ACTIONS, RANK, 1.0, 0.5)
    first = offpolicy.train_offline(str(tmp_path / "e"), str(tmp_path / "p"), spec, 16)
    other = AgentSpec(LINUCB, ACTIONS, RANK + 1, 1.0, 0.5)
    with pytest.raises(offpolicy.OffPolicyError, match="has 10 actions and rank 5"):
        offpolicy.train_offline(
            str(tmp_path / "e"), str(tmp_path / "q"), other, 16, warm_start=first.policy_dir
        )
    with pytest.raises(offpolicy.OffPolicyError, match="supports the linear agents"):
        offpolicy.train_offline(
            str(tmp_path / "e"),
            str(tmp_path / "q"),
            AgentSpec("neural_epsilon_greedy", ACTIONS, RANK, 1, 1),
            16,
        )


def test_local_deploy_versions_and_pointer(trained_policy: Path, tmp_path: Path):
    policies = str(tmp_path / "policies")
    assert pointer.current_version(policies) is None
    version = pointer.deploy(str(trained_policy), policies)
    assert version == "v-test-1"
    assert pointer.current_version(policies) == "v-test-1"
    assert pointer.resolve(policies) == f"{policies}/v-test-1"
    assert tf.io.gfile.exists(f"{policies}/v-test-1/saved_model.pb")
    assert pointer.deploy(str(trained_policy), policies) == "v-test-1"  # idempotent
