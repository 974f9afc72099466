"""Per-arm off-policy re-training through the pipeline's step functions (DuckDB, local
folders): a per-arm warm start's served and rewarded interactions, logged as the Logger stores
them, are summed by the warehouse; the Trainer adds the sums to the warm start's statistics,
publishes a per-arm policy with its catalogue, and the predictor serves it. The gate has no
per-arm estimate yet: it blocks such a candidate unless skipped."""

from __future__ import annotations

import dataclasses
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from app import messages
from app.agents import LINUCB, AgentSpec, copy_state_to_agent, create_agent, state_from_agent
from app.config import DataConfig, Settings
from app.deployer import pointer
from app.environment import GLOBAL_KEY, PER_ARM_KEY, interaction_features
from app.evaluation import gate
from app.evaluation.gate import BLOCKED, PROMOTED
from app.exploration import EPSILON_GREEDY, Exploration
from app.functions.logger import handle
from app.loop import steps
from app.loop.ingester import IngestError
from app.loop.parameters import PipelineParameters
from app.paths import join
from app.policy_store import (
    CATALOGUE_FILE,
    linear_state_from_variables,
    read_catalogue,
    read_metadata,
)
from app.predictor.policy import LinearArmScorer, PerArmPolicy, load_for_serving
from app.predictor.sink import PredictionLogSink
from app.warehouse.duckdb_store import DuckDBWarehouse
from app.warehouse.records import TrainingRunRecord
from tests.synthetic import NUM_MOVIES
from tests.test_linear_parity import experience
from tests.test_linear_statistics import assert_state_close
from tests.test_messages_and_logger import event
from tests.test_per_arm_serving import CapturingPublisher, app_for, call, users

RANK, ARMS, BATCH, HOLDOUT = 5, 6, 8, 4  # ARMS: the per-arm SavedModel's arm count


@pytest.fixture(scope="module")
def warm_start(movielens_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A per-arm LinUCB policy trained on-policy (synthetic ratings), with its catalogue."""
    from app.trainer.flags import TrainingArgs
    from app.trainer.run import run

    settings = Settings(
        artifacts_dir=str(tmp_path_factory.mktemp("per-arm-warm")),
        data=DataConfig(movielens_dir=str(movielens_dir), download=False),
    )
    args = TrainingArgs(
        training_loops=20,
        rank_k=RANK,
        num_actions=ARMS,
        per_arm=True,
        agent_alpha=1.0,
        tikhonov_weight=1.0,
        progress=False,
        policy_version="v-arm-warm",
    )
    return run(args, settings).policy_dir


def pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PipelineParameters:
    monkeypatch.setenv("RECLOOP__WAREHOUSE__DUCKDB_PATH", str(tmp_path / "w.duckdb"))
    monkeypatch.setenv("RECLOOP__ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    # rank_k/num_actions describe global policies: a per-arm warm start brings its own shapes
    return PipelineParameters(
        training_artifacts_dir=str(tmp_path / "artifacts"),
        batch_size=BATCH,
        rank_k=3,
        num_actions=10,
        agent=LINUCB,
        agent_alpha=1.0,
        tikhonov_weight=1.0,
        gate_holdout_every=HOLDOUT,
    )


def commit_as_served(warehouse: DuckDBWarehouse, policy_dir: str) -> None:
    """The warm start as the last committed run, as the Deployer records a per-arm run."""
    movies = len(read_catalogue(policy_dir).movie_ids)
    warehouse.commit(TrainingRunRecord("r0", "v-arm-warm", None, None, 0, RANK, movies, policy_dir))


def serve_and_log(policy_dir: str, warehouse: DuckDBWarehouse, requests: int) -> None:
    """The predictor serves the warm start (ε-greedy, some instances with candidates); its
    prediction logs and rewards go through the Logger's handler into the warehouse."""
    policy = load_for_serving(policy_dir, exploration=Exploration(EPSILON_GREEDY, epsilon=0.5))
    publisher = CapturingPublisher()
    app = app_for(
        policy,
        sink=PredictionLogSink(publisher, "predictions"),
        rng=np.random.default_rng(1),
    )
    rng = np.random.default_rng(2)
    for r in range(requests):
        u = users(4, seed=100 + r).astype(np.float64).tolist()
        instances = [{"observation": row} for row in u]
        instances[1]["candidates"] = [3, 7, 11, 2, 9, 5]
        assert call(app, {"instances": instances}).status_code == 200
    for data in publisher.messages:
        assert handle(event(data), warehouse).startswith("stored")
        (request_id,) = {p.request_id for p in messages.parse(data)}
        rewards = [(i, float(rng.integers(1, 6))) for i in range(4)]
        handle(event(messages.feedback(request_id, rewards, "test")), warehouse)


def log_global_rows(warehouse: DuckDBWarehouse, n: int) -> None:
    """Rows a global policy logged, of the per-arm run's shapes (observation length, actions
    below the catalogue size): only the kind filter keeps them out of its claim."""
    rows = [
        {"instance_index": i, "observation": [0.1] * RANK, "action": i, "propensity": 0.5}
        for i in range(n)
    ]
    now = datetime.now(UTC)
    handle(event(messages.prediction_log("global-1", now, "v-global", rows)), warehouse)
    rewards = [(i, 5.0) for i in range(n)]
    handle(event(messages.feedback("global-1", rewards, "test")), warehouse)
    assert warehouse.count_untrained(RANK, NUM_MOVIES) == n


def state_of(policy_dir: str):
    return linear_state_from_variables(tf.saved_model.load(policy_dir).model_variables, 1)


def test_ingest_and_train_continue_a_per_arm_policy_as_tf_agents_does(
    warm_start: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The new policy's variables equal the warm start's continued by TF-Agents' per-arm
    LinUCB agent.train (batch 8) on the run's claimed examples but the held-out ones (its
    policy's rows only, not the global ones beside them); it keeps
    the warm start's catalogue and the predictor serves it with exactly those statistics."""
    p = pipeline(tmp_path, monkeypatch)
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    commit_as_served(warehouse, warm_start)
    serve_and_log(warm_start, warehouse, requests=10)
    log_global_rows(warehouse, 5)
    examples, policy_dir = str(tmp_path / "e"), str(tmp_path / "p")

    assert steps.run_ingester(output_dir=examples, parameters=p, run_id="r1") == 40
    version = steps.run_trainer(examples_dir=examples, policy_dir=policy_dir, parameters=p)

    warm = read_metadata(warm_start)
    catalogue = read_catalogue(warm_start)
    spec = AgentSpec(LINUCB, ARMS, RANK, alpha=1.0, tikhonov_weight=1.0, per_arm=True)
    agent = create_agent(spec)
    copy_state_to_agent(state_of(warm_start), agent)
    claimed = [e for page in warehouse.iter_claimed("r1") for e in page]
    trained = [e for i, e in enumerate(claimed) if not gate.held_out(i, HOLDOUT)]
    for start in range(0, len(trained), BATCH):
        rows = trained[start : start + BATCH]
        u = np.array([e.observation for e in rows], np.float32)
        chosen = catalogue.features[[e.action for e in rows]].astype(np.float32)
        # the agent learns from the chosen arm's features (experience(): chosen_arm_features)
        pairs = interaction_features(u, chosen)  # users × movies × features
        own = pairs[np.arange(len(rows)), np.arange(len(rows))]
        arms = np.repeat(own[:, None, :], ARMS, axis=1)
        observations = {GLOBAL_KEY: u, PER_ARM_KEY: arms}
        rewards = np.array([e.reward for e in rows], np.float32)
        agent.train(experience(agent, observations, np.zeros(len(rows), np.int64), rewards))
    expected = state_from_agent(agent)
    assert expected.num_samples[0] == state_of(warm_start).num_samples[0] + 30
    assert_state_close(state_of(policy_dir), expected)

    published = read_metadata(policy_dir)
    assert (published.per_arm, published.policy_version) == (True, version)
    assert (published.num_actions, published.rank_k) == (ARMS, RANK)
    assert published.trained_interactions == warm.trained_interactions + 40
    assert read_catalogue(policy_dir).movie_ids.tolist() == catalogue.movie_ids.tolist()
    served = load_for_serving(policy_dir)
    assert isinstance(served, PerArmPolicy) and served.version == version
    contexts = users(20, seed=9).astype(np.float64)
    reference = LinearArmScorer(published, expected, catalogue)
    np.testing.assert_allclose(
        served.scorer.scores(contexts, None), reference.scores(contexts, None), atol=1e-4
    )


def test_a_per_arm_warm_start_without_its_catalogue_is_one_clear_ingest_error(
    warm_start: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    p = pipeline(tmp_path, monkeypatch)
    broken = str(tmp_path / "warm")
    shutil.copytree(warm_start, broken)
    os.remove(os.path.join(broken, CATALOGUE_FILE))
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    commit_as_served(warehouse, warm_start)
    serve_and_log(warm_start, warehouse, requests=1)
    # the next run would continue the broken copy
    warehouse.commit(
        TrainingRunRecord(
            "r1", "v-broken", "r0", None, 0, RANK, len(read_catalogue(warm_start).movie_ids), broken
        )
    )
    with pytest.raises(IngestError, match=f"per-arm warm-start policy {broken} has no"):
        steps.run_ingester(output_dir=str(tmp_path / "e"), parameters=p, run_id="r2")


def test_the_gate_blocks_a_per_arm_candidate_unless_skipped_then_it_is_deployed_and_served(
    warm_start: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Ingester → Trainer → Evaluator → Deployer: blocked (the served per-arm policy stays);
    with gate.skip the per-arm candidate is committed with the warm start's shapes, the
    pointer serves it, and the next run continues it."""
    p = pipeline(tmp_path, monkeypatch)
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    policies = join(p.training_artifacts_dir, steps.POLICIES)
    served = pointer.stage(warm_start, policies)
    pointer.point(policies, served)
    movies = len(read_catalogue(warm_start).movie_ids)
    warehouse.commit(
        TrainingRunRecord("r0", served, None, None, 0, RANK, movies, join(policies, served))
    )

    def run(parameters: PipelineParameters, run_id: str) -> tuple[str, str]:
        examples, policy, evaluation = (str(tmp_path / run_id / n) for n in ("e", "p", "d"))
        serve_and_log(join(policies, pointer.current_version(policies) or ""), warehouse, 3)
        assert steps.run_ingester(output_dir=examples, parameters=parameters, run_id=run_id)
        steps.run_trainer(examples_dir=examples, policy_dir=policy, parameters=parameters)
        decision = steps.run_evaluator(
            policy_dir=policy, examples_dir=examples, output_dir=evaluation, parameters=parameters
        )
        version = steps.run_deployer(
            policy_dir=policy, examples_dir=examples, parameters=parameters, decision=decision
        )
        return decision, version

    assert run(p, "r1") == (BLOCKED, served)
    (blocked,) = [d for d in warehouse.promotions() if d.run_id == "r1"]
    assert "per-arm policy has no offline gate" in blocked.reason
    skipped = dataclasses.replace(p, gate_skip=True)
    decision, version = run(skipped, "r2")
    assert decision == PROMOTED and version != served
    assert pointer.current_version(policies) == version
    latest = warehouse.latest_run()
    assert latest is not None and (latest.run_id, latest.rank_k, latest.num_actions) == (
        "r2",
        RANK,
        movies,
    )
    assert isinstance(load_for_serving(join(policies, version)), PerArmPolicy)
    assert run(skipped, "r3")[0] == PROMOTED
    assert read_metadata(join(policies, pointer.current_version(policies) or "")).per_arm
