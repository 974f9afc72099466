"""The cloud warehouse: the BigQuery tables infra creates from app/schemas.py."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from app.schemas import FEEDBACK, PREDICTIONS, TABLES, TRAINING_RUNS, TableSchema
from app.warehouse.base import EPOCH
from app.warehouse.records import (
    FeedbackRecord,
    PredictionRecord,
    TrainingExample,
    TrainingRunRecord,
    examples_query,
)


class MissingTables(RuntimeError):
    """The dataset or a table infra should have created does not exist."""


class BigQueryWarehouse:
    def __init__(self, project: str, dataset: str, location: str, client: Any = None):
        from google.cloud import bigquery

        self.project, self.dataset, self.location = project, dataset, location
        self.client = client or bigquery.Client(project=project, location=location)

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

    def _insert(self, schema: TableSchema, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        # insertId = the row's key: BigQuery drops redelivered rows (best effort), and the
        # examples query deduplicates exactly.
        row_ids = [":".join(str(r[k]) for k in schema.key) for r in rows]
        errors = self.client.insert_rows_json(self.table_id(schema), list(rows), row_ids=row_ids)
        if errors:
            raise RuntimeError(f"BigQuery rejected rows for {schema.name}: {errors}")

    def insert_predictions(self, rows: Sequence[PredictionRecord]) -> None:
        self._insert(PREDICTIONS, [_json(r) for r in rows])

    def insert_feedback(self, rows: Sequence[FeedbackRecord]) -> None:
        self._insert(FEEDBACK, [_json(r) for r in rows])

    def record_training_run(self, run: TrainingRunRecord) -> None:
        self._insert(TRAINING_RUNS, [_json(run)])

    def _query(self, sql: str, params: dict[str, Any]) -> Any:
        from google.cloud import bigquery

        types = {datetime: "TIMESTAMP", int: "INT64"}
        config = bigquery.QueryJobConfig(
            query_parameters=[
                bigquery.ScalarQueryParameter(name, types[type(value)], value)
                for name, value in params.items()
            ]
        )
        return self.client.query(sql, job_config=config, location=self.location)

    def latest_watermark(self) -> datetime:
        rows = list(
            self._query(f"SELECT max(watermark) FROM `{self.table_id(TRAINING_RUNS)}`", {}).result()
        )
        return rows[0][0] if rows and rows[0][0] is not None else EPOCH

    def _examples_sql(self) -> str:
        return examples_query(
            f"`{self.table_id(PREDICTIONS)}`", f"`{self.table_id(FEEDBACK)}`", lambda n: f"@{n}"
        )

    def count_examples(self, since: datetime) -> int:
        sql = f"SELECT count(*) FROM ({self._examples_sql()})"
        rows = list(self._query(sql, {"watermark": since, "max_rows": 2**62}).result())
        return int(rows[0][0])

    def iter_examples(
        self, since: datetime, max_rows: int, page_size: int = 1000
    ) -> Iterator[list[TrainingExample]]:
        job = self._query(self._examples_sql(), {"watermark": since, "max_rows": max_rows})
        for page in job.result(page_size=page_size).pages:
            yield [
                TrainingExample(
                    list(row["observation"]),
                    row["action"],
                    row["reward"],
                    row["propensity"],
                    row["feedback_time"],
                )
                for row in page
            ]


def _json(record: Any) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(record).items()}
