import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app import messages
from app.functions.logger import handle, handle_batch
from app.schemas import FEEDBACK, PREDICTIONS
from app.warehouse.base import WarehouseBusy
from app.warehouse.duckdb_store import DuckDBWarehouse
from app.warehouse.records import LogBatch

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def event(data: bytes) -> dict:
    return {"message": {"data": base64.b64encode(data).decode(), "messageId": "1"}}


@pytest.fixture
def warehouse(tmp_path: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(tmp_path / "w.duckdb")


def test_prediction_log_and_feedback_become_examples(warehouse: DuckDBWarehouse):
    rows = [
        {"instance_index": i, "observation": [0.1 * i, 1.0], "action": i, "propensity": 1.0}
        for i in range(3)
    ]
    log = messages.prediction_log("req", NOW, "v7", rows)
    rewards = messages.feedback("req", [(0, 4.0), (1, 3.0), (2, 5.0)], "simulator", NOW)
    assert handle(event(log), warehouse) == "stored 3 predictions"
    assert handle(event(rewards), warehouse) == "stored 3 rewards"
    # Pub/Sub delivers at least once: the same messages again add nothing.
    handle(event(log), warehouse)
    handle(event(rewards), warehouse)
    assert warehouse.count_untrained(rank_k=2, num_actions=3) == 3


def feedback_message(**changes) -> bytes:
    message = {
        "kind": "feedback",
        "request_id": "r",
        "source": "s",
        "time": NOW.isoformat(),
        "rewards": [{"instance_index": 0, "reward": 1}],
    }
    return json.dumps({**message, **changes}).encode()


def log_message(**row) -> bytes:
    message = {
        "kind": "prediction_log",
        "request_id": "r",
        "policy_version": "v",
        "time": NOW.isoformat(),
        "predictions": [{"instance_index": 0, "observation": [1.0], "action": 1, **row}],
    }
    return json.dumps(message).encode()


BAD = [
    (b"not json", "not valid JSON"),
    (b"[]", "must be a JSON object"),
    (b'{"kind": "other"}', "kind must be one of"),
    (feedback_message(request_id=""), "request_id must be a non-empty string"),
    (feedback_message(time="yesterday"), "time must be an ISO 8601 time"),
    (feedback_message(time="2026-11-01T00:00:00"), "with a zone"),
    (
        feedback_message(rewards=[{"instance_index": -1, "reward": 1}]),
        "rewards[0].instance_index must be a whole number",
    ),
    (
        feedback_message(rewards=[{"instance_index": 0, "reward": "5"}]),
        "rewards[0].reward must be a finite number",
    ),
    (feedback_message(rewards=[]), "rewards must be a non-empty list"),
    (
        log_message(observation=[1, True]),
        "predictions[0].observation must be a non-empty list of finite numbers",
    ),
    (log_message(propensity=2), "propensity must be in (0, 1]"),
    (log_message(action=1.5), "predictions[0].action must be a whole number"),
    # past the warehouse's INT64: stored, it raised (a 500, redelivered until dead-lettered)
    (
        feedback_message(rewards=[{"instance_index": 2**63, "reward": 1}]),
        "rewards[0].instance_index must be a whole number",
    ),
    (log_message(action=2**64 - 1), "predictions[0].action must be a whole number"),
]


@pytest.mark.parametrize(("data", "reason"), BAD)
def test_malformed_messages_are_rejected_with_a_reason(
    warehouse: DuckDBWarehouse, data: bytes, reason: str
):
    dead: list[str] = []
    outcome = handle(event(data), warehouse, lambda _event, why: dead.append(why))
    assert outcome.startswith("rejected") and reason in outcome
    assert dead and reason in dead[0]
    assert warehouse.query("SELECT count(*) FROM predictions") == [(0,)]
    assert warehouse.query("SELECT count(*) FROM feedback") == [(0,)]


def test_events_without_a_pubsub_message_are_rejected(warehouse: DuckDBWarehouse):
    assert "no Pub/Sub 'message'" in handle({"something": 1}, warehouse)
    assert "not base64" in handle({"message": {"data": "***"}}, warehouse)


class FailingFeedbackWrites(DuckDBWarehouse):
    """The warehouse fails the feedback write once, after the predictions were written in
    the same transaction."""

    failures = 1

    def _insert(self, db, table, rows):
        if table is FEEDBACK and self.failures:
            self.failures -= 1
            raise WarehouseBusy("injected: feedback write failed")
        super()._insert(db, table, rows)


def test_a_batch_that_fails_is_stored_exactly_once_on_retry(tmp_path: Path):
    warehouse = FailingFeedbackWrites(tmp_path / "w.duckdb")
    batch = []
    for r in range(20):
        rows = [
            {"instance_index": i, "observation": [0.1 * i, 1.0], "action": i % 3} for i in range(4)
        ]
        batch.append(event(messages.prediction_log(f"req{r}", NOW, "v7", rows)))
        batch.append(event(messages.feedback(f"req{r}", [(i, 1.0) for i in range(4)], "s", NOW)))
    batch.append(event(b"{not json"))
    batch.append(batch[0])  # a duplicate delivery inside the batch
    with pytest.raises(WarehouseBusy):
        handle_batch(batch, warehouse)  # the function answers an error: Pub/Sub redelivers
    assert warehouse.query("SELECT count(*) FROM predictions") == [(0,)]  # all or nothing
    outcome = handle_batch(batch, warehouse)
    assert (outcome.predictions, outcome.feedback, len(outcome.rejected)) == (84, 80, 1)
    assert warehouse.count_untrained(rank_k=2, num_actions=3) == 80
    assert warehouse.query("SELECT count(*) FROM predictions") == [(80,)]
    assert warehouse.query("SELECT count(*) FROM feedback") == [(80,)]


def test_an_index_past_int64_is_rejected_and_blocks_nothing_of_its_batch(
    warehouse: DuckDBWarehouse,
):
    """Before, it passed the parser and the batch's insert raised on every redelivery, so
    the good messages delivered with it were never stored."""
    batch = [
        event(feedback_message(rewards=[{"instance_index": 2**63, "reward": 1}])),
        event(feedback_message(request_id="good")),
    ]
    outcome = handle_batch(batch, warehouse)
    assert outcome.feedback == 1 and len(outcome.rejected) == 1
    assert warehouse.query("SELECT request_id FROM feedback") == [("good",)]


def test_a_parsed_batch_has_exactly_the_tables_columns():
    """One column per column of the table but the warehouse's own `ingested_at`, in order: a
    column added to app/schemas.py must be added to the records and to messages too."""
    batch = LogBatch()
    rows = [{"instance_index": 0, "observation": [0.5], "action": 1, "candidates": [3, 4]}]
    messages.add(batch, messages.prediction_log("r", NOW, "v", rows))
    messages.add(batch, messages.feedback("r", [(0, 1.0)], "s", NOW))
    for table, columns in ((PREDICTIONS, batch.predictions), (FEEDBACK, batch.feedback)):
        assert list(columns) == [c.name for c in table.columns if c.default is None]
        assert {len(values) for values in columns.values()} == {1}
    assert batch.prediction_records()[0].candidates == [3, 4]
