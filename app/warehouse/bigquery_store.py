"""The cloud warehouse: the BigQuery tables infra creates from app/schemas.py.

Rows arrive through the Storage Write API's default stream (app/warehouse/bigquery_write.py:
at-least-once, so a retried append may store a row twice); every ledger query deduplicates
by key, and the ledger's own writes are DML (claim: one INSERT … SELECT; commit: one
multi-statement transaction that asserts what DuckDB checks), with the same SQL text as
DuckDB's (app/warehouse/ledger.py). The requests are asserted on the wire in
tests/test_bigquery_requests.py.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

import numpy as np

from app.evaluation import canary
from app.evaluation.canary import RewardStats
from app.linear import LinearState
from app.schemas import FEEDBACK, GLOBAL, PREDICTIONS, PROMOTIONS, TABLES, TableSchema
from app.warehouse import bigquery_write, ledger, linear_statistics
from app.warehouse.base import (
    EARLIEST,
    ClaimsWithStatistics,
    LedgerConflict,
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

# The ASSERT after the head's compare-and-swap, and BigQuery's error for a transaction
# cancelled by a concurrent one ("Transaction is aborted due to concurrent update against
# table …"): both mean another run committed at the same time.
HEAD_MOVED = "the ledger head moved: another run committed at the same time"
CONCURRENT_UPDATE = "concurrent update"
_TYPES = {bool: "BOOL", int: "INT64", float: "FLOAT64", str: "STRING", datetime: "TIMESTAMP"}


def _parameter(name: str, value: Any) -> Any:
    """A query parameter: a scalar, NULL (as STRING) or a list of floats (ARRAY<FLOAT64>)."""
    from google.cloud import bigquery

    if isinstance(value, list):
        return bigquery.ArrayQueryParameter(name, "FLOAT64", value)
    if value is None:
        return bigquery.ScalarQueryParameter(name, "STRING", None)
    return bigquery.ScalarQueryParameter(name, _TYPES[type(value)], value)


class MissingTables(RuntimeError):
    """The dataset or a table infra should have created does not exist."""


class BigQueryWarehouse(ClaimsWithStatistics):
    def __init__(
        self,
        project: str,
        dataset: str,
        location: str,
        client: Any = None,
        feedback_window_days: float = 0,
        write_api_emulator_host: str | None = None,
    ):
        from google.cloud import bigquery

        self.project, self.dataset, self.location = project, dataset, location
        self.feedback_window_days = feedback_window_days
        self.client = client or bigquery.Client(project=project, location=location)
        self.write_api_emulator_host = write_api_emulator_host
        self._write_client: Any = None  # made on the first write: readers never need one
        self.sql = ledger.bigquery(project, dataset)

    def table_id(self, table: TableSchema) -> str:
        return f"{self.project}.{self.dataset}.{table.name}"

    def ensure_tables(self) -> None:
        """Checks that the dataset and every table exist. Infra creates them (from the same
        schemas); the pipelines account may not create datasets, so this never tries
        (tests/test_warehouse.py::test_cloud_generator_creates_no_dataset_or_table)."""
        from google.api_core.exceptions import NotFound

        missing = []
        for name in [self.dataset, *(self.table_id(s).split(".", 1)[1] for s in TABLES)]:
            try:
                if "." in name:
                    self.client.get_table(f"{self.project}.{name}")
                else:
                    self.client.get_dataset(f"{self.project}.{name}")
            except NotFound:
                missing.append(f"{self.project}.{name}")
                if "." not in name:
                    break  # no dataset, no tables
        if missing:
            raise MissingTables(
                f"BigQuery has no {', '.join(missing)}: the environment's data stack creates "
                "them: deploy <env>-data first (docs/operations.md)"
            )

    def _append(self, schema: TableSchema, columns: dict[str, list[Any]]) -> None:
        """One AppendRows of the rows (column by column) to the table's default stream."""
        if self._write_client is None:
            self._write_client = bigquery_write.client(self.write_api_emulator_host)
        stream = bigquery_write.stream_name(self.project, self.dataset, schema)
        bigquery_write.append(self._write_client, stream, schema, columns)

    def insert_predictions(self, rows: Sequence[PredictionRecord]) -> None:
        self.insert_logs(LogBatch.of(predictions=rows))

    def insert_feedback(self, rows: Sequence[FeedbackRecord]) -> None:
        self.insert_logs(LogBatch.of(feedback=rows))

    def insert_logs(self, batch: LogBatch) -> None:
        """Predictions first, then feedback, each one append. If the feedback append fails
        after the predictions' succeeded, the redelivered batch appends the predictions
        again: the ledger reads each key once (tests/test_bigquery_write.py::
        test_a_redelivered_batch_after_a_failed_feedback_append_counts_each_example_once)."""
        self._append(PREDICTIONS, batch.predictions)
        self._append(FEEDBACK, batch.feedback)

    def _query(self, sql: str, params: dict[str, Any], dry_run: bool = False) -> Any:
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(
            query_parameters=[
                _parameter(name, value) for name, value in params.items() if f"@{name}" in sql
            ],
            # A dry run only plans the query: BigQuery bills nothing and reports the bytes
            # it would process (a cached result would report 0, so the cache is off).
            **({"dry_run": True, "use_query_cache": False} if dry_run else {}),
        )
        return self.client.query(sql, job_config=config, location=self.location)

    def retraining_bytes(self, rank_k: int, num_actions: int) -> dict[str, int]:
        """Bytes BigQuery would process for each scan of the logged tables by the next
        re-training (dry runs: free, nothing runs): the Trigger's count and the claim's one
        read of the untrained rows (the quarantine, the claim and the statistics then read
        the claim's temporary table), over the feedback window of partitions.
        docs/scaling.md models the same from row sizes; this asks BigQuery.
        tests/test_bigquery_requests.py::test_retraining_bytes_are_dry_runs_of_the_runs_queries"""
        params = {
            "rank_k": rank_k,
            "num_actions": num_actions,
            "since": since(self.feedback_window_days),
        }
        queries = {
            "count": ledger.count_untrained(self.sql, GLOBAL),
            "claim": ledger.claimable(self.sql, GLOBAL, rank_k),
        }
        return {
            name: int(self._query(sql, params, dry_run=True).total_bytes_processed or 0)
            for name, sql in queries.items()
        }

    def _rows(self, sql: str, params: dict[str, Any]) -> list[Any]:
        return list(self._query(sql, params).result())

    def count_untrained(self, rank_k: int, num_actions: int, policy_kind: str = GLOBAL) -> int:
        sql = ledger.count_untrained(self.sql, policy_kind)
        window = since(self.feedback_window_days)
        rows = self._rows(sql, {"rank_k": rank_k, "num_actions": num_actions, "since": window})
        return int(rows[0][0])

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
        """A first claim is one script: its transaction, then the `sums` over the claim's
        temporary table (the script's result: its last statement's rows)."""
        claim = ledger.claim(self.sql, policy_kind, rank_k)
        params = {
            "run_id": run_id,
            "rank_k": rank_k,
            "num_actions": num_actions,
            "max_rows": max_rows,
            "since": since(self.feedback_window_days),
            **(extra or {}),
        }
        rows: list[tuple] | None = None
        if not self._rows(ledger.claimed_before(self.sql), params)[0][0]:
            rows = [tuple(r.values()) for r in self._rows(claim.script(sums), params)]
        counted = {"run_id": run_id, "since": self._since_run(run_id)}
        return int(self._rows(ledger.claimed_count(self.sql), counted)[0][0]), rows

    def iter_claimed(self, run_id: str, page_size: int = 1000) -> Iterator[list[TrainingExample]]:
        params = {"run_id": run_id, "since": self._since_run(run_id)}
        job = self._query(ledger.claimed(self.sql), params)
        for page in job.result(page_size=page_size).pages:
            yield [
                TrainingExample(
                    row["request_id"],
                    row["instance_index"],
                    list(row["observation"]),
                    row["action"],
                    row["reward"],
                    row["propensity"],
                )
                for row in page
            ]

    def claimed_statistics(
        self,
        run_id: str,
        rank_k: int,
        num_actions: int,
        holdout_every: int = 0,
        corrupt_rewards: bool = False,
    ) -> LinearState:
        sql = linear_statistics.statistics(self.sql, rank_k, holdout_every, corrupt_rewards)
        return linear_statistics.to_state(self._claimed_sums(sql, run_id), rank_k, num_actions)

    def claimed_per_arm_statistics(
        self,
        run_id: str,
        arm_features: np.ndarray,
        holdout_every: int = 0,
        corrupt_rewards: bool = False,
    ) -> LinearState:
        rank_k = arm_features.shape[1]
        sql = linear_statistics.per_arm_statistics(self.sql, rank_k, holdout_every, corrupt_rewards)
        values = linear_statistics.arm_parameters(arm_features)
        return linear_statistics.to_state(self._claimed_sums(sql, run_id, values), 2 * rank_k, 1)

    def _claimed_sums(
        self, sql: str, run_id: str, extra: dict[str, Any] | None = None
    ) -> list[tuple]:
        params = {"run_id": run_id, "since": self._since_run(run_id), **(extra or {})}
        return [tuple(r.values()) for r in self._rows(sql, params)]

    def _since_run(self, run_id: str) -> datetime:
        """The partition filter of a run's reads: one window before it claimed (a query
        parameter, never a subquery: BigQuery prunes partitions only on constant filters)."""
        if self.feedback_window_days <= 0:
            return EARLIEST
        started = self._rows(ledger.run_started(self.sql), {"run_id": run_id})[0][0]
        return since(self.feedback_window_days, started)

    def _runs(self, where: str, params: dict[str, Any]) -> list[TrainingRunRecord]:
        rows = self._rows(ledger.runs(self.sql, where), params)
        return [
            TrainingRunRecord(*(row[c] for c in ledger.TRAINING_RUNS.column_names)) for row in rows
        ]

    def find_run(self, run_id: str) -> TrainingRunRecord | None:
        found = self._runs("run_id = @run_id", {"run_id": run_id})
        return found[0] if found else None

    def latest_run(self) -> TrainingRunRecord | None:
        found = self._runs("TRUE", {})
        return found[0] if found else None

    def commit(self, run: TrainingRunRecord) -> bool:
        """Checks, then commits in one transaction whose ASSERTs repeat the checks (an ASSERT
        that fails rolls the whole transaction back). The transaction moves the ledger head
        from the parent to the run (an UPDATE that must change one row): BigQuery cancels one
        of two concurrent transactions that UPDATE one table, where concurrent INSERTs never
        conflict (https://cloud.google.com/bigquery/docs/transactions); either way the loser
        fails with LedgerConflict (tests/test_bigquery_requests.py)."""
        from google.api_core.exceptions import GoogleAPICallError

        state = self._rows(ledger.commit_state(self.sql), {"run_id": run.run_id})[0]
        if state["committed"]:
            return False
        if problem := conflict_message(run, state["latest"], state["overlap"]):
            raise LedgerConflict(problem)
        checks = ledger.commit_checks(self.sql)
        script = ";\n".join(
            [
                "BEGIN TRANSACTION",
                f"ASSERT ({checks['committed']}) = 0 AS 'run {run.run_id} committed already'",
                *ledger.head_statements(self.sql),
                f"ASSERT @@row_count = 1 AS '{HEAD_MOVED}'",
                f"ASSERT ({checks['overlap']}) = 0 "
                f"AS 'examples of run {run.run_id} were trained by another run'",
                *ledger.commit_statements(self.sql),
                "COMMIT TRANSACTION",
            ]
        )
        params = {c: getattr(run, c) for c in ledger.TRAINING_RUNS.column_names if c != "time"}
        try:
            self._query(script + ";", params).result()
        except GoogleAPICallError as err:
            if HEAD_MOVED in str(err) or CONCURRENT_UPDATE in str(err):
                raise LedgerConflict(concurrent_commit_message(run)) from None
            raise
        return True

    def record_promotion(self, row: PromotionRecord) -> None:
        self._append(PROMOTIONS, {name: [value] for name, value in asdict(row).items()})

    def promotions(self) -> list[PromotionRecord]:
        """Deduplicated by key (the default stream may repeat an append), oldest first."""
        cols = ", ".join(PROMOTIONS.column_names)
        sql = (
            f"SELECT {cols} FROM `{self.table_id(PROMOTIONS)}` WHERE TRUE QUALIFY ROW_NUMBER() "
            f"OVER (PARTITION BY {', '.join(PROMOTIONS.key)} ORDER BY time) = 1 ORDER BY time"
        )
        rows = self._rows(sql, {})
        return [PromotionRecord(*(row[c] for c in PROMOTIONS.column_names)) for row in rows]

    def rewards_by_version(self, since: datetime) -> list[RewardStats]:
        rows = self._rows(canary.rewards_by_version_sql(self.sql), {"since": since})
        return [
            RewardStats(r["policy_version"], int(r["n"]), float(r["mean"]), float(r["variance"]))
            for r in rows
        ]
