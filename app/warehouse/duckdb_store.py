"""The local warehouse: one DuckDB file under the state directory.

Several local processes (the functions, the pipeline steps, the demo) share the file, and
DuckDB lets one process hold it at a time, so the file is open only while some thread of the
process works on it (one connection per process, a cursor per thread: `_shared`), and it
waits its turn when another process holds the lock — or has just removed its write-ahead log
on closing, which a process opening the file at that instant finds gone (`_transient`; seen in
`make demo`, tests/test_warehouse.py::test_a_vanished_write_ahead_log_is_waited_out). When the
wait runs out it raises
WarehouseBusy, and the Logger returns an error so that the message is delivered again
(tests/test_ledger.py::test_busy_warehouse_raises_and_the_message_is_stored_on_retry).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from app.evaluation import canary
from app.evaluation.canary import RewardStats
from app.linear import LinearState
from app.schemas import (
    FEEDBACK,
    GLOBAL,
    PREDICTIONS,
    PROMOTIONS,
    TABLES,
    TableSchema,
    arrow_schema,
    duckdb_ddl,
    duckdb_drop_primary_key,
    duckdb_has_primary_key,
    duckdb_migrations,
)
from app.warehouse import ledger, linear_statistics
from app.warehouse.base import (
    EARLIEST,
    ClaimsWithStatistics,
    LedgerConflict,
    WarehouseBusy,
    concurrent_commit_message,
    conflict_message,
    since,
)
from app.warehouse.records import (
    FeedbackRecord,
    LogBatch,
    PredictionRecord,
    PromotionRecord,
    TrainingExample,
    TrainingRunRecord,
)

LOCK_WAIT_S = 30.0
_DDL_LOCK = threading.Lock()
SQL = ledger.DUCKDB


def _transient(err: duckdb.IOException | duckdb.ResourceInUseException) -> bool:
    """Another process holds the file, or its write-ahead log vanished as that process closed,
    or this process's previous connection is still being let go ("already attached": `_shared`
    opens one at a time, but other code in the process may connect to the file too)."""
    text = str(err)
    return (
        "lock" in text.lower()
        or (".wal" in text and "No such file or directory" in text)
        or "already attached" in text
    )


class _Open:
    """One process's open connection to one file and how many threads are using it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connection: duckdb.DuckDBPyConnection | None = None
        self.users = 0


_OPEN: dict[Path, _Open] = {}
_OPEN_LOCK = threading.Lock()


@contextlib.contextmanager
def _shared(path: Path, lock_wait_s: float) -> Iterator[duckdb.DuckDBPyConnection]:
    """Threads of one process (functions-framework serves requests on several) share one
    connection to the file, each through its own cursor, and the last one out closes it so
    that other processes get their turn. Each thread connecting and closing on its own, while
    another process held the lock now and then, made DuckDB fail with "Unique file handle
    conflict … already attached" and "python_arrow_scan does not exist"
    (tests/test_logger_concurrency.py::test_a_busy_logger_process_logs_no_traceback)."""
    key = path.resolve()
    with _OPEN_LOCK:
        shared = _OPEN.setdefault(key, _Open())
    with shared.lock:
        if shared.connection is None:
            shared.connection = _open(path, lock_wait_s)
        shared.users += 1
        connection = shared.connection
    try:
        yield connection
    finally:
        with shared.lock:
            shared.users -= 1
            if not shared.users:
                shared.connection = None
                connection.close()


def _open(path: Path, lock_wait_s: float) -> duckdb.DuckDBPyConnection:
    """Waits its turn while another process holds the file."""
    deadline = time.monotonic() + lock_wait_s
    while True:
        try:
            return duckdb.connect(str(path))
        except (duckdb.IOException, duckdb.ResourceInUseException) as err:
            if not _transient(err):
                raise
            if time.monotonic() > deadline:
                raise WarehouseBusy(
                    f"{path} is locked by another process (waited {lock_wait_s:.0f}s)"
                ) from None
            time.sleep(0.05)


class DuckDBWarehouse(ClaimsWithStatistics):
    sql = SQL

    def __init__(
        self, path: str | Path, lock_wait_s: float = LOCK_WAIT_S, feedback_window_days: float = 0
    ):
        self.path = Path(path)
        self.lock_wait_s = lock_wait_s
        self.feedback_window_days = feedback_window_days
        self._tables_created = False  # by this object, in the file that is there now

    @contextlib.contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor of this process's one open connection to the file (`_shared`). The tables
        are created once per object and file, not on every connection: 8 `CREATE TABLE IF NOT
        EXISTS` cost ~25 ms on a busy machine, once per Logger batch (a file removed since is
        noticed and its tables made again:
        tests/test_warehouse.py::test_a_removed_warehouse_file_gets_its_tables_again)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        create = not (self._tables_created and self.path.exists())
        with _shared(self.path, self.lock_wait_s) as connection:
            cursor = connection.cursor()
            try:
                cursor.execute("SET TimeZone = 'UTC'")
                if create:
                    with _DDL_LOCK:  # threads of one process share the database: one at a time
                        for table in TABLES:  # a file from before a column was added gets it
                            for statement in [duckdb_ddl(table), *duckdb_migrations(table)]:
                                cursor.execute(statement)
                            if not table.primary_key:  # and one from before a key was dropped
                                _drop_primary_key(cursor, table)
                    self._tables_created = True
                yield cursor
            except duckdb.TransactionException as err:  # a concurrent write won: try again later
                raise WarehouseBusy(f"{self.path}: conflicting concurrent write ({err})") from None
            finally:
                cursor.close()

    def ensure_tables(self) -> None:
        with self._connect():
            pass

    @staticmethod
    def _insert(
        db: duckdb.DuckDBPyConnection, table: TableSchema, columns: dict[str, list]
    ) -> None:
        """One Arrow batch, one INSERT … SELECT: rows/s in the tens of thousands, where a
        row-by-row insert managed hundreds (benchmarks/quick.py). `columns`: the table's
        columns but ingested_at, which is left to the warehouse's clock (its DEFAULT)."""
        import pyarrow as pa

        names = list(columns)
        batch = pa.Table.from_pydict(columns, schema=arrow_schema(table, names))
        if not batch.num_rows:
            return
        listed = ", ".join(names)
        db.register("batch", batch)
        # A key stored already, or twice in this batch, is stored once.
        db.execute(f"INSERT OR IGNORE INTO {table.name} ({listed}) SELECT {listed} FROM batch")
        db.unregister("batch")

    def insert_logs(self, batch: LogBatch) -> None:
        """A Logger batch: both tables in one connection and one transaction, so the batch
        is stored whole or not at all (opening the file costs tens of ms on a busy machine:
        once per batch, not once per table)."""
        if not batch.prediction_rows and not batch.feedback_rows:
            return
        with self._connect() as db:
            db.begin()
            self._insert(db, PREDICTIONS, batch.predictions)
            self._insert(db, FEEDBACK, batch.feedback)
            db.commit()

    def insert_predictions(self, rows: Sequence[PredictionRecord]) -> None:
        self.insert_logs(LogBatch.of(predictions=rows))

    def insert_feedback(self, rows: Sequence[FeedbackRecord]) -> None:
        self.insert_logs(LogBatch.of(feedback=rows))

    def count_untrained(self, rank_k: int, num_actions: int, policy_kind: str = GLOBAL) -> int:
        with self._connect() as db:
            row = db.execute(
                ledger.count_untrained(SQL, policy_kind),
                {
                    "rank_k": rank_k,
                    "num_actions": num_actions,
                    "since": since(self.feedback_window_days),
                },
            ).fetchone()
        return int(row[0]) if row else 0

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
        """The claim's statements in one transaction with the check that the run has not
        claimed (a second claim of the run at the same time fails on run_claims' key), then
        the sums over the claim's temporary table."""
        claim = ledger.claim(SQL, policy_kind, rank_k)
        params = {
            "run_id": run_id,
            "rank_k": rank_k,
            "num_actions": num_actions,
            "max_rows": max_rows,
            "since": since(self.feedback_window_days),
            **(extra or {}),
        }
        rows: list[tuple] | None = None
        with self._connect() as db:
            db.begin()
            if _one(db, ledger.claimed_before(SQL), params):
                db.rollback()
            else:
                try:
                    for statement in (claim.guard, claim.materialise, claim.quarantine):
                        db.execute(statement, _bound(statement, params))
                    if _one(db, f"SELECT {claim.over_limit}", params):
                        db.execute(claim.cut, _bound(claim.cut, params))
                    db.execute(claim.claim, _bound(claim.claim, params))
                    db.commit()
                except duckdb.ConstraintException as err:  # a concurrent claim wrote first
                    db.rollback()
                    raise WarehouseBusy(f"run {run_id}: a concurrent claim won ({err})") from None
                rows = db.execute(sums, _bound(sums, params)).fetchall() if sums else []
                db.execute(f"DROP TABLE {ledger.CLAIMABLE}")
            counted = {"run_id": run_id, "since": self._since_run(db, run_id)}
            claimed = _one(db, ledger.claimed_count(SQL), counted)
        return int(claimed), rows

    def iter_claimed(self, run_id: str, page_size: int = 1000) -> Iterator[list[TrainingExample]]:
        with self._connect() as db:
            params = {"run_id": run_id, "since": self._since_run(db, run_id)}
            cursor = db.execute(ledger.claimed(SQL), params)
            while page := cursor.fetchmany(page_size):
                yield [TrainingExample(*row) for row in page]

    def claimed_statistics(
        self,
        run_id: str,
        rank_k: int,
        num_actions: int,
        holdout_every: int = 0,
        corrupt_rewards: bool = False,
    ) -> LinearState:
        sql = linear_statistics.statistics(SQL, rank_k, holdout_every, corrupt_rewards)
        return linear_statistics.to_state(self._claimed_sums(sql, run_id), rank_k, num_actions)

    def claimed_per_arm_statistics(
        self,
        run_id: str,
        arm_features: np.ndarray,
        holdout_every: int = 0,
        corrupt_rewards: bool = False,
    ) -> LinearState:
        rank_k = arm_features.shape[1]
        sql = linear_statistics.per_arm_statistics(SQL, rank_k, holdout_every, corrupt_rewards)
        values = linear_statistics.arm_parameters(arm_features)
        return linear_statistics.to_state(self._claimed_sums(sql, run_id, values), 2 * rank_k, 1)

    def _claimed_sums(
        self, sql: str, run_id: str, extra: dict[str, Any] | None = None
    ) -> list[tuple]:
        with self._connect() as db:
            params = {"run_id": run_id, "since": self._since_run(db, run_id), **(extra or {})}
            return db.execute(sql, params).fetchall()

    def _since_run(self, db: duckdb.DuckDBPyConnection, run_id: str) -> datetime:
        """The partition filter of a run's reads: one window before it claimed."""
        if self.feedback_window_days <= 0:
            return EARLIEST
        row = db.execute(ledger.run_started(SQL), {"run_id": run_id}).fetchone()
        return since(self.feedback_window_days, row[0] if row and row[0] else None)

    def _runs(self, where: str, params: dict[str, Any]) -> list[TrainingRunRecord]:
        with self._connect() as db:
            rows = db.execute(ledger.runs(SQL, where), params).fetchall()
        return [TrainingRunRecord(*row) for row in rows]

    def find_run(self, run_id: str) -> TrainingRunRecord | None:
        found = self._runs("run_id = $run_id", {"run_id": run_id})
        return found[0] if found else None

    def latest_run(self) -> TrainingRunRecord | None:
        found = self._runs("TRUE", {})
        return found[0] if found else None

    def commit(self, run: TrainingRunRecord) -> bool:
        params = {c: getattr(run, c) for c in ledger.TRAINING_RUNS.column_names if c != "time"}
        with self._connect() as db:
            db.begin()
            committed, latest, overlap = db.execute(
                ledger.commit_state(SQL), {"run_id": run.run_id}
            ).fetchone() or (0, None, 0)
            if committed:
                db.rollback()
                return False
            if problem := conflict_message(run, latest, overlap):
                db.rollback()
                raise LedgerConflict(problem)
            bootstrap, move = ledger.head_statements(SQL)
            try:  # a concurrent commit makes DuckDB refuse the second write of the head row
                db.execute(bootstrap)
                moved = db.execute(move, _bound(move, params)).fetchone()
                if not moved or moved[0] != 1:
                    raise LedgerConflict(concurrent_commit_message(run))
                for statement in ledger.commit_statements(SQL):
                    db.execute(statement, _bound(statement, params))
                db.commit()
            except (duckdb.TransactionException, duckdb.ConstraintException):
                with contextlib.suppress(duckdb.TransactionException):  # aborted already
                    db.rollback()
                raise LedgerConflict(concurrent_commit_message(run)) from None
            except LedgerConflict:
                db.rollback()
                raise
        return True

    def record_promotion(self, row: PromotionRecord) -> None:
        with self._connect() as db:
            self._insert(db, PROMOTIONS, {f: [getattr(row, f)] for f in PROMOTIONS.column_names})

    def promotions(self) -> list[PromotionRecord]:
        with self._connect() as db:
            rows = db.execute(
                f"SELECT {', '.join(PROMOTIONS.column_names)} FROM promotions ORDER BY time"
            ).fetchall()
        return [PromotionRecord(*row) for row in rows]

    def rewards_by_version(self, since: datetime) -> list[RewardStats]:
        with self._connect() as db:
            rows = db.execute(canary.rewards_by_version_sql(SQL), {"since": since}).fetchall()
        return [RewardStats(str(v), int(n), float(m), float(var)) for v, n, m, var in rows]

    def query(self, sql: str) -> list[tuple]:
        """Ad-hoc reads (the demo's report, the chaos scenarios' accounting)."""
        with self._connect() as db:
            return db.execute(sql).fetchall()


def _drop_primary_key(db: duckdb.DuckDBPyConnection, table: TableSchema) -> None:
    if _one(db, duckdb_has_primary_key(table), {}):
        db.begin()
        for statement in duckdb_drop_primary_key(table):
            db.execute(statement)
        db.commit()


def _one(db: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> Any:
    """The one value a scalar query returns."""
    row = db.execute(sql, _bound(sql, params)).fetchone()
    return row[0] if row else None


def _bound(sql: str, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters a statement names (DuckDB rejects unused ones)."""
    return {name: value for name, value in params.items() if f"${name}" in sql}
