"""The parts `make rehearse` rests on: stack environments resolve, the fakes answer as the
services do (so a broken seam shows), and the checks name what Vertex would reject. The
rehearsal itself runs in tests/infra/test_rehearse.py (on the suite's one synthesis)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from app.rehearsal import apis, runner
from app.rehearsal import stacks as stack_view

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "infra" / "golden"
ENDPOINT = "projects/recloop-dev/locations/us-central1/endpoints/77"


def test_each_function_environment_resolves_from_the_stacks() -> None:
    documents = {p.stem: json.loads(p.read_text()) for p in GOLDEN.glob("dev-*.json")}
    variables = stack_view.rehearsal_variables("recloop-dev", "us-central1", "c" * 40)
    resolved = stack_view.environment(documents, "dev", variables)
    assert {f.entry_point for f in resolved.functions.values()} == {
        "simulator",
        "logger",
        "trigger",
    }
    for function in resolved.functions.values():
        assert function.topic.startswith("projects/recloop-dev/topics/")
        assert function.service_account.endswith("@recloop-dev.iam.gserviceaccount.com")
        assert not [v for v in function.environment.values() if "${" in v], function.name
    assert resolved.prediction_logs_topic == "projects/recloop-dev/topics/recloop-prediction-logs"
    with pytest.raises(stack_view.UnresolvedReference, match="serving_image"):
        stack_view.environment(
            documents, "dev", {k: v for k, v in variables.items() if k != "serving_image"}
        )


@pytest.fixture
def fakes() -> Iterator[apis.GoogleApis]:
    fake = apis.GoogleApis()
    with fake.serving():
        yield fake


def test_the_write_api_fake_refuses_an_append_the_table_cannot_take(fakes, monkeypatch) -> None:
    """As BigQuery: a writer schema naming a column the table lacks, or leaving out a
    REQUIRED one, appends nothing; leaving out a defaulted column without DEFAULT_VALUE
    stores NULL there. Each append is recorded with its caller's identity."""
    from unittest import mock

    import google.auth
    from google.cloud.bigquery_storage_v1 import types
    from google.oauth2.credentials import Credentials

    from app.schemas import FEEDBACK, PREDICTIONS, TableSchema, bigquery_fields
    from app.warehouse import bigquery_write
    from app.warehouse.bigquery_write import RowsRejected

    token = Credentials(token=f"{apis.TOKEN_PREFIX}logger@p.iam")  # what the metadata fake hands
    monkeypatch.setattr(google.auth, "default", mock.Mock(return_value=(token, "p")))
    fakes.tables.create("p", "d", "feedback", bigquery_fields(FEEDBACK))
    client = bigquery_write.client(fakes.write_host)
    stream = bigquery_write.stream_name("p", "d", FEEDBACK)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    good = {"request_id": ["r"], "instance_index": [0], "time": [now], "reward": [1.0]}
    extra = TableSchema(FEEDBACK.name, (*FEEDBACK.columns[:4], PREDICTIONS.columns[3]), "")
    with pytest.raises(RowsRejected, match="no such field: policy_version"):
        bigquery_write.append(client, stream, extra, {**good, "policy_version": ["v"]})
    short = TableSchema(FEEDBACK.name, FEEDBACK.columns[:4], "")
    with pytest.raises(RowsRejected, match="missing required field: source"):
        bigquery_write.append(client, stream, short, good)
    with pytest.raises(RowsRejected, match="Not found: write stream"):
        bigquery_write.append(
            client, stream.replace("/d/", "/e/"), FEEDBACK, {**good, "source": ["s"]}
        )
    assert fakes.tables.count(("p", "d", "feedback")) == 0
    request = bigquery_write.requests(stream, FEEDBACK, {**good, "source": ["s"]})[0]
    request.default_missing_value_interpretation = (
        types.AppendRowsRequest.MissingValueInterpretation.NULL_VALUE
    )
    (response,) = client.append_rows(iter([request]), retry=None, timeout=30)
    assert not response.row_errors and not response.error.code
    sql = "SELECT count(*) FROM `p.d.feedback` WHERE ingested_at IS NULL"
    assert fakes.tables.query(sql, [])[1] == [[1]]
    appended = fakes.received("bigquery-write", "AppendRows", "/feedback/streams/_default")
    assert {r.caller for r in appended} == {"logger@p.iam"}
    assert json.dumps(appended[-1].body)  # requests.jsonl holds it


class _Predictor(BaseHTTPRequestHandler):
    """A deployed model's container answering as the recloop predictor does."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        body = {
            "predictions": [
                {"action": 3, "movie_id": 4, "request_id": "r", "instance_index": 0, "title": "t"}
            ]
        }
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        """Quiet."""


def test_vertex_endpoint_restores_integer_fields(fakes, monkeypatch) -> None:
    """Vertex returns every number as a double; the Simulator indexes with the action."""
    import google.auth
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform

    from app.functions.endpoints import VertexEndpoint

    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), "p"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Predictor)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        fakes.models["m"] = {"name": "m", "containerSpec": {"predictRoute": "/predict"}}
        fakes.deployments[ENDPOINT] = apis.Deployment(fakes.models["m"], {"id": "1"})
        fakes.predictor_url = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setattr(
            aiplatform.initializer, "global_config", aiplatform.initializer._Config()
        )
        # A fresh configuration (restored after the test); `aiplatform.init` is bound to the old.
        aiplatform.initializer.global_config.init(
            api_endpoint=fakes.url, api_transport="rest", credentials=AnonymousCredentials()
        )
        [prediction] = VertexEndpoint(ENDPOINT, "recloop-dev", "us-central1").predict([[0.1]])
    finally:
        server.shutdown()
        server.server_close()
    assert prediction["action"] == 3 and isinstance(prediction["action"], int)
    assert isinstance(prediction["instance_index"], int)
    assert prediction["title"] == "t"


def test_a_job_vertex_would_reject_is_named(tmp_path: Path) -> None:
    template = tmp_path / "recloop-retraining.yaml"
    spec = {
        "pipelineInfo": {"name": "recloop-retraining"},
        "root": {
            "dag": {"tasks": {"ingest": {}}},
            "inputDefinitions": {
                "parameters": {
                    "project_id": {"parameterType": "STRING"},
                    "rank_k": {"parameterType": "NUMBER_INTEGER", "defaultValue": 20},
                }
            },
        },
    }
    template.write_text(json.dumps(spec))  # JSON is YAML
    good = {
        "pipelineSpec": spec,
        "runtimeConfig": {
            "gcsOutputDirectory": "gs://b/root",
            "parameterValues": {"project_id": "p"},
        },
    }
    assert runner.check_job(good, template) == []
    bad = {
        "pipelineSpec": spec,
        "runtimeConfig": {"gcsOutputDirectory": ".recloop/root", "parameterValues": {"rank": 1}},
    }
    problems = "; ".join(runner.check_job(bad, template))
    assert "pipeline root '.recloop/root' is not a gs:// path" in problems
    assert "parameters the pipeline does not declare: rank" in problems
    assert "required parameters missing: project_id" in problems


def test_a_deployment_without_environment_or_identity_is_named(tmp_path: Path) -> None:
    """What Model.upload/deployModel sent before the wiring contract (issue 8, defect 1)."""
    documents = {p.stem: json.loads(p.read_text()) for p in GOLDEN.glob("dev-*.json")}
    variables = stack_view.rehearsal_variables("recloop-dev", "us-central1", "c" * 40)
    resolved = stack_view.environment(documents, "dev", variables)
    rehearsal = runner.Rehearsal("dev", tmp_path, None, runner.Progress())
    model = {
        "name": "m",
        "artifactUri": "gs://recloop-dev-artifacts/policies/v1",
        "containerSpec": {"imageUri": variables["serving_image"], "predictRoute": "/predict"},
    }
    deployed = {
        "id": "1",
        "dedicatedResources": {
            "machineSpec": {"machineType": "n1-standard-2"},
            "minReplicaCount": 1,
            "maxReplicaCount": 2,
        },
    }
    problems = "; ".join(rehearsal.check_deployment(resolved, apis.Deployment(model, deployed)))
    assert "gives the predictor no environment, so it runs the local profile" in problems
    assert "not infra's recloop-dev-predictor@recloop-dev.iam.gserviceaccount.com" in problems
    assert "infra's environment config says n1-standard-2 x 1-1" in problems
    env = [
        {"name": "RECLOOP_PROFILE", "value": "dev"},
        {"name": "RECLOOP__PUBSUB__PROJECT_ID", "value": "recloop-dev"},
        {"name": "RECLOOP__PUBSUB__PUBLISH_PREDICTIONS", "value": "true"},
    ]
    model["containerSpec"]["env"] = env  # type: ignore[index]
    deployed |= {
        "serviceAccount": "recloop-dev-predictor@recloop-dev.iam.gserviceaccount.com",
        "dedicatedResources": {
            "machineSpec": {"machineType": "n1-standard-2"},
            "minReplicaCount": 1,
            "maxReplicaCount": 1,
        },
    }
    assert rehearsal.check_deployment(resolved, apis.Deployment(model, deployed)) == []


def test_a_request_the_stack_grants_no_role_for_is_found() -> None:
    documents = {p.stem: json.loads(p.read_text()) for p in GOLDEN.glob("dev-*.json")}
    variables = stack_view.rehearsal_variables("recloop-dev", "us-central1", "c" * 40)
    resolved = stack_view.environment(documents, "dev", variables)
    path = "projects/recloop-dev/datasets/recloop_dev/tables/predictions/streams/_default"
    need = runner.required_role(apis.Request("bigquery-write", "AppendRows", path, {}, {}, None))
    assert need is not None
    roles, scope, on, _ = need
    assert resolved.granted(
        "recloop-dev-logger@recloop-dev.iam.gserviceaccount.com", roles, scope, on
    )
    assert not resolved.granted(
        "recloop-dev-simulator@recloop-dev.iam.gserviceaccount.com", roles, scope, on
    )


def test_logger_rows_without_the_warehouse_clock_are_named(tmp_path: Path) -> None:
    """An append that leaves ingested_at out without asking for its default stores NULL
    there, and no ledger query would ever read the row: the Logger's seam is broken."""
    import pyarrow as pa

    from app.schemas import FEEDBACK, PREDICTIONS
    from app.warehouse.bigquery_write import writer_schema
    from app.warehouse.records import FeedbackRecord, LogBatch, PredictionRecord

    documents = {p.stem: json.loads(p.read_text()) for p in GOLDEN.glob("dev-*.json")}
    variables = stack_view.rehearsal_variables("recloop-dev", "us-central1", "c" * 40)
    resolved = stack_view.environment(documents, "dev", variables)
    rehearsal = runner.Rehearsal("dev", tmp_path, None, runner.Progress())
    for (project, dataset, table), fields in resolved.tables.items():
        rehearsal.apis.tables.create(project, dataset, table, fields)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    batch = LogBatch.of(
        [PredictionRecord("r", 0, now, "v", [1.0], 2, 0.5, [], None, [])],
        [FeedbackRecord("r", 0, now, 4.0, "s")],
    )
    for table, columns, defaults in (
        (PREDICTIONS, batch.predictions, True),
        (FEEDBACK, batch.feedback, False),
    ):
        rows = pa.Table.from_pydict(columns, schema=writer_schema(table))
        key = ("recloop-dev", "recloop_dev", table.name)
        assert rehearsal.apis.tables.append(key, rows, defaults) == ("", [])
    rehearsal.check_logger(resolved, served=1, rewarded=1)
    assert rehearsal.report.lines["logger"] == (
        "BROKEN: rows stored without ingested_at (the appends did not ask for the column's "
        "default): 1 in recloop-dev.recloop_dev.feedback"
    )
