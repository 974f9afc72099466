"""The DuckDB warehouse and its ledger, for real; BigQuery's table checks against a fake of the
REST API (the ledger's BigQuery requests: tests/test_bigquery_requests.py)."""

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from app import schemas
from app.rehearsal.fakes import FakeBigQueryHttp
from app.schemas import (
    FEEDBACK,
    GLOBAL,
    PREDICTIONS,
    RUN_CLAIMS,
    RUN_EXAMPLES,
    TABLES,
    bigquery_fields,
    duckdb_ddl,
)
from app.warehouse import ledger
from app.warehouse.base import LedgerConflict
from app.warehouse.bigquery_store import BigQueryWarehouse, MissingTables
from app.warehouse.duckdb_store import DuckDBWarehouse
from app.warehouse.records import FeedbackRecord, PredictionRecord, TrainingRunRecord

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
RANK, ACTIONS = 2, 4


def prediction(request: str, index: int, action: int = 1, minutes: int = 0) -> PredictionRecord:
    return PredictionRecord(
        request, index, T0 + timedelta(minutes=minutes), "v1", [0.5, -1.0], action, 1.0
    )


def reward(request: str, index: int, value: float, minutes: int = 1) -> FeedbackRecord:
    return FeedbackRecord(request, index, T0 + timedelta(minutes=minutes), value, "test")


def run(run_id: str, parent: str | None, examples: int = 0) -> TrainingRunRecord:
    return TrainingRunRecord(run_id, f"v-{run_id}", parent, None, examples, RANK, ACTIONS, "/p")


@pytest.fixture
def warehouse(tmp_path: Path) -> DuckDBWarehouse:
    w = DuckDBWarehouse(tmp_path / "w.duckdb")
    w.ensure_tables()
    return w


def claimed(w: DuckDBWarehouse, run_id: str) -> list[tuple]:
    return [
        (e.request_id, e.instance_index, e.action, e.reward)
        for p in w.iter_claimed(run_id)
        for e in p
    ]


def test_schemas_generate_both_dialects():
    assert duckdb_ddl(PREDICTIONS).startswith(
        "CREATE TABLE IF NOT EXISTS predictions (request_id VARCHAR NOT NULL"
    )
    assert "observation DOUBLE[]" in duckdb_ddl(PREDICTIONS)
    assert "ingested_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP" in duckdb_ddl(FEEDBACK)
    assert "PRIMARY KEY (request_id, instance_index)" in duckdb_ddl(FEEDBACK)
    assert "PRIMARY KEY" not in duckdb_ddl(RUN_EXAMPLES)  # unique by construction
    assert "PRIMARY KEY (run_id)" in duckdb_ddl(RUN_CLAIMS)  # one claim per run
    fields = {f["name"]: f for f in bigquery_fields(PREDICTIONS)}
    assert (fields["observation"]["type"], fields["observation"]["mode"]) == ("FLOAT64", "REPEATED")
    assert fields["ingested_at"]["defaultValueExpression"] == "CURRENT_TIMESTAMP()"
    assert {t.name for t in TABLES} == {
        "predictions",
        "feedback",
        "training_runs",
        "run_claims",
        "run_examples",
        "trained_examples",
        "quarantine",
        "ledger_head",
        "promotions",
    }


def test_examples_are_the_deduplicated_join(warehouse: DuckDBWarehouse):
    warehouse.insert_predictions(
        [prediction("r1", 0), prediction("r1", 1, action=3), prediction("r2", 0)]
    )
    warehouse.insert_feedback([reward("r1", 0, 4.0), reward("r1", 1, 2.0)])
    # Redelivered messages: the same keys again, even with other values, change nothing.
    warehouse.insert_predictions([prediction("r1", 0, action=2)])
    warehouse.insert_feedback([reward("r1", 0, 1.0)])
    assert warehouse.count_untrained(RANK, ACTIONS) == 2  # r2 has no reward yet
    assert warehouse.claim("a", 100, RANK, ACTIONS) == 2
    assert claimed(warehouse, "a") == [("r1", 0, 1, 4.0), ("r1", 1, 3, 2.0)]


def test_tables_without_keys_are_deduplicated_by_the_queries(tmp_path: Path):
    """BigQuery's tables hold duplicates (streaming is at-least-once): its queries (keys not
    enforced) keep the first stored row of each key and read each ledger key once. Run here,
    on DuckDB tables without their keys; with keys DuckDB keeps the first row itself
    (test_examples_are_the_deduplicated_join) and the queries skip the dedup."""
    d = dataclasses.replace(ledger.DUCKDB, keys_enforced=False)
    db = duckdb.connect(str(tmp_path / "keyless.duckdb"))
    db.execute("SET TimeZone = 'UTC'")
    for table in TABLES:
        db.execute(duckdb_ddl(table).replace(f", PRIMARY KEY ({', '.join(table.key)})", ""))
    rows: dict[str, list[tuple]] = {
        "predictions (request_id, instance_index, time, policy_version, observation, action, "
        "ingested_at)": [
            ("r1", 0, T0, "v1", [0.5, -1.0], 2, T0 + timedelta(seconds=2)),  # stored second
            ("r1", 0, T0, "v1", [0.5, -1.0], 1, T0 + timedelta(seconds=1)),
            ("r2", 0, T0, "v1", [0.5, -1.0], 3, T0),
            ("r2", 0, T0, "v1", [0.5, -1.0], 3, T0),
        ],
        "feedback (request_id, instance_index, time, reward, source, ingested_at)": [
            ("r1", 0, T0, 1.0, "test", T0 + timedelta(seconds=9)),
            ("r1", 0, T0, 4.0, "test", T0 + timedelta(seconds=3)),
            ("r2", 0, T0, 2.0, "test", T0),
        ],
        "trained_examples (request_id, instance_index, run_id, trained_at)": [
            ("r2", 0, "a", T0),
            ("r2", 0, "a", T0),
        ],
    }
    for into, values in rows.items():
        marks = ", ".join("?" * len(values[0]))
        db.executemany(f"INSERT INTO {into} VALUES ({marks})", values)
    params = {"rank_k": RANK, "num_actions": ACTIONS, "since": T0 - timedelta(days=1)}
    joined = db.execute(
        f"SELECT request_id, action, reward FROM ({ledger.joined(d)}) ORDER BY request_id",
        {"since": params["since"]},
    ).fetchall()
    assert joined == [("r1", 1, 4.0), ("r2", 3, 2.0)]
    untrained = db.execute(
        f"SELECT request_id FROM ({ledger.untrained(d, GLOBAL)})", params
    ).fetchall()
    assert untrained == [("r1",)]


def test_a_claim_is_made_once_per_run_and_the_ledger_anti_joins(warehouse: DuckDBWarehouse):
    warehouse.insert_predictions([prediction(f"r{i}", 0) for i in range(5)])
    warehouse.insert_feedback([reward(f"r{i}", 0, float(i)) for i in range(5)])
    assert warehouse.claim("a", 3, RANK, ACTIONS) == 3
    warehouse.insert_predictions([prediction("late", 0)])
    warehouse.insert_feedback([reward("late", 0, 9.0)])
    assert warehouse.claim("a", 3, RANK, ACTIONS) == 3  # a restart reads what it read before
    before = claimed(warehouse, "a")
    assert warehouse.commit(run("a", None, 3)) is True
    assert warehouse.commit(run("a", None, 3)) is False  # committing again changes nothing
    assert claimed(warehouse, "a") == before
    assert warehouse.count_untrained(RANK, ACTIONS) == 3
    assert warehouse.claim("b", 100, RANK, ACTIONS) == 3
    assert {k for k, *_ in claimed(warehouse, "b")} == {"r3", "r4", "late"}
    assert warehouse.latest_run().run_id == "a"  # type: ignore[union-attr]


def test_a_run_claims_once_even_when_it_claimed_nothing(warehouse: DuckDBWarehouse):
    """run_claims holds the run from its first claim on: a restart reads what the run read,
    nothing, though rows arrived since (before the guard, a run that claimed nothing claimed
    again); those rows go to the next run."""
    assert warehouse.claim("a", 10, RANK, ACTIONS) == 0
    warehouse.insert_predictions([prediction("r0", 0)])
    warehouse.insert_feedback([reward("r0", 0, 1.0)])
    assert warehouse.claim("a", 10, RANK, ACTIONS) == 0
    assert warehouse.query("SELECT run_id FROM run_claims") == [("a",)]
    assert warehouse.claim("b", 10, RANK, ACTIONS) == 1


def test_two_first_claims_of_one_run_at_once_claim_once(warehouse, monkeypatch):
    """Both claims find the run unclaimed before either writes (a barrier after the check):
    run_claims' key lets one through; the other fails with WarehouseBusy and writes nothing,
    and run again it is a restart that reads the winner's claims (run_examples has no index:
    without the guard both would stage every key)."""
    import threading

    from app.warehouse import duckdb_store
    from app.warehouse.base import WarehouseBusy

    warehouse.insert_predictions([prediction(f"r{i}", 0) for i in range(4)])
    warehouse.insert_feedback([reward(f"r{i}", 0, 1.0) for i in range(4)])
    both_checked = threading.Barrier(2, timeout=10)
    one = duckdb_store._one

    def check_then_wait(db, sql, params):
        value = one(db, sql, params)
        if sql == ledger.claimed_before(duckdb_store.SQL):
            both_checked.wait()
        return value

    monkeypatch.setattr(duckdb_store, "_one", check_then_wait)
    outcomes: list[object] = []

    def claim() -> None:
        try:
            outcomes.append(DuckDBWarehouse(warehouse.path).claim("a", 3, RANK, ACTIONS))
        except WarehouseBusy as err:
            outcomes.append(err)

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 3 in outcomes and any(isinstance(o, WarehouseBusy) for o in outcomes), outcomes
    monkeypatch.setattr(duckdb_store, "_one", one)
    assert warehouse.claim("a", 3, RANK, ACTIONS) == 3
    assert warehouse.query("SELECT count(*), count(DISTINCT request_id) FROM run_examples") == [
        (3, 3)
    ]
    assert warehouse.query("SELECT count(*) FROM run_claims") == [(1,)]


def test_an_old_run_examples_loses_its_index_and_keeps_its_claims(tmp_path: Path):
    """A warehouse file from when run_examples had a PRIMARY KEY: opening it rebuilds the
    table without the index (DuckDB cannot drop a constraint), every claim kept; a run that
    claimed then, before run_claims existed, restarts as a restart (its claims found in
    run_examples), claiming nothing new."""
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as db:
        indexed = dataclasses.replace(RUN_EXAMPLES, primary_key=True)
        for table in TABLES:
            if table is not RUN_CLAIMS:
                db.execute(duckdb_ddl(indexed if table is RUN_EXAMPLES else table))
        db.execute("INSERT INTO run_examples VALUES ('a', 'r0', 0, ?), ('a', 'r1', 0, ?)", [T0, T0])
    old = DuckDBWarehouse(path)
    old.insert_predictions([prediction(f"r{i}", 0) for i in range(3)])
    old.insert_feedback([reward(f"r{i}", 0, 1.0) for i in range(3)])
    with duckdb.connect(str(path)) as db:
        assert db.execute(schemas.duckdb_has_primary_key(RUN_EXAMPLES)).fetchone() == (0,)
        columns = [r[0] for r in db.execute("DESCRIBE run_examples").fetchall()]
        assert columns == RUN_EXAMPLES.column_names
    assert old.claim("a", 10, RANK, ACTIONS) == 2
    assert old.query("SELECT request_id FROM run_examples ORDER BY 1") == [("r0",), ("r1",)]
    assert old.claim("b", 10, RANK, ACTIONS) == 3  # nothing is trained yet: all three


def test_commit_refuses_a_stale_parent_and_taken_examples(warehouse: DuckDBWarehouse):
    warehouse.insert_predictions([prediction(f"r{i}", 0) for i in range(4)])
    warehouse.insert_feedback([reward(f"r{i}", 0, 1.0) for i in range(4)])
    warehouse.claim("a", 100, RANK, ACTIONS)
    warehouse.claim("b", 100, RANK, ACTIONS)  # started together (two ticks on Vertex)
    assert warehouse.commit(run("a", None, 4))
    with pytest.raises(LedgerConflict, match="warm-started from nothing but run a"):
        warehouse.commit(run("b", None, 4))
    with pytest.raises(LedgerConflict, match="4 of its examples were trained by another run"):
        warehouse.commit(run("b", "a", 4))
    rows = warehouse.query("SELECT run_id, count(*) FROM trained_examples GROUP BY ALL")
    assert rows == [("a", 4)]
    assert [r.run_id for r in [warehouse.latest_run()] if r] == ["a"]


def test_two_commits_at_once_with_one_parent_commit_once(warehouse, monkeypatch):
    """Both runs read the ledger before either writes (a barrier after the checks): the
    compare-and-swap on the ledger head lets one commit; the other fails with LedgerConflict
    and changes nothing (before the head, both committed)."""
    import threading

    from app.warehouse import duckdb_store

    warehouse.insert_predictions([prediction(f"r{i}", 0) for i in range(4)])
    warehouse.insert_feedback([reward(f"r{i}", 0, 1.0) for i in range(4)])
    warehouse.claim("a", 2, RANK, ACTIONS)
    warehouse.claim("b", 2, RANK, ACTIONS)
    warehouse.query("DELETE FROM run_examples WHERE run_id = 'b'")  # b claims the other two
    warehouse.query(
        "INSERT INTO run_examples SELECT 'b', request_id, instance_index, now() FROM predictions "
        "WHERE request_id NOT IN (SELECT request_id FROM run_examples)"
    )
    both_checked = threading.Barrier(2, timeout=10)
    checks = duckdb_store.conflict_message

    def check_then_wait(*args):
        problem = checks(*args)
        both_checked.wait()
        return problem

    monkeypatch.setattr(duckdb_store, "conflict_message", check_then_wait)
    outcomes: dict[str, object] = {}

    def commit(run_id: str) -> None:
        try:
            outcomes[run_id] = DuckDBWarehouse(warehouse.path).commit(run(run_id, None, 2))
        except LedgerConflict as err:
            outcomes[run_id] = err

    threads = [threading.Thread(target=commit, args=(r,)) for r in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r, o in outcomes.items() if o is True]
    assert len(winners) == 1, outcomes
    loser = "b" if winners == ["a"] else "a"
    assert isinstance(outcomes[loser], LedgerConflict)
    assert "another run committed at the same time" in str(outcomes[loser])
    assert warehouse.query("SELECT DISTINCT run_id FROM trained_examples") == [(winners[0],)]
    assert warehouse.query("SELECT run_id FROM training_runs") == [(winners[0],)]
    assert warehouse.query("SELECT ledger, run_id FROM ledger_head") == [
        ("training_set", winners[0])
    ]


def test_the_ledger_head_starts_at_the_latest_run_of_a_ledger_without_one(warehouse):
    """The head row is created by the first commit (idempotently): a ledger from before the
    head starts at its latest committed run, so the next run's compare-and-swap succeeds."""
    warehouse.insert_predictions([prediction("r0", 0), prediction("r1", 0)])
    warehouse.insert_feedback([reward("r0", 0, 1.0), reward("r1", 0, 1.0)])
    warehouse.claim("a", 1, RANK, ACTIONS)
    assert warehouse.commit(run("a", None, 1))
    assert warehouse.commit(run("a", None, 1)) is False  # a restart: committed already
    warehouse.query("DELETE FROM ledger_head")  # as before the head existed
    warehouse.claim("b", 1, RANK, ACTIONS)
    assert warehouse.commit(run("b", "a", 1))
    assert warehouse.query("SELECT ledger, run_id FROM ledger_head") == [("training_set", "b")]


def test_bad_rows_are_quarantined_with_a_reason_and_block_nothing(warehouse: DuckDBWarehouse):
    nan = float("nan")
    warehouse.insert_predictions(
        [
            prediction("ok", 0),
            prediction("bad", 0, action=ACTIONS),
            PredictionRecord("bad", 1, T0, "v1", [1.0, 2.0, 3.0], 0),
            PredictionRecord("bad", 2, T0, "v1", [1.0, nan], 0),
            # finite as FLOAT64 (the Logger and the predictor accept them), not as float32
            PredictionRecord("bad", 3, T0, "v1", [1e39, 1.0], 0),
            PredictionRecord("bad", 4, T0, "v1", [1e20, 1e20], 0),
            prediction("bad", 5),
            prediction("ok", 1),
        ]
    )
    warehouse.insert_feedback(
        [reward("ok", 0, 1.0), reward("ok", 1, 2.0)]
        + [reward("bad", i, 1.0) for i in (0, 1, 3, 4)]
        + [FeedbackRecord("bad", 2, T0, 1.0, "t"), reward("bad", 5, 1e39)]
    )
    assert warehouse.count_untrained(RANK, ACTIONS) == 2
    assert warehouse.claim("a", 100, RANK, ACTIONS) == 2
    reasons = warehouse.query("SELECT instance_index, reason FROM quarantine ORDER BY 1")
    too_large = "observation is too large for float32 training (its squared norm exceeds 3.4e38)"
    assert reasons == [
        (0, "action 4 is outside 0..3"),
        (1, "observation has 3 values, the rank is 2"),
        (2, "observation holds a non-finite value"),
        (3, too_large),
        (4, too_large),
        (5, "reward is too large for float32 training"),
    ]
    warehouse.commit(run("a", None, 2))
    assert warehouse.count_untrained(RANK, ACTIONS) == 0  # nothing left over, nothing stuck


def bigquery_client(http, project="proj", location="EU"):
    """The real BigQuery client, speaking to a fake REST API (app/rehearsal/fakes.py)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.bigquery import client

    return client.Client(
        project=project, location=location, credentials=AnonymousCredentials(), _http=http
    )


ALL_TABLES = {"ds", *(f"ds.{t.name}" for t in TABLES)}


def test_bigquery_checks_the_tables_infra_created_and_creates_none():
    http = FakeBigQueryHttp(existing=ALL_TABLES)
    BigQueryWarehouse("proj", "ds", "EU", client=bigquery_client(http)).ensure_tables()
    assert {(m, p) for m, p, _ in http.requests} == {
        ("GET", "/projects/proj/datasets/ds"),
        *(("GET", f"/projects/proj/datasets/ds/tables/{t.name}") for t in TABLES),
    }


def test_a_missing_bigquery_table_is_named_not_created():
    http = FakeBigQueryHttp(existing=ALL_TABLES - {"ds.feedback"})
    with pytest.raises(
        MissingTables, match=r"BigQuery has no proj\.ds\.feedback: .*deploy <env>-data"
    ):
        BigQueryWarehouse("proj", "ds", "EU", client=bigquery_client(http)).ensure_tables()
    assert all(method == "GET" for method, _, _ in http.requests)


def test_cloud_generator_creates_no_dataset_or_table(movielens_dir, monkeypatch):
    """Defect 4: the start-up pipeline's Generator, in a cloud profile, sends BigQuery
    checks and rows (Storage Write API appends), never a dataset or table creation (its
    account may not create them)."""
    import functools

    import google.auth
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    from app.loop.parameters import PipelineParameters
    from app.loop.steps import run_generator
    from app.rehearsal.fakes import FakeBigQueryWrite
    from app.warehouse import bigquery_write

    write = FakeBigQueryWrite()
    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), "proj"))
    google_client = bigquery_write.client
    monkeypatch.setattr(bigquery_write, "client", lambda host=None: google_client(write.host))

    for name in [n for n in __import__("os").environ if n.startswith("RECLOOP")]:
        monkeypatch.delenv(name)
    http = FakeBigQueryHttp(existing={"recloop_dev", *(f"recloop_dev.{t.name}" for t in TABLES)})
    monkeypatch.setattr(bigquery, "Client", functools.partial(bigquery_client, http), raising=True)
    parameters = PipelineParameters(
        profile="dev",
        project_id="proj",
        region="us-central1",
        raw_data_path=str(movielens_dir),
        training_artifacts_dir="gs://recloop-dev-artifacts",
        bigquery_dataset_id="recloop_dev",
        rank_k=5,
        num_actions=10,
        driver_steps=2,
        endpoint="projects/1/locations/us-central1/endpoints/77",
        serving_image="r/predictor@sha256:" + "b" * 64,
        predictor_service_account="p@proj.iam.gserviceaccount.com",
        pubsub_project_id="proj",
        prediction_logs_topic="recloop-prediction-logs",
    )
    with write.serving():
        assert run_generator(parameters=parameters) == 16
    assert [(m, p) for m, p, _ in http.requests if m != "GET"] == []
    assert [(a.request.write_stream, a.rows().num_rows) for a in write.appends] == [
        ("projects/proj/datasets/recloop_dev/tables/predictions/streams/_default", 16),
        ("projects/proj/datasets/recloop_dev/tables/feedback/streams/_default", 16),
    ]


def test_the_feedback_window_is_cut_by_the_warehouse_clock_not_the_senders(tmp_path):
    """With a feedback window, the ledger's queries read (and train on) only what the
    warehouse ingested inside it, whatever time the sender stamped: a row stamped 10 days ago
    by a wrong client clock but stored now is trained on; a row stored 10 days ago (its
    stamp says now) is not. Counts, claims and the run's statistics agree."""
    now = datetime.now(UTC)
    path = tmp_path / "w.duckdb"
    warehouse = DuckDBWarehouse(path, feedback_window_days=5)
    for request_id, stamped in (("skewed_clock", now - timedelta(days=10)), ("stored_old", now)):
        warehouse.insert_predictions([PredictionRecord(request_id, 0, stamped, "v", [1.0, 2.0], 1)])
        warehouse.insert_feedback([FeedbackRecord(request_id, 0, stamped, 1.0, "s")])
    for table in ("predictions", "feedback"):
        warehouse.query(
            f"UPDATE {table} SET ingested_at = now() - INTERVAL 10 DAY "
            "WHERE request_id = 'stored_old'"
        )
    assert warehouse.count_untrained(2, 3) == 1
    assert warehouse.claim("run", 10, 2, 3) == 1
    assert [e.request_id for page in warehouse.iter_claimed("run") for e in page] == [
        "skewed_clock"
    ]
    assert warehouse.claimed_statistics("run", 2, 3).num_samples.tolist() == [0, 1, 0]
    assert DuckDBWarehouse(path).count_untrained(2, 3) == 2  # unbounded: stored_old too


def test_logged_tables_are_partitioned_by_the_warehouse_clock():
    assert PREDICTIONS.partition_by == FEEDBACK.partition_by == "ingested_at"


def test_a_vanished_write_ahead_log_is_waited_out(tmp_path: Path, monkeypatch):
    """A process that closes the file removes its write-ahead log; one opening at that instant
    gets "Cannot open file …wal: No such file or directory" (it ended `make demo` once). That
    is another process's turn, like its lock: waited out, not an error; so is DuckDB's
    "already attached" while this process still lets the file go. Anything else is."""
    from app.warehouse import duckdb_store

    path = tmp_path / "w.duckdb"
    real = duckdb.connect
    failures: list[str | Exception] = [
        f'IO Error: Cannot open file "{path}.wal": No such file or directory'
    ]

    def connect(database: str, *args, **kwargs):
        if failures:
            failure = failures.pop()
            raise failure if isinstance(failure, Exception) else duckdb.IOException(failure)
        return real(database, *args, **kwargs)

    monkeypatch.setattr(duckdb_store.duckdb, "connect", connect)
    assert DuckDBWarehouse(path).query("SELECT 1") == [(1,)]
    failures.append(  # what DuckDB raises while this process still lets the file go
        duckdb.ResourceInUseException(
            f'Unique file handle conflict: Cannot attach "w" - the database file "{path}" '
            'is already attached by database "w"'
        )
    )
    assert DuckDBWarehouse(path).query("SELECT 1") == [(1,)]
    assert not failures
    failures.append("IO Error: Cannot open file: Permission denied")
    with pytest.raises(duckdb.IOException, match="Permission denied"):
        DuckDBWarehouse(path).query("SELECT 1")


def test_a_removed_warehouse_file_gets_its_tables_again(tmp_path: Path):
    """Tables are created once per warehouse object (a Logger batch skips the DDL), yet a
    file removed under a running Logger is made again with its tables."""
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    warehouse.insert_predictions([prediction("r0", 0)])
    warehouse.path.unlink()
    warehouse.insert_predictions([prediction("r1", 0)])
    assert warehouse.query("SELECT request_id FROM predictions") == [("r1",)]
