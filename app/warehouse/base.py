"""The interface both warehouses implement, and the errors they share."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np

from app.evaluation.canary import RewardStats
from app.linear import LinearState
from app.schemas import GLOBAL, PER_ARM
from app.warehouse import linear_statistics
from app.warehouse.ledger import Dialect
from app.warehouse.records import (
    FeedbackRecord,
    LogBatch,
    PredictionRecord,
    PromotionRecord,
    TrainingExample,
    TrainingRunRecord,
)

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)


def since(feedback_window_days: float, at: datetime | None = None) -> datetime:
    """The earliest ingestion time (`ingested_at`, the warehouse's clock) a ledger query reads
    (its partition filter): one feedback window before `at` (now), or everything when the
    window is 0 (unbounded). An interaction whose prediction or reward the warehouse stored
    before it is never trained on; the sender's `time` plays no part."""
    if feedback_window_days <= 0:
        return EARLIEST
    return (at or datetime.now(UTC)) - timedelta(days=feedback_window_days)


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

    def insert_logs(self, batch: LogBatch) -> None:
        """A Logger batch: both tables' rows, keys stored already ignored. DuckDB stores
        the batch in one transaction; BigQuery appends each table (a retry appends again, and
        every ledger read deduplicates by key)."""

    def count_untrained(self, rank_k: int, num_actions: int, policy_kind: str = GLOBAL) -> int:
        """Examples no committed run trained on that a run with these shapes could train on
        (only those a policy of `policy_kind` served: app/schemas.py POLICY_KINDS)."""

    def claim(
        self, run_id: str, max_rows: int, rank_k: int, num_actions: int, policy_kind: str = GLOBAL
    ) -> int:
        """Quarantines bad rows, stages up to `max_rows` examples for the run (only on its
        first call) and returns how many the run holds; both see only rows a policy of
        `policy_kind` served (tests/test_policy_kind.py)."""

    def claim_statistics(
        self,
        run_id: str,
        max_rows: int,
        rank_k: int,
        num_actions: int,
        holdout_every: int = 0,
        corrupt_rewards: bool = False,
        arm_features: np.ndarray | None = None,
    ) -> tuple[int, LinearState]:
        """`claim`, then `claimed_statistics` (with `arm_features`: a per-arm run,
        `claimed_per_arm_statistics`; the catalogue's shape is the run's); on a run's first
        claim the sums read the rows the claim read, not the join again
        (tests/test_linear_statistics.py::test_a_first_claim_sums_what_a_restart_sums)."""

    def iter_claimed(self, run_id: str, page_size: int = 1000) -> Iterator[list[TrainingExample]]:
        """The run's claimed examples, in key order, one page at a time."""

    def claimed_statistics(
        self,
        run_id: str,
        rank_k: int,
        num_actions: int,
        holdout_every: int = 0,
        corrupt_rewards: bool = False,
    ) -> LinearState:
        """Linear-bandit sums over the run's claimed examples but the held-out ones, computed
        by the warehouse (app/warehouse/linear_statistics.py)."""

    def claimed_per_arm_statistics(
        self,
        run_id: str,
        arm_features: np.ndarray,
        holdout_every: int = 0,
        corrupt_rewards: bool = False,
    ) -> LinearState:
        """As claimed_statistics, for a per-arm policy: its one model over [u, u ⊙ v], the
        chosen movie's features v taken from `arm_features` (catalogue movies × rank_k) by
        the logged action (its catalogue index)."""

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


class ClaimsWithStatistics:
    """`Warehouse.claim_statistics`, written once for both warehouses over their `_claim`:
    (examples the run holds, the rows of a `sums` query run right after a first claim over
    the claim's temporary table, or None when the run had claimed already: a restart)."""

    sql: Dialect

    def _claim(
        self,
        run_id: str,
        max_rows: int,
        rank_k: int,
        num_actions: int,
        policy_kind: str,
        sums: str = "",
        extra: dict[str, Any] | None = None,
    ) -> tuple[int, list[tuple] | None]:
        raise NotImplementedError

    def claim(
        self, run_id: str, max_rows: int, rank_k: int, num_actions: int, policy_kind: str = GLOBAL
    ) -> int:
        return self._claim(run_id, max_rows, rank_k, num_actions, policy_kind)[0]

    def claim_statistics(
        self,
        run_id: str,
        max_rows: int,
        rank_k: int,
        num_actions: int,
        holdout_every: int = 0,
        corrupt_rewards: bool = False,
        arm_features: np.ndarray | None = None,
    ) -> tuple[int, LinearState]:
        restarted: Warehouse = self  # type: ignore[assignment]
        if arm_features is None:
            sums = linear_statistics.statistics(
                self.sql, rank_k, holdout_every, corrupt_rewards, claiming=True
            )
            claimed, rows = self._claim(run_id, max_rows, rank_k, num_actions, GLOBAL, sums)
            if rows is None:
                return claimed, restarted.claimed_statistics(
                    run_id, rank_k, num_actions, holdout_every, corrupt_rewards
                )
            return claimed, linear_statistics.to_state(rows, rank_k, num_actions)
        movies, rank_k = arm_features.shape
        sums = linear_statistics.per_arm_statistics(
            self.sql, rank_k, holdout_every, corrupt_rewards, claiming=True
        )
        catalogue = linear_statistics.arm_parameters(arm_features)
        claimed, rows = self._claim(run_id, max_rows, rank_k, movies, PER_ARM, sums, catalogue)
        if rows is None:
            return claimed, restarted.claimed_per_arm_statistics(
                run_id, arm_features, holdout_every, corrupt_rewards
            )
        return claimed, linear_statistics.to_state(rows, 2 * rank_k, 1)


def conflict_message(run: TrainingRunRecord, latest: str | None, overlap: int) -> str | None:
    if latest != run.parent_run_id:
        return (
            f"run {run.run_id} warm-started from {run.parent_run_id or 'nothing'} but run "
            f"{latest} has committed since; it publishes nothing (its examples stay untrained)"
        )
    if overlap:
        return f"run {run.run_id}: {overlap} of its examples were trained by another run"
    return None


def concurrent_commit_message(run: TrainingRunRecord) -> str:
    return (
        f"run {run.run_id}: another run committed at the same time (the ledger head moved from "
        f"{run.parent_run_id or 'nothing'}); it publishes nothing (its examples stay untrained)"
    )
