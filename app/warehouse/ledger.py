"""The training-set ledger's SQL, generated once for DuckDB and BigQuery.

Every joined interaction (prediction ⋈ feedback on (request_id, instance_index)) is trained
on exactly once, whatever the order or lateness of its halves (docs/reliability.md):

1. claim: one transaction stages, under the run id, the oldest-ingested examples that no
   committed run trained on and that are not quarantined (`Claim`: the untrained rows are
   read into one temporary table that the quarantine, the claim and the run's statistics all
   read); the run's `run_claims` row makes it once per run id, so a restarted run reads
   exactly what it read before;
2. quarantine: rows that cannot be trained on are stored with their reason, never claimed;
3. commit: one transaction moves the ledger head from the run's parent to the run
   (compare-and-swap: an UPDATE that must change one row, so that two concurrent commits
   conflict on BigQuery too, where concurrent INSERTs never do), copies the run's claims into
   `trained_examples` and inserts its `training_runs` row, if no other run committed since
   the one it warm-started from and none of its examples is in the ledger already (else it
   changes nothing and fails with LedgerConflict).

Nothing depends on time except the claim order, which uses the warehouse's ingestion time.
Proved by tests/test_warehouse.py (claims, commit conflicts, quarantine), tests/test_ledger.py
(publish faults) and the scenarios of `make chaos` (tests/test_chaos.py).
Each side of the join and every ledger table is deduplicated by key in the queries, so
BigQuery's best-effort streaming dedup is never trusted; DuckDB enforces each table's key itself
(PRIMARY KEY, INSERT OR IGNORE: the first row stored wins; run_examples is unique by
construction: app/schemas.py), so there the same queries read the tables as they are. The
statements are the same text on both warehouses but for the table names, the parameter
marks, the array and finiteness functions and that deduplication of `Dialect`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.schemas import (
    FEEDBACK,
    GLOBAL,
    LEDGER_HEAD,
    POLICY_KINDS,
    PREDICTIONS,
    QUARANTINE,
    RUN_CLAIMS,
    RUN_EXAMPLES,
    TRAINED_EXAMPLES,
    TRAINING_RUNS,
    TableSchema,
)

KEY = ", ".join(PREDICTIONS.key)
# The trainer reads examples as float32 and sums outer products x·xᵀ and r·x: a value finite
# in FLOAT64 but past float32's range (the Logger and the predictor accept 1e39) would turn
# the policy's statistics into inf/NaN, and every later run warm-starts from it.
FLOAT32_MAX = 3.4028234663852886e38


@dataclass(frozen=True)
class Dialect:
    table: Callable[[TableSchema], str]
    param: Callable[[str], str]
    finite: Callable[[str], str]  # SQL that is true when a FLOAT64 expression is finite
    array_sum: Callable[[str], str]
    element: Callable[[str, int], str]  # the i-th (0-based) value of an ARRAY expression
    element_or_null: Callable[[str, int], str]  # the same, NULL past the array's end
    at: Callable[[str, str], str]  # its value at a 0-based INT64 SQL expression
    numbers: Callable[[str], str]  # a FROM item: one row per m in 0 .. count − 1, column m
    sum_of_squares: Callable[[str], str]  # of a FLOAT64 array
    # The engine stores one row per key (DuckDB: PRIMARY KEY + INSERT OR IGNORE), so a dedup
    # window or DISTINCT would only cost time (the window over predictions was two thirds of
    # a claim's). BigQuery's streaming may duplicate: False, and the queries deduplicate
    # (tests/test_warehouse.py::test_tables_without_keys_are_deduplicated_by_the_queries).
    keys_enforced: bool = False


DUCKDB = Dialect(
    table=lambda t: t.name,
    param=lambda n: f"${n}",
    finite=lambda e: f"isfinite({e})",
    array_sum=lambda e: f"list_sum({e})",
    element=lambda e, i: f"{e}[{i + 1}]",
    element_or_null=lambda e, i: f"{e}[{i + 1}]",  # a list index past the end is NULL
    at=lambda e, i: f"{e}[{i} + 1]",
    numbers=lambda count: f"range({count}) AS numbers(m)",
    sum_of_squares=lambda e: f"list_inner_product({e}, {e})",
    keys_enforced=True,
)


def bigquery(project: str, dataset: str) -> Dialect:
    return Dialect(
        table=lambda t: f"`{project}.{dataset}.{t.name}`",
        param=lambda n: f"@{n}",
        finite=lambda e: f"NOT (IS_NAN({e}) OR IS_INF({e}))",
        array_sum=lambda e: f"(SELECT SUM(v) FROM UNNEST({e}) AS v)",
        element=lambda e, i: f"{e}[OFFSET({i})]",
        element_or_null=lambda e, i: f"{e}[SAFE_OFFSET({i})]",
        at=lambda e, i: f"{e}[OFFSET({i})]",
        numbers=lambda count: f"UNNEST(GENERATE_ARRAY(0, {count} - 1)) AS m",
        sum_of_squares=lambda e: f"(SELECT SUM(v * v) FROM UNNEST({e}) AS v)",
    )


def _first_by_key(d: Dialect, table: TableSchema, order: str, where: str = "TRUE") -> str:
    """One row per key; `where` filters before the window, so that BigQuery prunes
    partitions (a filter after QUALIFY would scan every partition first)."""
    if d.keys_enforced:
        return f"SELECT * FROM {d.table(table)} WHERE {where}"
    return (
        f"SELECT * FROM {d.table(table)} WHERE {where} "
        f"QUALIFY ROW_NUMBER() OVER (PARTITION BY {', '.join(table.key)} ORDER BY {order}) = 1"
    )


def _recent(d: Dialect, table: TableSchema) -> str:
    """The partition filter of a table: rows at or after the `since` parameter. Never on
    trained_examples or quarantine: BigQuery may store a redelivered copy of an interaction
    trained long ago, and only the whole ledger knows it was."""
    return f"{table.partition_by} >= {d.param('since')}"


def _keys(d: Dialect, table: TableSchema, where: str = "TRUE", extra: str = "") -> str:
    """The interaction keys (request_id, instance_index) of a table, each once: `table`'s own
    key is them, or them and run_id with `where` fixing the run."""
    distinct = "" if d.keys_enforced else "DISTINCT "
    return f"SELECT {distinct}{KEY}{extra} FROM {d.table(table)} WHERE {where}"


def of_kind(policy_kind: str) -> str:
    """SQL true for the predictions a policy of that kind served. Global and per-arm rows
    share the table, and a per-arm action (a catalogue index) below a global policy's arm
    count looks like a global one: each run reads only its own kind. NULL is global: rows
    logged before the column existed, when only global policies served."""
    if policy_kind not in POLICY_KINDS:
        kinds = ", ".join(POLICY_KINDS)
        raise ValueError(f"policy kind must be one of {kinds}, got {policy_kind!r}")
    return f"COALESCE(policy_kind, '{GLOBAL}') = '{policy_kind}'"


def joined(d: Dialect, policy_kind: str | None = None) -> str:
    """Predictions ⋈ feedback since the `since` parameter (the partitions a query reads: see
    warehouse.feedback_window_days), each side deduplicated (the first row stored wins);
    with `policy_kind`, only predictions a policy of that kind served."""
    served = _recent(d, PREDICTIONS)
    if policy_kind is not None:
        served = f"{served} AND {of_kind(policy_kind)}"
    return f"""SELECT p.request_id, p.instance_index, p.observation, p.action, f.reward,
         p.propensity, GREATEST(p.ingested_at, f.ingested_at) AS ready_at
  FROM ({_first_by_key(d, PREDICTIONS, "ingested_at, time", served)}) AS p
  JOIN ({_first_by_key(d, FEEDBACK, "ingested_at, time", _recent(d, FEEDBACK))}) AS f
    USING ({KEY})"""


def run_started(d: Dialect) -> str:
    """When the run claimed (its examples were logged at most one window before)."""
    return f"SELECT MIN(claimed_at) FROM {d.table(RUN_EXAMPLES)} WHERE run_id = {d.param('run_id')}"


def untrained(d: Dialect, policy_kind: str) -> str:
    """Joined examples of a policy kind in neither the ledger nor the quarantine, each with
    its fault (or NULL). Rows of another kind are neither claimed nor quarantined."""
    p = d.param
    return f"""SELECT j.*, CASE
    WHEN j.action < 0 OR j.action >= {p("num_actions")} THEN CONCAT('action ',
      CAST(j.action AS STRING), ' is outside 0..', CAST({p("num_actions")} - 1 AS STRING))
    WHEN ARRAY_LENGTH(j.observation) != {p("rank_k")} THEN CONCAT('observation has ',
      CAST(ARRAY_LENGTH(j.observation) AS STRING), ' values, the rank is ',
      CAST({p("rank_k")} AS STRING))
    WHEN NOT {d.finite(d.array_sum("j.observation"))} THEN 'observation holds a non-finite value'
    WHEN NOT ({d.sum_of_squares("j.observation")} <= {FLOAT32_MAX!r}) THEN
      'observation is too large for float32 training (its squared norm exceeds 3.4e38)'
    WHEN NOT {d.finite("j.reward")} THEN 'reward is not finite'
    WHEN NOT (ABS(j.reward) <= {FLOAT32_MAX!r}) THEN 'reward is too large for float32 training'
  END AS fault
  FROM ({joined(d, policy_kind)}) AS j
  LEFT JOIN ({_keys(d, TRAINED_EXAMPLES, extra=", TRUE AS trained")}) AS t USING ({KEY})
  LEFT JOIN ({_keys(d, QUARANTINE, extra=", TRUE AS held")}) AS q USING ({KEY})
  WHERE t.trained IS NULL AND q.held IS NULL"""


def count_untrained(d: Dialect, policy_kind: str) -> str:
    """How many examples the next run could train on (the Trigger's question)."""
    return f"SELECT count(*) FROM ({untrained(d, policy_kind)}) AS u WHERE u.fault IS NULL"


CLAIMABLE = "claimable"  # the claim's temporary table: the run's untrained rows, flat


def feature(i: int) -> str:
    """The claimable table's column of the i-th observation value."""
    return f"x{i}"


@dataclass(frozen=True)
class Claim:
    """A run's first claim, as statements over one temporary table (CLAIMABLE) that holds the
    untrained rows once — with their fault and the observation as rank_k flat columns — so
    that the quarantine, the claim and the statistics read the join once, not once each.
    The caller runs `guard` … `claim` in one transaction, `cut` only when `over_limit`, then
    the statistics over CLAIMABLE (app/warehouse/linear_statistics.py, `claiming=True`);
    DuckDB statement by statement, BigQuery as one script (`script`)."""

    guard: str  # the run's row in run_claims: a second claim of the run conflicts on its key
    materialise: str
    quarantine: str
    over_limit: str  # SQL true when more rows are claimable than max_rows
    cut: str  # keeps the max_rows oldest claimable rows
    claim: str

    def script(self, then: str = "") -> str:
        """BigQuery's form: one multi-statement query, its transaction committed before
        `then` (a SELECT over CLAIMABLE: the script's result)."""
        return (
            ";\n".join(
                [
                    "BEGIN TRANSACTION",
                    self.guard,
                    self.materialise,
                    self.quarantine,
                    f"IF {self.over_limit} THEN\n{self.cut};\nEND IF",
                    self.claim,
                    "COMMIT TRANSACTION",
                    *([then] if then else []),
                ]
            )
            + ";"
        )


def claimed_before(d: Dialect) -> str:
    """Whether the run has claimed already (a restart): its run_claims row, or claims from
    before that table (a warehouse upgraded while the run was between claim and commit)."""
    run = f"run_id = {d.param('run_id')}"
    return f"""SELECT EXISTS (SELECT 1 FROM {d.table(RUN_CLAIMS)} WHERE {run})
  OR EXISTS ({_keys(d, RUN_EXAMPLES, f"{run} AND {_recent(d, RUN_EXAMPLES)}")}) AS claimed"""


def claimable(d: Dialect, policy_kind: str, rank_k: int) -> str:
    """The untrained rows with their fault and each observation value as a column (NULL
    where an observation is short: its row is quarantined), what CLAIMABLE holds."""
    values = ", ".join(
        f"{d.element_or_null('u.observation', i)} AS {feature(i)}" for i in range(rank_k)
    )
    return f"""SELECT u.request_id, u.instance_index, u.action, u.reward, u.ready_at, u.fault,
  {values}
FROM ({untrained(d, policy_kind)}) AS u"""


def claim(d: Dialect, policy_kind: str, rank_k: int) -> Claim:
    """Stages up to max_rows examples for the run, oldest ingested first, and quarantines the
    rows that cannot be trained on; a restarted run (claimed_before) never runs it."""
    p = d.param
    claimed = f"{CLAIMABLE} WHERE fault IS NULL"
    quarantined = ", ".join(QUARANTINE.column_names)
    oldest = f"""SELECT request_id, instance_index FROM {claimed}
    ORDER BY ready_at, request_id, instance_index LIMIT {p("max_rows")}"""
    return Claim(
        guard=f"""INSERT INTO {d.table(RUN_CLAIMS)} ({", ".join(RUN_CLAIMS.column_names)})
VALUES ({p("run_id")}, CURRENT_TIMESTAMP)""",
        materialise=f"CREATE TEMP TABLE {CLAIMABLE} AS\n{claimable(d, policy_kind, rank_k)}",
        quarantine=f"""INSERT INTO {d.table(QUARANTINE)} ({quarantined})
SELECT request_id, instance_index, {p("run_id")}, fault, CURRENT_TIMESTAMP
FROM {CLAIMABLE} WHERE fault IS NOT NULL""",
        over_limit=f"(SELECT COUNT(*) FROM {claimed}) > {p('max_rows')}",
        cut=f"""DELETE FROM {CLAIMABLE} WHERE fault IS NULL AND NOT EXISTS (
  SELECT 1 FROM ({oldest}) AS k
  WHERE k.request_id = {CLAIMABLE}.request_id AND k.instance_index = {CLAIMABLE}.instance_index)""",
        claim=f"""INSERT INTO {d.table(RUN_EXAMPLES)} ({", ".join(RUN_EXAMPLES.column_names)})
SELECT {p("run_id")}, request_id, instance_index, CURRENT_TIMESTAMP FROM {claimed}""",
    )


def claimed_count(d: Dialect) -> str:
    """How many examples the run claimed."""
    run = f"run_id = {d.param('run_id')} AND {_recent(d, RUN_EXAMPLES)}"
    return f"SELECT count(*) FROM ({_keys(d, RUN_EXAMPLES, run)}) AS c"


def claimed_unordered(d: Dialect, policy_kind: str | None = None) -> str:
    """The run's claimed examples (what an aggregation over them reads: no sort; with
    `policy_kind`, only those a policy of that kind served). `since` is one window before
    the run claimed, so its claims are inside."""
    run = f"run_id = {d.param('run_id')} AND {_recent(d, RUN_EXAMPLES)}"
    return f"""SELECT j.request_id, j.instance_index, j.observation, j.action, j.reward,
       j.propensity
FROM ({_keys(d, RUN_EXAMPLES, run)}) AS c
JOIN ({joined(d, policy_kind)}) AS j USING ({KEY})"""


def claimed(d: Dialect) -> str:
    """The run's claimed examples, in key order (the same every time the run reads them)."""
    return f"{claimed_unordered(d)}\nORDER BY j.request_id, j.instance_index"


def runs(d: Dialect, where: str = "TRUE") -> str:
    """Committed runs, newest first (deduplicated by run id)."""
    cols = ", ".join(TRAINING_RUNS.column_names)
    return (
        f"SELECT {cols} FROM ({_first_by_key(d, TRAINING_RUNS, 'time')}) AS r "
        f"WHERE {where} ORDER BY time DESC, run_id DESC"
    )


def commit_checks(d: Dialect) -> dict[str, str]:
    """Scalar queries a commit checks: is the run committed, which run committed last, and
    how many of the run's claims the ledger holds under another run."""
    run_id = d.param("run_id")
    runs_table = d.table(TRAINING_RUNS)
    return {
        "committed": f"SELECT count(*) FROM {runs_table} WHERE run_id = {run_id}",
        "latest": f"SELECT run_id FROM {runs_table} ORDER BY time DESC, run_id DESC LIMIT 1",
        "overlap": f"""SELECT count(*)
    FROM ({_keys(d, RUN_EXAMPLES, f"run_id = {run_id}")}) AS c
    JOIN {d.table(TRAINED_EXAMPLES)} AS t USING ({KEY}) WHERE t.run_id != {run_id}""",
    }


def commit_state(d: Dialect) -> str:
    return "SELECT " + ", ".join(f"({q}) AS {name}" for name, q in commit_checks(d).items())


def commit_statements(d: Dialect) -> list[str]:
    """The two writes of a commit; the caller runs them in one transaction."""
    p = d.param
    run_cols = ", ".join(TRAINING_RUNS.column_names)
    values = ", ".join(
        "CURRENT_TIMESTAMP" if c == "time" else p(c) for c in TRAINING_RUNS.column_names
    )
    ledger_cols = ", ".join(TRAINED_EXAMPLES.column_names)
    return [
        f"""INSERT INTO {d.table(TRAINED_EXAMPLES)} ({ledger_cols})
SELECT c.request_id, c.instance_index, {p("run_id")}, CURRENT_TIMESTAMP
FROM ({_keys(d, RUN_EXAMPLES, f"run_id = {p('run_id')}")}) AS c""",
        f"INSERT INTO {d.table(TRAINING_RUNS)} ({run_cols}) VALUES ({values})",
    ]


HEAD = "training_set"


def head_statements(d: Dialect) -> list[str]:
    """The first writes of a commit: create the head row if there is none (the first commit
    ever, or a ledger from before the head: it starts at the latest committed run), then move
    it from the run's parent to the run. The UPDATE changes one row or none (a stale parent);
    it makes concurrent commits conflict (BigQuery: UPDATEs of one table in concurrent
    transactions; DuckDB: one row updated twice)."""
    p, head = d.param, d.table(LEDGER_HEAD)
    latest = commit_checks(d)["latest"]
    return [
        f"""INSERT INTO {head} (ledger, run_id, moved_at)
SELECT '{HEAD}', ({latest}), CURRENT_TIMESTAMP FROM (SELECT 1 AS seed) AS s
WHERE NOT EXISTS (SELECT 1 FROM {head})""",
        f"""UPDATE {head} SET run_id = {p("run_id")}, moved_at = CURRENT_TIMESTAMP
WHERE ledger = '{HEAD}' AND run_id IS NOT DISTINCT FROM {p("parent_run_id")}""",
    ]
