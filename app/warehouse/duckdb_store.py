"""The local warehouse: one DuckDB file under the state directory.

Several local processes (the functions, the pipeline steps, the demo) share the file, and
DuckDB lets one process hold it at a time, so every operation opens, works and closes, and
waits its turn when another process holds the lock.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import astuple
from datetime import datetime
from pathlib import Path

import duckdb

from app.schemas import FEEDBACK, PREDICTIONS, TABLES, TRAINING_RUNS, TableSchema, duckdb_ddl
from app.warehouse.base import EPOCH
from app.warehouse.records import (
    FeedbackRecord,
    PredictionRecord,
    TrainingExample,
    TrainingRunRecord,
    examples_query,
)

LOCK_WAIT_S = 30.0


class DuckDBWarehouse:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                connection = duckdb.connect(str(self.path))
                break
            except duckdb.IOException as err:
                if "lock" not in str(err).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        try:
            connection.execute("SET TimeZone = 'UTC'")
            yield connection
        finally:
            connection.close()

    def ensure_tables(self) -> None:
        with self._connect() as db:
            for table in TABLES:
                db.execute(duckdb_ddl(table))

    def _insert(self, table: TableSchema, rows: Sequence[tuple]) -> None:
        if not rows:
            return
        columns = ", ".join(table.column_names)
        marks = ", ".join("?" for _ in table.columns)
        with self._connect() as db:
            db.execute(duckdb_ddl(table))
            db.executemany(f"INSERT OR IGNORE INTO {table.name} ({columns}) VALUES ({marks})", rows)

    def insert_predictions(self, rows: Sequence[PredictionRecord]) -> None:
        self._insert(PREDICTIONS, [astuple(r) for r in rows])

    def insert_feedback(self, rows: Sequence[FeedbackRecord]) -> None:
        self._insert(FEEDBACK, [astuple(r) for r in rows])

    def record_training_run(self, run: TrainingRunRecord) -> None:
        self._insert(TRAINING_RUNS, [astuple(run)])

    def latest_watermark(self) -> datetime:
        with self._connect() as db:
            db.execute(duckdb_ddl(TRAINING_RUNS))
            row = db.execute(f"SELECT max(watermark) FROM {TRAINING_RUNS.name}").fetchone()
        return row[0] if row and row[0] is not None else EPOCH

    def count_examples(self, since: datetime) -> int:
        sql = f"SELECT count(*) FROM ({examples_query('predictions', 'feedback', _param)})"
        with self._connect() as db:
            self._create_all(db)
            row = db.execute(sql, {"watermark": since, "max_rows": 2**62}).fetchone()
        return int(row[0]) if row else 0

    def iter_examples(
        self, since: datetime, max_rows: int, page_size: int = 1000
    ) -> Iterator[list[TrainingExample]]:
        sql = examples_query(PREDICTIONS.name, FEEDBACK.name, _param)
        with self._connect() as db:
            self._create_all(db)
            cursor = db.execute(sql, {"watermark": since, "max_rows": max_rows})
            while page := cursor.fetchmany(page_size):
                yield [TrainingExample(*row) for row in page]

    def query(self, sql: str) -> list[tuple]:
        """Ad-hoc reads (the demo's report)."""
        with self._connect() as db:
            self._create_all(db)
            return db.execute(sql).fetchall()

    @staticmethod
    def _create_all(db: duckdb.DuckDBPyConnection) -> None:
        for table in TABLES:
            db.execute(duckdb_ddl(table))


def _param(name: str) -> str:
    return f"${name}"
