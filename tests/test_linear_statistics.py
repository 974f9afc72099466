"""Warehouse-native linear training: one SQL aggregation over a run's claimed examples equals
TF-Agents' `agent.train` on those examples, and ends up in the saved policy's variables."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from google.api_core.exceptions import GoogleAPIError
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from app.agents import LINUCB, AgentSpec, create_agent, state_from_agent
from app.environment import GLOBAL_KEY, PER_ARM_KEY, interaction_features
from app.evaluation import gate
from app.loop import ingester, offpolicy
from app.policy_store import linear_state_from_variables
from app.rehearsal.fakes import FakeBigQueryHttp
from app.schemas import GLOBAL, PER_ARM
from app.warehouse import ledger, linear_statistics
from app.warehouse.bigquery_store import BigQueryWarehouse
from app.warehouse.duckdb_store import DuckDBWarehouse
from app.warehouse.records import FeedbackRecord, PredictionRecord, TrainingRunRecord
from tests.test_bigquery_requests import params
from tests.test_linear_parity import experience

RANK, ARMS, BATCH = 4, 5, 8
T0 = datetime(2026, 11, 1, tzinfo=UTC)
SPEC = AgentSpec(LINUCB, ARMS, RANK, alpha=1.0, tikhonov_weight=0.5)


def log(warehouse: DuckDBWarehouse, rng: np.random.Generator, prefix: str, n: int) -> None:
    """n joined interactions, each half delivered twice (redelivery), plus one bad row."""
    observations = rng.normal(size=(n, RANK))
    actions = rng.integers(ARMS, size=n)
    rewards = rng.normal(size=n)
    predictions = [
        PredictionRecord(f"{prefix}{i}", 0, T0 + timedelta(seconds=i), "v0", list(o), int(a), 0.2)
        for i, (o, a) in enumerate(zip(observations, actions, strict=True))
    ]
    predictions.append(PredictionRecord(f"{prefix}bad", 0, T0, "v0", [1.0] * RANK, ARMS + 3))
    feedback = [
        FeedbackRecord(p.request_id, 0, p.time, float(r), "test")
        for p, r in zip(predictions, [*rewards, 1.0], strict=True)
    ]
    for _ in range(2):
        warehouse.insert_predictions(predictions)
        warehouse.insert_feedback(feedback)


def trained_by_tf_agents(warehouse: DuckDBWarehouse, run_id: str, agent=None):
    """TF-Agents' LinUCB agent.train, batch 8, on exactly the run's claimed examples."""
    agent = agent or create_agent(SPEC)
    examples = [e for page in warehouse.iter_claimed(run_id) for e in page]
    for start in range(0, len(examples), BATCH):
        rows = examples[start : start + BATCH]
        agent.train(
            experience(
                agent,
                np.array([e.observation for e in rows]),
                np.array([e.action for e in rows]),
                np.array([e.reward for e in rows], dtype=np.float32),
            )
        )
    return agent, len(examples)


def assert_state_close(ours, theirs) -> None:
    np.testing.assert_allclose(ours.cov_matrix, theirs.cov_matrix, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ours.data_vector, theirs.data_vector, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(ours.num_samples, theirs.num_samples)


def test_sql_statistics_equal_agent_train_on_the_claimed_examples(tmp_path: Path):
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    log(warehouse, np.random.default_rng(0), "a", 60)
    assert warehouse.claim("run-1", 45, RANK, ARMS) == 45  # a partial claim: 45 of 60
    agent, n = trained_by_tf_agents(warehouse, "run-1")
    ours = warehouse.claimed_statistics("run-1", RANK, ARMS)
    assert n == 45 and ours.num_samples.sum() == 45  # duplicates once, the bad row never
    assert_state_close(ours, state_from_agent(agent))


def test_sql_statistics_hold_out_and_corrupt_as_the_trainer_does_on_records(tmp_path: Path):
    """gate.holdout_every leaves every n-th claimed example (key order, as the Evaluator reads
    them) out of the sums; gate.corrupt_rewards sums 6 − r: the SQL path keeps both switches."""
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    log(warehouse, np.random.default_rng(2), "a", 40)
    warehouse.claim("run-1", 1000, RANK, ARMS)
    examples = [e for page in warehouse.iter_claimed("run-1") for e in page]
    trained = [e for i, e in enumerate(examples) if not gate.held_out(i, 3)]
    agent = create_agent(SPEC)
    for start in range(0, len(trained), BATCH):
        rows = trained[start : start + BATCH]
        agent.train(
            experience(
                agent,
                np.array([e.observation for e in rows]),
                np.array([e.action for e in rows]),
                np.array([6.0 - e.reward for e in rows], dtype=np.float32),
            )
        )
    ours = warehouse.claimed_statistics("run-1", RANK, ARMS, holdout_every=3, corrupt_rewards=True)
    assert ours.num_samples.sum() == len(trained) == 40 - 40 // 3
    assert_state_close(ours, state_from_agent(agent))


def test_pipeline_path_continues_the_served_policy_into_tf_agents_variables(tmp_path: Path):
    """Ingester (claim + SQL sums) → Trainer (warm start + sums → the agent's variables) over
    two runs equals one TF-Agents agent trained on both runs' examples, each once."""
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    rng = np.random.default_rng(1)
    log(warehouse, rng, "a", 30)
    first = ingester.ingest(
        warehouse, str(tmp_path / "e1"), "run-1", 1000, RANK, ARMS, ingester.STATISTICS
    )
    assert first.examples == 30 and first.shards == [] and first.statistics
    offpolicy.train_offline(str(tmp_path / "e1"), str(tmp_path / "p1"), SPEC, BATCH)
    warehouse.commit(
        TrainingRunRecord("run-1", "v1", None, None, 30, RANK, ARMS, str(tmp_path / "p1"))
    )
    log(warehouse, rng, "b", 25)  # new traffic; run-1's examples are in the ledger now
    second = ingester.ingest(
        warehouse, str(tmp_path / "e2"), "run-2", 1000, RANK, ARMS, ingester.STATISTICS
    )
    assert second.examples == 25 and second.warm_start == str(tmp_path / "p1")
    offpolicy.train_offline(
        str(tmp_path / "e2"), str(tmp_path / "p2"), SPEC, BATCH, second.warm_start
    )

    agent, _ = trained_by_tf_agents(warehouse, "run-1")
    agent, _ = trained_by_tf_agents(warehouse, "run-2", agent)
    saved = tf.saved_model.load(str(tmp_path / "p2"))
    published = linear_state_from_variables(saved.model_variables, ARMS)
    assert published.num_samples.sum() == 55
    assert_state_close(published, state_from_agent(agent))


@pytest.mark.parametrize(("holdout_every", "corrupt_rewards"), [(0, False), (3, True)])
def test_a_first_claim_sums_what_a_restart_sums(tmp_path: Path, holdout_every, corrupt_rewards):
    """claim_statistics on a run's first claim sums the claim's own temporary table (the
    claim cut to max_rows inside it, the bad row quarantined): equal to TF-Agents'
    `agent.train` on the examples the run claimed, and to the sums a restart of the run
    reads from its claims; the restart claims nothing more."""
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    rng = np.random.default_rng(4)
    log(warehouse, rng, "a", 70)
    claimed, first = warehouse.claim_statistics(
        "run-1", 50, RANK, ARMS, holdout_every, corrupt_rewards
    )
    assert claimed == 50 and warehouse.query("SELECT count(*) FROM quarantine") == [(1,)]
    examples = [e for page in warehouse.iter_claimed("run-1") for e in page]
    # the 50 oldest by ingestion (all stored at once here: then by key)
    assert [e.request_id for e in examples] == sorted(f"a{i}" for i in range(70))[:50]
    kept = [not holdout_every or not gate.held_out(i, holdout_every) for i in range(50)]
    trained = [e for e, keep in zip(examples, kept, strict=True) if keep]
    agent = create_agent(SPEC)
    for start in range(0, len(trained), BATCH):
        rows = trained[start : start + BATCH]
        rewards = [6.0 - e.reward if corrupt_rewards else e.reward for e in rows]
        agent.train(
            experience(
                agent,
                np.array([e.observation for e in rows]),
                np.array([e.action for e in rows]),
                np.array(rewards, dtype=np.float32),
            )
        )
    assert first.num_samples.sum() == len(trained)
    assert_state_close(first, state_from_agent(agent))
    log(warehouse, rng, "b", 5)  # new rows: a restarted run does not take them
    again, restarted = warehouse.claim_statistics(
        "run-1", 50, RANK, ARMS, holdout_every, corrupt_rewards
    )
    assert again == 50
    for name in ("cov_matrix", "data_vector", "num_samples"):
        np.testing.assert_allclose(getattr(restarted, name), getattr(first, name), atol=1e-9)
    assert warehouse.query("SELECT count(*), count(DISTINCT request_id) FROM run_examples") == [
        (50, 50)
    ]


def test_a_first_per_arm_claim_sums_what_a_restart_sums(tmp_path: Path):
    """The per-arm sums of a first claim ([u, u ⊙ v] over the claim's temporary table, the
    catalogue joined by the logged movie) equal those a restart reads from the claims."""
    rng = np.random.default_rng(5)
    movies = rng.normal(size=(CATALOGUE, RANK))
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    predictions = [
        PredictionRecord(
            f"q{i:02d}",
            0,
            T0,
            "v0",
            rng.normal(size=RANK).tolist(),
            int(rng.integers(CATALOGUE)),
            policy_kind=PER_ARM,
        )
        for i in range(40)
    ]
    warehouse.insert_predictions(predictions)
    warehouse.insert_feedback(
        [FeedbackRecord(p.request_id, 0, T0, float(rng.normal()), "t") for p in predictions]
    )
    claimed, first = warehouse.claim_statistics("run-1", 30, RANK, 0, 4, arm_features=movies)
    assert claimed == 30 and first.num_samples.tolist() == [30 - 30 // 4]
    again, restarted = warehouse.claim_statistics("run-1", 30, RANK, 0, 4, arm_features=movies)
    assert again == 30
    np.testing.assert_allclose(restarted.cov_matrix, first.cov_matrix, atol=1e-9)
    np.testing.assert_allclose(restarted.data_vector, first.data_vector, atol=1e-9)
    np.testing.assert_array_equal(restarted.num_samples, first.num_samples)


CATALOGUE = 12  # movies; a per-arm row chooses among ARMS of them


def test_per_arm_sql_statistics_equal_the_per_arm_agent_train(tmp_path: Path):
    """A per-arm policy logs the user u, its candidates and the chosen movie's catalogue
    index; one SQL aggregation over [u, u ⊙ v_chosen] equals TF-Agents' per-arm LinUCB
    `agent.train` (batch 8) on the same claimed examples, held-out rows left out."""
    rng = np.random.default_rng(3)
    movies = rng.normal(size=(CATALOGUE, RANK)).astype(np.float32)
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    served = {}  # request id → (u, candidates, chosen position)
    predictions, feedback = [], []
    for i in range(50):
        u = rng.normal(size=RANK).astype(np.float32)
        candidates = rng.choice(CATALOGUE, size=ARMS, replace=False)
        chosen = int(rng.integers(ARMS))
        served[f"q{i:02d}"] = (u, candidates, chosen)
        predictions.append(
            PredictionRecord(
                f"q{i:02d}",
                0,
                T0,
                "v0",
                u.tolist(),
                int(candidates[chosen]),
                0.2,
                candidates.tolist(),
                policy_kind=PER_ARM,
            )
        )
        feedback.append(FeedbackRecord(f"q{i:02d}", 0, T0, float(rng.normal()), "test"))
    warehouse.insert_predictions(predictions)
    warehouse.insert_feedback(feedback)
    assert warehouse.claim("run-1", 1000, RANK, CATALOGUE, policy_kind=PER_ARM) == 50

    spec = AgentSpec(LINUCB, ARMS, RANK, alpha=1.0, tikhonov_weight=0.5, per_arm=True)
    agent = create_agent(spec)
    examples = [e for page in warehouse.iter_claimed("run-1") for e in page]
    trained = [e for i, e in enumerate(examples) if not gate.held_out(i, 4)]
    for start in range(0, len(trained), BATCH):
        rows = [served[e.request_id] for e in trained[start : start + BATCH]]
        observations = {
            GLOBAL_KEY: np.array([u for u, _, _ in rows]),
            PER_ARM_KEY: np.array(
                [interaction_features(u[None], movies[c][None])[0] for u, c, _ in rows]
            ),
        }
        rewards = [e.reward for e in trained[start : start + BATCH]]
        actions = np.array([chosen for _, _, chosen in rows])
        agent.train(experience(agent, observations, actions, np.array(rewards, np.float32)))
    ours = warehouse.claimed_per_arm_statistics("run-1", movies, holdout_every=4)
    assert ours.cov_matrix.shape == (1, 2 * RANK, 2 * RANK)
    assert ours.num_samples[0] == len(trained) == 50 - 50 // 4
    assert_state_close(ours, state_from_agent(agent))


def test_bigquery_receives_the_per_arm_aggregation_with_the_catalogue_as_an_array():
    http = FakeBigQueryHttp()
    client = bigquery.Client(project="proj", credentials=AnonymousCredentials(), _http=http)
    warehouse = BigQueryWarehouse("proj", "ds", "EU", client=client)
    movies = np.arange(6.0).reshape(3, 2)
    with pytest.raises(GoogleAPIError):  # the fake answers no query: the request is what counts
        warehouse.claimed_per_arm_statistics("run-7", movies)
    (job,) = [body for method, path, body in http.requests if method == "POST"]
    query = job["configuration"]["query"]
    assert query["query"] == linear_statistics.per_arm_statistics(ledger.bigquery("proj", "ds"), 2)
    assert "@arm_features[OFFSET(m * 2 + 1)] AS v1" in query["query"]
    assert "FROM UNNEST(GENERATE_ARRAY(0, @arm_count - 1)) AS m" in query["query"]
    assert params(query)["arm_count"] == ("INT64", "3")
    (catalogue,) = [p for p in query["queryParameters"] if p["name"] == "arm_features"]
    assert catalogue["parameterType"] == {"type": "ARRAY", "arrayType": {"type": "FLOAT64"}}
    assert [float(v["value"]) for v in catalogue["parameterValue"]["arrayValues"]] == [
        0.0,
        1.0,
        2.0,
        3.0,
        4.0,
        5.0,
    ]
    assert query["query"].count("SUM(") == 4 + 4 * 5 // 2  # joint features: 2 × rank 2


def _as_duckdb(big: str) -> str:
    """BigQuery's text with DuckDB's table names and parameter marks, without the dedup by
    key that DuckDB's keys make a no-op
    (tests/test_warehouse.py::test_examples_are_the_deduplicated_join)."""
    big = re.sub(r" QUALIFY ROW_NUMBER\(\) OVER \(PARTITION BY [^)]*\) = 1", "", big)
    big = big.replace("SELECT DISTINCT ", "SELECT ")
    return big.replace("`proj.ds.", "").replace("`", "").replace("@", "$")


@pytest.mark.parametrize("claiming", [False, True])
def test_statistics_query_is_generated_once_for_both_warehouses(claiming: bool):
    """The restart's sums (over the run's claims, joined again) and the first claim's (over the
    claim's temporary table): one text for both warehouses but for the dialect."""
    duck = linear_statistics.statistics(ledger.DUCKDB, 3, claiming=claiming)
    big = linear_statistics.statistics(ledger.bigquery("proj", "ds"), 3, claiming=claiming)
    if claiming:
        assert "e.x2 AS x2" in duck and "e.x2 AS x2" in big and "claimable" in big
    else:
        assert "e.observation[3] AS x2" in duck and "e.observation[OFFSET(2)] AS x2" in big
    # Identical but for the dialect: table names, parameter marks, 0- vs 1-based indexing,
    # and BigQuery's dedup by key.
    for i in range(3):
        big = big.replace(f"observation[OFFSET({i})]", f"observation[{i + 1}]")
    assert "QUALIFY" not in duck and "DISTINCT" not in duck
    assert _as_duckdb(big) == duck
    assert duck.count("SUM(") == 3 + 6 and "GROUP BY s.action" in duck


def test_the_claim_is_generated_once_for_both_warehouses():
    """Every statement of a first claim, as DuckDB runs it and as BigQuery's script holds it,
    differs only by the dialect: with DuckDB's array and finiteness functions, BigQuery's text
    is DuckDB's but for table names, parameter marks and the dedup by key."""
    big = ledger.bigquery("proj", "ds")
    mixed = dataclasses.replace(
        ledger.DUCKDB, table=big.table, param=big.param, keys_enforced=False
    )
    duck_claim, big_claim = ledger.claim(ledger.DUCKDB, GLOBAL, 3), ledger.claim(mixed, GLOBAL, 3)
    for field in dataclasses.fields(ledger.Claim):
        assert _as_duckdb(getattr(big_claim, field.name)) == getattr(duck_claim, field.name)
    script = ledger.claim(big, GLOBAL, 3).script()
    assert script.count("`proj.ds.predictions`") == 1 and "SAFE_OFFSET(2)" in script


def test_bigquery_receives_one_aggregation_job_for_the_run():
    http = FakeBigQueryHttp()
    client = bigquery.Client(project="proj", credentials=AnonymousCredentials(), _http=http)
    warehouse = BigQueryWarehouse("proj", "ds", "EU", client=client)
    with pytest.raises(GoogleAPIError):  # the fake answers no query: the request is what counts
        warehouse.claimed_statistics("run-7", 20, 20)
    (job,) = [body for method, path, body in http.requests if method == "POST"]
    query = job["configuration"]["query"]
    assert query["query"] == linear_statistics.statistics(ledger.bigquery("proj", "ds"), 20)
    assert query["useLegacySql"] is False and job["jobReference"]["location"] == "EU"
    assert [(p["name"], p["parameterValue"]["value"]) for p in query["queryParameters"]] == [
        ("run_id", "run-7"),
        ("since", "1970-01-01 00:00:00+00:00"),  # no feedback window: every partition
    ]
    assert "`proj.ds.run_examples`" in query["query"]
    assert query["query"].count("SUM(") == 20 + 20 * 21 // 2
