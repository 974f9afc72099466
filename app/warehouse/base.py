"""The interface both warehouses implement, and the errors they share."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Protocol

from app.evaluation.canary import RewardStats
from app.warehouse.records import (
    FeedbackRecord,
    PredictionRecord,
    PromotionRecord,
    TrainingExample,
    TrainingRunRecord,
)


class WarehouseBusy(RuntimeError):
    """The warehouse could not be opened in time (the local DuckDB file is locked): retry."""


class LedgerConflict(RuntimeError):
    """A run cannot commit: another run committed since it started, or trained its examples."""


class Warehouse(Protocol):
    def ensure_tables(self) -> None:
        """The tables exist afterwards: DuckDB creates its own; in BigQuery infra creates
        them and this only checks, failing with a message that names what is missing."""

    def insert_predictions(self, rows: Sequence[PredictionRecord]) -> None:
        """Stores rows; a row whose key is already stored is ignored (redelivery is harmless)."""

    def insert_feedback(self, rows: Sequence[FeedbackRecord]) -> None: ...

    def count_untrained(self, rank_k: int, num_actions: int) -> int:
        """Examples no committed run trained on that a run with these shapes could train on."""

    def claim(self, run_id: str, max_rows: int, rank_k: int, num_actions: int) -> int:
        """Quarantines bad rows, stages up to `max_rows` examples for the run (only on its
        first call) and returns how many the run holds."""

    def iter_claimed(self, run_id: str, page_size: int = 1000) -> Iterator[list[TrainingExample]]:
        """The run's claimed examples, in key order, one page at a time."""

    def find_run(self, run_id: str) -> TrainingRunRecord | None: ...

    def latest_run(self) -> TrainingRunRecord | None:
        """The run committed last: the policy every new run warm-starts from."""

    def commit(self, run: TrainingRunRecord) -> bool:
        """Ledger + run record in one transaction. False if the run had committed already;
        LedgerConflict if its parent is no longer the latest run or its examples were taken."""

    def record_promotion(self, row: PromotionRecord) -> None:
        """Stores a decision; a decision already stored for (run_id, stage) is kept."""

    def promotions(self) -> list[PromotionRecord]:
        """Every decision, oldest first."""

    def rewards_by_version(self, since: datetime) -> list[RewardStats]:
        """Online reward per policy version over the interactions served since `since`."""


def conflict_message(run: TrainingRunRecord, latest: str | None, overlap: int) -> str | None:
    if latest != run.parent_run_id:
        return (
            f"run {run.run_id} warm-started from {run.parent_run_id or 'nothing'} but run "
            f"{latest} has committed since; it publishes nothing (its examples stay untrained)"
        )
    if overlap:
        return f"run {run.run_id}: {overlap} of its examples were trained by another run"
    return None
