"""The closed loop's tables, declared once.

DuckDB DDL, BigQuery schemas and the cdktf table definitions are all generated from these
declarations, so a column can only ever be added in one place.

One row per interaction: `predictions` are written when a policy serves, `feedback` when a
reward arrives (possibly much later), and training examples are their join on
(request_id, instance_index).
"""

from __future__ import annotations

from dataclasses import dataclass

STRING, INT64, FLOAT64, TIMESTAMP = "STRING", "INT64", "FLOAT64", "TIMESTAMP"
REQUIRED, NULLABLE, REPEATED = "REQUIRED", "NULLABLE", "REPEATED"


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    mode: str = REQUIRED
    description: str = ""


@dataclass(frozen=True)
class TableSchema:
    name: str
    columns: tuple[Column, ...]
    description: str
    key: tuple[str, ...] = ()
    partition_by: str | None = None  # a TIMESTAMP column, partitioned by day
    cluster_by: tuple[str, ...] = ()

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


PREDICTIONS = TableSchema(
    name="predictions",
    description="One row per served prediction (one instance of one request).",
    columns=(
        Column("request_id", STRING, description="Id of the prediction request"),
        Column("instance_index", INT64, description="Position of the instance in the request"),
        Column("time", TIMESTAMP, description="When the prediction was served"),
        Column("policy_version", STRING, description="Version label of the serving policy"),
        Column("observation", FLOAT64, REPEATED, "The context: the user's rank-k vector"),
        Column("action", INT64, description="The chosen arm"),
        Column(
            "propensity",
            FLOAT64,
            NULLABLE,
            "Probability the serving policy gave the action, if known",
        ),
        Column("candidates", INT64, REPEATED, "Per-arm policies: the candidate movie ids"),
    ),
    key=("request_id", "instance_index"),
    partition_by="time",
    cluster_by=("policy_version",),
)

FEEDBACK = TableSchema(
    name="feedback",
    description="One row per reward received for a served prediction.",
    columns=(
        Column("request_id", STRING),
        Column("instance_index", INT64),
        Column("time", TIMESTAMP, description="When the reward was received"),
        Column("reward", FLOAT64),
        Column("source", STRING, description="Who sent the reward (e.g. simulator)"),
    ),
    key=("request_id", "instance_index"),
    partition_by="time",
)

TRAINING_RUNS = TableSchema(
    name="training_runs",
    description="What each policy version was trained on.",
    columns=(
        Column("policy_version", STRING),
        Column("time", TIMESTAMP, description="When training finished"),
        Column("watermark", TIMESTAMP, NULLABLE, "Feedback time of the newest example used"),
        Column("examples", INT64, description="Training examples used"),
        Column("policy_uri", STRING, description="Where the policy was saved"),
    ),
    key=("policy_version",),
    partition_by="time",
)

TABLES = (PREDICTIONS, FEEDBACK, TRAINING_RUNS)

_DUCKDB_TYPES = {STRING: "VARCHAR", INT64: "BIGINT", FLOAT64: "DOUBLE", TIMESTAMP: "TIMESTAMPTZ"}


def duckdb_ddl(table: TableSchema) -> str:
    columns = []
    for c in table.columns:
        sql_type = _DUCKDB_TYPES[c.type] + ("[]" if c.mode == REPEATED else "")
        not_null = " NOT NULL" if c.mode == REQUIRED else ""
        columns.append(f"{c.name} {sql_type}{not_null}")
    if table.key:
        columns.append(f"PRIMARY KEY ({', '.join(table.key)})")
    return f"CREATE TABLE IF NOT EXISTS {table.name} ({', '.join(columns)})"


def bigquery_fields(table: TableSchema) -> list[dict[str, str]]:
    """The schema as BigQuery's JSON form (the REST API, `bq`, and Terraform all take it)."""
    return [
        {"name": c.name, "type": c.type, "mode": c.mode, "description": c.description}
        for c in table.columns
    ]
