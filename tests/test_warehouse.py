"""The DuckDB warehouse for real; the BigQuery one with its client mocked, or the real client
against a request-capturing fake of the REST API."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.rehearsal.fakes import FakeBigQueryHttp
from app.schemas import FEEDBACK, PREDICTIONS, TABLES, bigquery_fields, duckdb_ddl
from app.warehouse.base import EPOCH
from app.warehouse.bigquery_store import BigQueryWarehouse, MissingTables
from app.warehouse.duckdb_store import DuckDBWarehouse
from app.warehouse.records import FeedbackRecord, PredictionRecord, TrainingRunRecord

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def prediction(request: str, index: int, action: int = 1, minutes: int = 0) -> PredictionRecord:
    return PredictionRecord(
        request, index, T0 + timedelta(minutes=minutes), "v1", [0.5, -1.0], action, 1.0
    )


def reward(request: str, index: int, value: float, minutes: int = 1) -> FeedbackRecord:
    return FeedbackRecord(request, index, T0 + timedelta(minutes=minutes), value, "test")


@pytest.fixture
def warehouse(tmp_path: Path) -> DuckDBWarehouse:
    w = DuckDBWarehouse(tmp_path / "w.duckdb")
    w.ensure_tables()
    return w


def test_schemas_generate_both_dialects():
    assert duckdb_ddl(PREDICTIONS).startswith(
        "CREATE TABLE IF NOT EXISTS predictions (request_id VARCHAR NOT NULL"
    )
    assert "observation DOUBLE[]" in duckdb_ddl(PREDICTIONS)
    assert "PRIMARY KEY (request_id, instance_index)" in duckdb_ddl(FEEDBACK)
    fields = {f["name"]: (f["type"], f["mode"]) for f in bigquery_fields(PREDICTIONS)}
    assert fields["observation"] == ("FLOAT64", "REPEATED")
    assert fields["propensity"] == ("FLOAT64", "NULLABLE")
    assert {t.name for t in TABLES} == {"predictions", "feedback", "training_runs"}


def test_examples_are_the_deduplicated_join(warehouse: DuckDBWarehouse):
    warehouse.insert_predictions(
        [prediction("r1", 0), prediction("r1", 1, action=3), prediction("r2", 0)]
    )
    warehouse.insert_feedback([reward("r1", 0, 4.0), reward("r1", 1, 2.0)])
    # Redelivered messages: the same keys again, even with other values, change nothing.
    warehouse.insert_predictions([prediction("r1", 0, action=9)])
    warehouse.insert_feedback([reward("r1", 0, 1.0)])
    pages = list(warehouse.iter_examples(EPOCH, max_rows=100))
    examples = [e for page in pages for e in page]
    assert [(e.action, e.reward) for e in examples] == [(1, 4.0), (3, 2.0)]
    assert examples[0].observation == [0.5, -1.0]
    assert warehouse.count_examples(EPOCH) == 2  # r2 has no reward yet


def test_watermark_bounds_and_pages(warehouse: DuckDBWarehouse):
    warehouse.insert_predictions([prediction(f"r{i}", 0) for i in range(10)])
    warehouse.insert_feedback([reward(f"r{i}", 0, float(i), minutes=i + 1) for i in range(10)])
    assert warehouse.latest_watermark() == EPOCH
    warehouse.record_training_run(
        TrainingRunRecord("v1", T0, T0 + timedelta(minutes=4), 4, "/p/v1")
    )
    assert warehouse.latest_watermark() == T0 + timedelta(minutes=4)
    newer = [
        e
        for page in warehouse.iter_examples(warehouse.latest_watermark(), 100, page_size=2)
        for e in page
    ]
    assert [e.reward for e in newer] == [4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    pages = list(warehouse.iter_examples(EPOCH, max_rows=5, page_size=2))
    assert [len(p) for p in pages] == [2, 2, 1]


def test_bigquery_inserts_with_row_ids_and_queries_with_parameters(mocker):
    client = mocker.MagicMock()
    client.insert_rows_json.return_value = []
    w = BigQueryWarehouse("proj", "ds", "EU", client=client)
    w.insert_predictions([prediction("r1", 0)])
    client.insert_rows_json.assert_called_once_with(
        "proj.ds.predictions",
        [
            {
                "request_id": "r1",
                "instance_index": 0,
                "time": T0.isoformat(),
                "policy_version": "v1",
                "observation": [0.5, -1.0],
                "action": 1,
                "propensity": 1.0,
                "candidates": None,
            }
        ],
        row_ids=["r1:0"],
    )
    client.query.return_value.result.return_value = [(7,)]
    assert w.count_examples(T0) == 7
    sql = client.query.call_args.args[0]
    assert "`proj.ds.predictions`" in sql and "`proj.ds.feedback`" in sql and "@watermark" in sql
    config = client.query.call_args.kwargs["job_config"]
    params = {p.name: (p.type_, p.value) for p in config.query_parameters}
    assert params == {"watermark": ("TIMESTAMP", T0), "max_rows": ("INT64", 2**62)}
    assert client.query.call_args.kwargs["location"] == "EU"


def test_bigquery_rejected_rows_raise(mocker):
    client = mocker.MagicMock()
    client.insert_rows_json.return_value = [{"index": 0, "errors": ["bad"]}]
    with pytest.raises(RuntimeError, match="BigQuery rejected rows for feedback"):
        BigQueryWarehouse("p", "d", "US", client=client).insert_feedback([reward("r", 0, 1.0)])


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
    checks and rows, never a dataset or table creation (its account may not create them)."""
    import functools

    from google.cloud import bigquery

    from app.loop.parameters import PipelineParameters
    from app.loop.steps import run_generator

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
    assert run_generator(parameters=parameters) == 16
    creations = [(m, p) for m, p, _ in http.requests if m == "POST" and "insertAll" not in p]
    assert creations == []
    inserted = [p for m, p, _ in http.requests if p.endswith("/insertAll")]
    assert inserted == [
        "/projects/proj/datasets/recloop_dev/tables/predictions/insertAll",
        "/projects/proj/datasets/recloop_dev/tables/feedback/insertAll",
    ]
