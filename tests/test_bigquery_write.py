"""The cloud Logger's writes as BigQuery's Storage Write API receives them: a real gRPC server
on 127.0.0.1 implements BigQueryWrite/AppendRows (app/rehearsal/fakes.py), the real
BigQueryWriteClient reaches it through `warehouse.write_api_emulator_host`, and each request
is decoded with the library's own types."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import functions_framework
import pyarrow as pa
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from google.cloud.bigquery_storage_v1 import types

import app.functions.main as entry_points
from app import messages
from app.config import Settings
from app.functions import logger as logger_module
from app.functions.logger import handle_batch
from app.rehearsal import apis
from app.rehearsal.fakes import FakeBigQueryHttp, FakeBigQueryWrite, refused, row_errors
from app.schemas import FEEDBACK, PREDICTIONS, TABLES, TableSchema, bigquery_fields
from app.warehouse import bigquery_write
from app.warehouse.bigquery_store import BigQueryWarehouse
from app.warehouse.bigquery_write import RowsRejected

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
DEFAULT_VALUE = types.AppendRowsRequest.MissingValueInterpretation.DEFAULT_VALUE
# BigQuery's types as Arrow carries them (the Storage Write API's mapping), written out here
# rather than taken from app/schemas.py's arrow_schema, which the writer itself uses.
ARROW = {
    "STRING": pa.string(),
    "INT64": pa.int64(),
    "FLOAT64": pa.float64(),
    "TIMESTAMP": pa.timestamp("us", tz="UTC"),
}


def event(data: bytes, message_id: str = "1") -> dict[str, Any]:
    return {"message": {"data": base64.b64encode(data).decode(), "messageId": message_id}}


@pytest.fixture
def write() -> Iterator[FakeBigQueryWrite]:
    import google.auth

    fake = FakeBigQueryWrite()
    # The client's own credentials lookup, answered without a Google account.
    with (
        fake.serving(),
        mock.patch.object(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), "p")),
    ):
        yield fake


def warehouse_on(write_host: str, http: Any = None) -> BigQueryWarehouse:
    client = bigquery.Client(
        project="proj", credentials=AnonymousCredentials(), _http=http or FakeBigQueryHttp()
    )
    return BigQueryWarehouse("proj", "ds", "EU", client=client, write_api_emulator_host=write_host)


def table_schema(table: TableSchema) -> pa.Schema:
    """The table's BigQuery schema (what infra creates), the columns a writer sends: all but
    those with a server default."""
    fields = [f for f in bigquery_fields(table) if "defaultValueExpression" not in f]
    return pa.schema(
        [
            pa.field(
                f["name"],
                pa.list_(ARROW[f["type"]]) if f["mode"] == "REPEATED" else ARROW[f["type"]],
                nullable=f["mode"] != "REQUIRED",
            )
            for f in fields
        ]
    )


def rows_of(*data: bytes) -> list[dict[str, Any]]:
    """The messages' rows as the table holds them (an absent list: the empty one)."""
    return [
        {k: ([] if v is None and k in ("candidates", "slate") else v) for k, v in asdict(r).items()}
        for d in data
        for r in messages.parse(d)
    ]


def prediction_log(request_id: str, n: int = 3, **extra: Any) -> bytes:
    rows = [
        {"instance_index": i, "observation": [0.5, -1.0 * i], "action": i, "propensity": 0.25}
        | extra
        for i in range(n)
    ]
    return messages.prediction_log(request_id, NOW, "v7", rows)


def test_a_batch_is_one_append_per_table_of_the_messages_rows(write):
    """Both tables' rows of a batch, each table one AppendRows to its default stream with
    the table's schema; a malformed message goes to dead-letter with its reason."""
    logs = [prediction_log("a"), prediction_log("b", 2, candidates=[4, 9]), prediction_log("c", 1)]
    rewards = [messages.feedback("a", [(0, 4.0), (2, 1.0)], "simulator", NOW)]
    dead: list[str] = []
    events = [event(d) for d in [*logs, b'{"kind": "nonsense"}', *rewards]]
    outcome = handle_batch(events, warehouse_on(write.host), lambda e, why: dead.append(why))
    assert (outcome.predictions, outcome.feedback) == (6, 2)
    assert dead == ["kind must be one of prediction_log, feedback, got 'nonsense'"]
    predictions, feedback = write.appends
    for append, table, data in ((predictions, PREDICTIONS, logs), (feedback, FEEDBACK, rewards)):
        request = append.request
        assert (
            request.write_stream
            == f"projects/proj/datasets/ds/tables/{table.name}/streams/_default"
        )
        assert append.schema().equals(table_schema(table))
        assert "ingested_at" not in append.schema().names  # BigQuery's clock fills it
        assert request.default_missing_value_interpretation == DEFAULT_VALUE
        assert request.arrow_rows.rows.row_count == len(rows_of(*data))
        assert append.rows().to_pylist() == rows_of(*data)


def test_row_errors_fail_the_function_with_a_503(write, monkeypatch, caplog):
    """Pub/Sub push redelivers a 503: the first delivery's predictions are rejected (none
    stored), so no feedback append follows it; the redelivery stores every row once."""
    warehouse = warehouse_on(write.host)
    monkeypatch.setattr(logger_module, "_context", lambda: (Settings(), warehouse))
    app = functions_framework.create_app(
        target="logger", source=entry_points.__file__, signature_type="http"
    )
    data = prediction_log("r", 4)
    body = {**event(data), "subscription": "projects/p/subscriptions/recloop-dev-logger"}
    write.queued.append(row_errors(2, message="observation: invalid value"))
    with caplog.at_level("INFO"):
        assert app.test_client().post("/", json=body).status_code == 503
    (line,) = [r.getMessage() for r in caplog.records if r.name == "recloop.logger"]
    assert line == (
        "not stored, the message will be delivered again: BigQuery rejected 1 rows of an "
        "append to predictions (row 2: observation: invalid value); none of them is stored"
    )
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert len(write.appends) == 1
    assert app.test_client().post("/", json=body).status_code == 200
    assert len(write.appends) == 2  # the message holds no feedback: no append of it
    assert write.appends[-1].rows().to_pylist() == rows_of(data)


def test_an_error_status_is_a_failed_write(write):
    write.queued.append(refused(3, "Input schema has more fields than BigQuery schema"))
    with pytest.raises(RowsRejected, match=r"status 3: Input schema has more fields"):
        warehouse_on(write.host).insert_logs(messages_batch(prediction_log("r")))


def messages_batch(*data: bytes) -> Any:
    from app.warehouse.records import LogBatch

    batch = LogBatch()
    for d in data:
        messages.add(batch, d)
    return batch


def test_a_batch_larger_than_a_request_is_split_in_order_on_one_stream(write, monkeypatch):
    monkeypatch.setattr(bigquery_write, "MAX_REQUEST_BYTES", 2_000)
    data = prediction_log("big", 60)
    warehouse_on(write.host).insert_logs(messages_batch(data))
    sent = [a.rows().to_pylist() for a in write.appends]
    assert len(sent) > 2
    assert [row for rows in sent for row in rows] == rows_of(data)


@pytest.fixture
def bigquery_fake(monkeypatch) -> Iterator[apis.GoogleApis]:
    """The rehearsal's BigQuery: its REST API (queries run on DuckDB) and its Storage Write
    API storing appends in the same tables, made from the tables infra declares."""
    import google.auth

    fakes = apis.GoogleApis()
    for table in TABLES:
        fakes.tables.create("proj", "ds", table.name, bigquery_fields(table))
    with (
        fakes.serving(),
        mock.patch.object(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), "p")),
    ):
        monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", fakes.url)
        yield fakes


def test_a_redelivered_batch_after_a_failed_feedback_append_counts_each_example_once(bigquery_fake):
    """The default stream is at-least-once: predictions appended, then feedback rejected,
    and the redelivered batch appends the predictions again. The ledger reads each key once:
    the examples the next run would claim are each one once (the claim reads the same
    deduplicating query: tests/test_warehouse.py::
    test_tables_without_keys_are_deduplicated_by_the_queries; its BigQuery script is checked
    on the wire in tests/test_bigquery_requests.py)."""
    client = bigquery.Client(project="proj", location="EU", credentials=AnonymousCredentials())
    warehouse = BigQueryWarehouse(
        "proj", "ds", "EU", client=client, write_api_emulator_host=bigquery_fake.write_host
    )
    batch = [
        event(prediction_log("r", 3)),
        event(messages.feedback("r", [(0, 4.0), (1, 2.0), (2, 5.0)], "simulator", NOW)),
    ]
    bigquery_fake.write.queued += [None, row_errors(0)]  # predictions stored, feedback not
    with pytest.raises(RowsRejected, match="append to feedback"):
        handle_batch(batch, warehouse)
    handle_batch(batch, warehouse)  # Pub/Sub's redelivery
    tables = {name: ("proj", "ds", name) for name in ("predictions", "feedback")}
    assert bigquery_fake.tables.count(tables["predictions"]) == 6  # stored twice
    assert bigquery_fake.tables.count(tables["feedback"]) == 3
    assert warehouse.count_untrained(rank_k=2, num_actions=3) == 3
