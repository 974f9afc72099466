"""The interface both warehouses implement."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Protocol

from app.warehouse.records import (
    FeedbackRecord,
    PredictionRecord,
    TrainingExample,
    TrainingRunRecord,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Warehouse(Protocol):
    def ensure_tables(self) -> None:
        """The tables exist afterwards: DuckDB creates its own; in BigQuery infra creates
        them and this only checks, failing with a message that names what is missing."""

    def insert_predictions(self, rows: Sequence[PredictionRecord]) -> None:
        """Stores rows; a row whose key is already stored is ignored (redelivery is harmless)."""

    def insert_feedback(self, rows: Sequence[FeedbackRecord]) -> None: ...

    def record_training_run(self, run: TrainingRunRecord) -> None: ...

    def latest_watermark(self) -> datetime:
        """Feedback time of the newest example any policy was trained on (EPOCH if none)."""

    def count_examples(self, since: datetime) -> int: ...

    def iter_examples(
        self, since: datetime, max_rows: int, page_size: int = 1000
    ) -> Iterator[list[TrainingExample]]:
        """Training examples newer than `since`, oldest first, one page at a time."""
