"""The closed loop's tables, declared once.

DuckDB DDL, BigQuery schemas and the cdktf table definitions are all generated from these
declarations, so a column can only ever be added in one place.

One row per interaction: `predictions` are written when a policy serves, `feedback` when a
reward arrives (possibly much later), and training examples are their join on
(request_id, instance_index). The training-set ledger (docs/reliability.md) adds four
tables: `run_claims` (one row per run that claimed), `run_examples` (what a run claimed,
staged), `trained_examples` (what committed runs trained on: each interaction at most once)
and `quarantine` (rows that cannot be trained on, with the reason).
"""

from __future__ import annotations

from dataclasses import dataclass

STRING, INT64, FLOAT64, TIMESTAMP = "STRING", "INT64", "FLOAT64", "TIMESTAMP"
CURRENT_TIMESTAMP = "CURRENT_TIMESTAMP"
REQUIRED, NULLABLE, REPEATED = "REQUIRED", "NULLABLE", "REPEATED"

# Which kind of policy served a prediction (predictions.policy_kind): a global-feature policy
# (action = arm), a per-arm policy or a slate (actor-critic) policy (action = catalogue index).
# Each trains only on its own kind's rows (app/warehouse/ledger.py::of_kind).
GLOBAL, PER_ARM, SLATE = "global", "per_arm", "slate"
POLICY_KINDS = (GLOBAL, PER_ARM, SLATE)


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    mode: str = REQUIRED
    description: str = ""
    default: str | None = None  # a server-side default: CURRENT_TIMESTAMP
    # Added after the table was first created: NULLABLE and declared after every older
    # column, so an existing table gets it by ALTER TABLE (DuckDB: duckdb_migrations) or a
    # BigQuery schema update (docs/operations.md), and its old rows hold NULL.
    added: bool = False

    def __post_init__(self) -> None:
        if self.added and self.mode == REQUIRED:
            raise ValueError(f"column {self.name}: an added column cannot be REQUIRED")


@dataclass(frozen=True)
class TableSchema:
    name: str
    columns: tuple[Column, ...]
    description: str
    key: tuple[str, ...] = ()
    partition_by: str | None = None  # a TIMESTAMP column, partitioned by day
    cluster_by: tuple[str, ...] = ()
    # DuckDB enforces `key` with a PRIMARY KEY unless the rows are unique by construction
    # (run_examples): its index is what a bulk insert of a million keys pays for.
    primary_key: bool = True

    def __post_init__(self) -> None:
        added = [c.added for c in self.columns]
        if added != sorted(added):  # ALTER TABLE and BigQuery append: fresh = migrated order
            raise ValueError(f"table {self.name}: added columns must come after all others")

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
        Column(
            "action",
            INT64,
            description="The chosen arm (per-arm policies: the catalogue index of the movie "
            "served first)",
        ),
        Column(
            "propensity",
            FLOAT64,
            NULLABLE,
            "Probability the serving policy gave the action, if known",
        ),
        Column(
            "candidates",
            INT64,
            REPEATED,
            "Per-arm policies: the candidate movie ids asked about (empty: the whole catalogue)",
        ),
        Column(
            "ingested_at",
            TIMESTAMP,
            NULLABLE,
            "When the warehouse stored the row (server clock, never the sender's)",
            default=CURRENT_TIMESTAMP,
        ),
        Column(
            "policy_kind",
            STRING,
            NULLABLE,
            "Which kind of policy served: global, per_arm or slate (NULL: logged before the "
            "column existed, when only global policies served)",
            added=True,
        ),
        Column(
            "slate",
            INT64,
            REPEATED,
            "A top-k answer's movie ids, best first (the first is the action's movie; empty: "
            "one movie was served)",
            added=True,
        ),
    ),
    key=("request_id", "instance_index"),
    # by the warehouse's clock: the feedback window prunes on it (never the sender's `time`)
    partition_by="ingested_at",
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
        Column(
            "ingested_at",
            TIMESTAMP,
            NULLABLE,
            "When the warehouse stored the row (server clock, never the sender's)",
            default=CURRENT_TIMESTAMP,
        ),
    ),
    key=("request_id", "instance_index"),
    partition_by="ingested_at",
)

TRAINING_RUNS = TableSchema(
    name="training_runs",
    description="One row per committed training run: the policy it published (the commit point).",
    columns=(
        Column("run_id", STRING, description="Id of the pipeline run"),
        Column("policy_version", STRING),
        Column("parent_run_id", STRING, NULLABLE, "The committed run this one warm-started from"),
        Column("time", TIMESTAMP, description="When the run committed (server clock)"),
        Column("examples", INT64, description="Training examples used"),
        Column("rank_k", INT64, description="Observation length the policy was trained for"),
        Column("num_actions", INT64, description="Number of actions the policy chooses from"),
        Column("policy_uri", STRING, description="Where the published policy is kept"),
    ),
    key=("run_id",),
    partition_by="time",
)

RUN_CLAIMS = TableSchema(
    name="run_claims",
    description="One row per training run that claimed: a run claims once (the guard of "
    "run_examples, whose rows are unique by construction rather than by an index).",
    columns=(
        Column("run_id", STRING, description="Id of the pipeline run"),
        Column("claimed_at", TIMESTAMP, description="When the run claimed (server clock)"),
    ),
    key=("run_id",),
)

RUN_EXAMPLES = TableSchema(
    name="run_examples",
    description="Interactions a training run claimed; staged until the run commits.",
    columns=(
        Column("run_id", STRING),
        Column("request_id", STRING),
        Column("instance_index", INT64),
        Column("claimed_at", TIMESTAMP, description="When the run claimed it (server clock)"),
    ),
    key=("run_id", "request_id", "instance_index"),
    partition_by="claimed_at",
    # Unique without an index: a run claims once (run_claims' key: a second claim of the run
    # conflicts there), and one claim inserts each untrained key once (predictions' key).
    # The index cost DuckDB ~0.65 CPU s per million claimed keys, more than the insert (0.4);
    # trained_examples keeps its key, so a duplicate would still be refused at the commit.
    primary_key=False,
)

TRAINED_EXAMPLES = TableSchema(
    name="trained_examples",
    description="The ledger: each interaction a committed run trained on, and that run.",
    columns=(
        Column("request_id", STRING),
        Column("instance_index", INT64),
        Column("run_id", STRING),
        Column("trained_at", TIMESTAMP, description="When the run committed (server clock)"),
    ),
    key=("request_id", "instance_index"),
    partition_by="trained_at",
)

QUARANTINE = TableSchema(
    name="quarantine",
    description="Interactions that cannot be trained on, with the reason; never retried.",
    columns=(
        Column("request_id", STRING),
        Column("instance_index", INT64),
        Column("run_id", STRING, description="The run that found the row"),
        Column("reason", STRING),
        Column("quarantined_at", TIMESTAMP, description="Server clock"),
    ),
    key=("request_id", "instance_index"),
    partition_by="quarantined_at",
)

LEDGER_HEAD = TableSchema(
    name="ledger_head",
    description="One row: the run committed last. Every commit moves it from the run's parent "
    "to the run (compare-and-swap), so two concurrent commits conflict. Written only by DML.",
    columns=(
        Column("ledger", STRING, description="The row's name (one row)"),
        Column("run_id", STRING, NULLABLE, "The run committed last"),
        Column("moved_at", TIMESTAMP, description="When it moved (server clock)"),
    ),
    key=("ledger",),
)

PROMOTIONS = TableSchema(
    name="promotions",
    description="Every promotion decision on a candidate policy, with its numbers "
    "(docs/safe-promotion.md).",
    columns=(
        Column("run_id", STRING, description="The re-training run that made the candidate"),
        Column("stage", STRING, description="gate (off-policy, before serving) or canary"),
        Column("time", TIMESTAMP, description="When the decision was taken"),
        Column("candidate_version", STRING),
        Column("serving_version", STRING, description="What served when the decision was taken"),
        Column("decision", STRING, description="promoted, blocked or rolled_back"),
        Column("reason", STRING),
        Column("estimator", STRING, description="The estimate the decision was taken on"),
        Column("ips", FLOAT64, NULLABLE, "Candidate's value, inverse propensity scoring"),
        Column("snips", FLOAT64, NULLABLE, "Candidate's value, self-normalised IPS"),
        Column("dr", FLOAT64, NULLABLE, "Candidate's value, doubly robust"),
        Column("ci_low", FLOAT64, NULLABLE, "Candidate's value: interval, lower end"),
        Column("ci_high", FLOAT64, NULLABLE, "Candidate's value: interval, upper end"),
        Column("serving_value", FLOAT64, NULLABLE, "Serving policy's value, same estimator"),
        Column("difference", FLOAT64, NULLABLE, "Candidate − serving, same rows"),
        Column("difference_low", FLOAT64, NULLABLE, "One-sided lower bound of the difference"),
        Column("margin", FLOAT64, description="How much worse the candidate may be"),
        Column("confidence", FLOAT64),
        Column("rows", INT64, description="Interactions the decision was taken on"),
    ),
    key=("run_id", "stage"),
    partition_by="time",
)

TABLES = (
    PREDICTIONS,
    FEEDBACK,
    TRAINING_RUNS,
    RUN_CLAIMS,
    RUN_EXAMPLES,
    TRAINED_EXAMPLES,
    QUARANTINE,
    LEDGER_HEAD,
    PROMOTIONS,
)

_DUCKDB_TYPES = {STRING: "VARCHAR", INT64: "BIGINT", FLOAT64: "DOUBLE", TIMESTAMP: "TIMESTAMPTZ"}


def duckdb_ddl(table: TableSchema, name: str | None = None) -> str:
    columns = [_duckdb_column(c) for c in table.columns]
    if table.key and table.primary_key:
        columns.append(f"PRIMARY KEY ({', '.join(table.key)})")
    return f"CREATE TABLE IF NOT EXISTS {name or table.name} ({', '.join(columns)})"


def duckdb_has_primary_key(table: TableSchema) -> str:
    """SQL counting the PRIMARY KEY constraints of a table in the DuckDB file."""
    return (
        "SELECT count(*) FROM duckdb_constraints() "
        f"WHERE table_name = '{table.name}' AND constraint_type = 'PRIMARY KEY'"
    )


def duckdb_drop_primary_key(table: TableSchema) -> list[str]:
    """Statements (one transaction) that rebuild a table created with a PRIMARY KEY that
    `primary_key=False` dropped since, keeping its rows: DuckDB cannot drop a constraint
    (tests/test_warehouse.py::test_an_old_run_examples_loses_its_index_and_keeps_its_claims)."""
    rebuilt, columns = f"{table.name}_rebuilt", ", ".join(table.column_names)
    return [
        duckdb_ddl(table, rebuilt),
        f"INSERT INTO {rebuilt} ({columns}) SELECT {columns} FROM {table.name}",
        f"DROP TABLE {table.name}",
        f"ALTER TABLE {rebuilt} RENAME TO {table.name}",
    ]


def duckdb_migrations(table: TableSchema) -> list[str]:
    """Statements that give a table created before its `added` columns those columns (old
    rows: NULL); no-ops on a table that has them
    (tests/test_policy_kind.py::test_a_warehouse_file_from_before_the_column_keeps_its_rows)."""
    return [
        f"ALTER TABLE {table.name} ADD COLUMN IF NOT EXISTS {_duckdb_column(c)}"
        for c in table.columns
        if c.added
    ]


def _duckdb_column(c: Column) -> str:
    sql_type = _DUCKDB_TYPES[c.type] + ("[]" if c.mode == REPEATED else "")
    not_null = " NOT NULL" if c.mode == REQUIRED else ""
    default = f" DEFAULT {c.default}" if c.default else ""
    return f"{c.name} {sql_type}{not_null}{default}"


def arrow_schema(table: TableSchema, names: list[str]):
    """The columns `names` of `table` as an Arrow schema (the batches DuckDB takes in bulk)."""
    import pyarrow as pa

    types = {
        STRING: pa.string(),
        INT64: pa.int64(),
        FLOAT64: pa.float64(),
        TIMESTAMP: pa.timestamp("us", tz="UTC"),
    }
    columns = {c.name: c for c in table.columns}
    return pa.schema(
        [
            pa.field(
                n,
                pa.list_(types[columns[n].type])
                if columns[n].mode == REPEATED
                else types[columns[n].type],
                nullable=columns[n].mode != REQUIRED,
            )
            for n in names
        ]
    )


def bigquery_fields(table: TableSchema) -> list[dict[str, str]]:
    """The schema as BigQuery's JSON form (the REST API, `bq`, and Terraform all take it)."""
    fields: list[dict[str, str]] = []
    for c in table.columns:
        field = {"name": c.name, "type": c.type, "mode": c.mode, "description": c.description}
        if c.default:
            field["defaultValueExpression"] = f"{c.default}()"
        fields.append(field)
    return fields
