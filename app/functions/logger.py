"""Logger: writes prediction-log and feedback messages to the warehouse.

A malformed message is rejected with its reason logged (and, in cloud, forwarded to the
dead-letter topic); it never crashes the function, so it is not redelivered forever.
Redelivered and duplicate messages are harmless: rows are keyed by (request_id,
instance_index) and a stored key is never written twice, so a message is idempotent on its
key whatever the message id. A write that fails (the local warehouse is busy, BigQuery is
unavailable or answers an append with row errors) raises, so the function answers with an
error and the message is delivered again — never acknowledged and dropped (tests/test_ledger.py::
test_busy_warehouse_raises_and_the_message_is_stored_on_retry; `make chaos`: redelivery,
duplicate_publish, logger_killed_mid_batch, warehouse_busy).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from werkzeug.exceptions import ServiceUnavailable

from app import messages, wiring
from app.config import Settings, load_settings
from app.functions.events import EventError, pubsub_message
from app.warehouse.base import Warehouse, WarehouseBusy
from app.warehouse.bigquery_write import RowsRejected
from app.warehouse.factory import open_warehouse
from app.warehouse.records import LogBatch

log = logging.getLogger("recloop.logger")


@cache
def _context() -> tuple[Settings, Warehouse]:
    settings = wiring.require_in_cloud(load_settings(), wiring.LOGGER)
    return settings, open_warehouse(settings)


def handle(event: Any, warehouse: Warehouse, dead_letter=None) -> str:
    """Stores one message; returns what was done, for the log and for tests."""
    batch = handle_batch([event], warehouse, dead_letter)
    if batch.rejected:
        return f"rejected: {batch.rejected[0]}"
    if batch.predictions:
        return f"stored {batch.predictions} predictions"
    return f"stored {batch.feedback} rewards"


@dataclass(frozen=True)
class BatchOutcome:
    predictions: int
    feedback: int
    rejected: list[str]


def handle_batch(events: Sequence[Any], warehouse: Warehouse, dead_letter=None) -> BatchOutcome:
    """Stores many messages with one write (Warehouse.insert_logs: in DuckDB one Arrow table
    per table, both in one transaction), which is what lets the Logger keep up with the
    predictor (benchmarks/quick.py: logger_rows_per_s; benchmarks/soak.py).

    Malformed messages are rejected one by one; the others are written together. If the write
    fails, this raises and the whole batch must be delivered again: nothing is acknowledged
    before the write committed, and a key stored already is not stored twice (tests/
    test_messages_and_logger.py::test_a_batch_that_fails_is_stored_exactly_once_on_retry).
    """
    batch = LogBatch()
    rejected: list[str] = []
    for event in events:
        try:
            messages.add(batch, pubsub_message(event).data)
        except (EventError, messages.MessageError) as err:
            log.warning("rejected message: %s", err)
            if dead_letter is not None:
                dead_letter(event, str(err))
            rejected.append(str(err))
    warehouse.insert_logs(batch)
    return BatchOutcome(batch.prediction_rows, batch.feedback_rows, rejected)


def logger(event: Any) -> None:
    """A busy warehouse, or BigQuery rejecting an append, is one log line and a 503 (Pub/Sub
    push redelivers any answer but 102/200/201/202/204), not a traceback per retry
    (tests/test_function_entry_points.py::test_logger_retry_is_one_line; a real Logger
    process on a file another process keeps opening: tests/test_logger_concurrency.py;
    row errors: tests/test_bigquery_write.py::test_row_errors_fail_the_function_with_a_503)."""
    settings, warehouse = _context()
    try:
        outcome = handle(event, warehouse, _dead_letter_publisher(settings))
    except (WarehouseBusy, RowsRejected) as err:
        log.warning("not stored, the message will be delivered again: %s", err)
        raise ServiceUnavailable(str(err)) from None
    log.info(outcome)


@cache
def _dead_letter_publisher(settings: Settings):
    if not settings.pubsub.dead_letter_topic:
        return None
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    publisher = pubsub_v1.PublisherClient()
    topic = publisher.topic_path(settings.pubsub.project_id, settings.pubsub.dead_letter_topic)

    def forward(event: Any, reason: str) -> None:
        try:
            message = pubsub_message(event)
            publisher.publish(topic, message.data, reason=reason[:1000]).result(timeout=30)
        except EventError:
            publisher.publish(topic, b"", reason=reason[:1000]).result(timeout=30)

    return forward
