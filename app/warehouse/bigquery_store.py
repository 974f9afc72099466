"""The cloud warehouse: BigQuery tables created from the same schema declarations."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from app.schemas import FEEDBACK, PREDICTIONS, TABLES, TRAINING_RUNS, TableSchema, bigquery_fields
from app.warehouse.base import EPOCH
from app.warehouse.records import (
    FeedbackRecord,
    PredictionRecord,
    TrainingExample,
    TrainingRunRecord,
    examples_query,
)


class BigQueryWarehouse:
    def __init__(self, project: str, dataset: str, location: str, client: Any = None):
        from google.cloud import bigquery

        self.project, self.dataset, self.location = project, dataset, location
        self.client = client or bigquery.Client(project=project, location=location)

    def table_id(self, table: TableSchema) -> str:
        return f"{self.project}.{self.dataset}.{table.name}"

    def ensure_tables(self) -> None:
        """Creates what infra has not (infra declares the same tables; this is for new datasets)."""
        from google.cloud import bigquery

        dataset = bigquery.Dataset(f"{self.project}.{self.dataset}")
        dataset.location = self.location
        self.client.create_dataset(dataset, exists_ok=True)
        for schema in TABLES:
            table = bigquery.Table(
                self.table_id(schema),
                schema=[bigquery.SchemaField.from_api_repr(f) for f in bigquery_fields(schema)],
            )
            if schema.partition_by:
                table.time_partitioning = bigquery.TimePartitioning(
                    type_=bigquery.TimePartitioningType.DAY, field=schema.partition_by
                )
            if schema.cluster_by:
                table.clustering_fields = list(schema.cluster_by)
            self.client.create_table(table, exists_ok=True)

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
