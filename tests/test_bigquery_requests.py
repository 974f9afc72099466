"""The BigQuery warehouse as BigQuery receives it: the real google-cloud-bigquery client builds
every request, and a fake HTTP session records them and answers as the REST API does (no
BigQuery emulator works here). The SQL is the ledger's, generated once (app/warehouse/ledger.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from app.cli import main
from app.evaluation import canary
from app.schemas import FEEDBACK, GLOBAL, PER_ARM, PREDICTIONS
from app.warehouse import factory, ledger, linear_statistics
from app.warehouse.base import LedgerConflict
from app.warehouse.bigquery_store import BigQueryWarehouse
from app.warehouse.records import TrainingRunRecord

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


class Response:
    def __init__(self, payload: dict[str, Any], status: int = 200):
        self.status_code = status
        self.headers = {"content-type": "application/json"}
        self.content = json.dumps(payload).encode()
        self.text = self.content.decode()
        self.request = None

    def json(self) -> dict[str, Any]:
        return json.loads(self.content)


class FakeBigQuery:
    """A requests-compatible session: records each call, answers queries with queued rows."""

    def __init__(self):
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.results: list[tuple[list[str], list[list[Any]]] | str] = []
        self.jobs: dict[str, dict[str, Any]] = {}
        self.dry_run_bytes: list[int] = []  # the answers to dry runs, in order
        self.is_mtls = False

    def request(self, method: str, url: str, data: Any = None, **_: Any) -> Response:
        body = json.loads(data) if data else {}
        self.calls.append((method, url.split("?")[0], body))
        path = url.split("/bigquery/v2/")[-1].split("?")[0]
        if method == "POST" and path.endswith("/jobs") and body["configuration"].get("dryRun"):
            # A dry run: planned, not run; BigQuery answers with the bytes it would process.
            scanned = str(self.dry_run_bytes.pop(0))
            statistics = {"totalBytesProcessed": scanned, "query": {"totalBytesProcessed": scanned}}
            return Response({**body, "status": {"state": "DONE"}, "statistics": statistics})
        if method == "POST" and path.endswith("/jobs"):
            job_id = body["jobReference"]["jobId"]
            result = self.results.pop(0) if self.results else ([], [])
            if isinstance(result, str):  # the job fails with this message, as BigQuery fails it
                error = {"reason": "invalidQuery", "message": result}
                self.jobs[job_id] = {"error": error}
                status = {"state": "DONE", "errorResult": error, "errors": [error]}
                return Response({**body, "status": status, "id": job_id})
            columns, rows = result
            self.jobs[job_id] = {"columns": columns, "rows": rows}
            return Response({**body, "status": {"state": "DONE"}, "id": job_id})
        if "/queries/" in path:
            job = self.jobs[path.rsplit("/", 1)[-1]]
            if "error" in job:
                return Response({"error": {"code": 400, **job["error"]}}, status=400)
            return Response(
                {
                    "jobComplete": True,
                    "jobReference": {"projectId": "proj", "jobId": path.rsplit("/", 1)[-1]},
                    "schema": {"fields": [_field(c) for c in job["columns"]]},
                    "rows": [{"f": [{"v": v} for v in row]} for row in job["rows"]],
                    "totalRows": str(len(job["rows"])),
                }
            )
        if "/jobs/" in path:
            return Response(
                {"jobReference": {"jobId": path.rsplit("/", 1)[-1]}, "status": {"state": "DONE"}}
            )
        return Response(body)  # datasets.insert, tables.insert: the resource as created

    def queries(self) -> list[dict[str, Any]]:
        return [
            b["configuration"]["query"]
            for m, u, b in self.calls
            if u.endswith("/jobs") and m == "POST"
        ]


def _field(column: str) -> dict[str, str]:
    """ "name" or "name:TYPE" (STRING by default), as the query's result schema."""
    name, _, kind = column.partition(":")
    return {"name": name, "type": kind or "STRING"}


@pytest.fixture
def fake() -> FakeBigQuery:
    return FakeBigQuery()


@pytest.fixture
def warehouse(fake: FakeBigQuery) -> BigQueryWarehouse:
    client = bigquery.Client(project="proj", credentials=AnonymousCredentials(), _http=fake)
    return BigQueryWarehouse("proj", "ds", "EU", client=client)


def params(query: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    return {
        p["name"]: (p["parameterType"]["type"], p["parameterValue"].get("value"))
        for p in query.get("queryParameters", [])
    }


def test_a_first_claim_is_one_script_whose_result_is_the_statistics(warehouse, fake):
    """A run that has not claimed sends one multi-statement query: the claim's transaction
    (guard, the untrained rows into a temporary table read once, quarantine, the cut inside
    IF, the claim) and after its COMMIT the sums over that table, the script's result; then
    the count of its claims. A restarted run sends no claim, and sums its claims."""
    sums = (["action:INT64", "n:INT64", *(f"v{i}:FLOAT64" for i in range(2 + 3))], [])
    sums[1].append(["1", "3", "1.0", "2.0", "1.0", "0.0", "4.0"])
    fake.results = [(["claimed:BOOL"], [["false"]]), sums, (["n:INT64"], [["3"]])]
    claimed, state = warehouse.claim_statistics("run-7", 500, 2, 3)
    assert claimed == 3 and state.num_samples.tolist() == [0, 3, 0]
    assert state.data_vector[1].tolist() == [1.0, 2.0]
    assert state.cov_matrix[1].tolist() == [[1.0, 0.0], [0.0, 4.0]]
    before, script, count = fake.queries()
    sql = ledger.bigquery("proj", "ds")
    claim = ledger.claim(sql, GLOBAL, 2)
    assert before["query"] == ledger.claimed_before(sql)
    text = script["query"]
    assert text.startswith(f"BEGIN TRANSACTION;\n{claim.guard};\n{claim.materialise};\n")
    assert "INSERT INTO `proj.ds.run_claims` (run_id, claimed_at)" in claim.guard
    assert f"IF {claim.over_limit} THEN\n{claim.cut};\nEND IF;\n{claim.claim};" in text
    statistics = linear_statistics.statistics(sql, 2, claiming=True)
    assert text.endswith(f"COMMIT TRANSACTION;\n{statistics};")
    # after the commit only the temporary table is read; the logged tables once, before it
    committed = text.split("COMMIT TRANSACTION")[1]
    assert "`proj." not in committed and "FROM claimable WHERE fault IS NULL" in committed
    for table in ("predictions", "feedback"):
        assert text.count(f"`proj.ds.{table}`") == 1
        assert claim.materialise.count(f"`proj.ds.{table}`") == 1
    assert "SAFE_OFFSET(1)] AS x1" in claim.materialise  # a short observation: NULL, quarantined
    assert script["useLegacySql"] is False
    since = ("TIMESTAMP", "1970-01-01 00:00:00+00:00")  # no feedback window: every partition
    assert params(script) == {
        "run_id": ("STRING", "run-7"),
        "rank_k": ("INT64", "2"),
        "num_actions": ("INT64", "3"),
        "max_rows": ("INT64", "500"),
        "since": since,
    }
    assert count["query"] == ledger.claimed_count(sql)
    assert params(count) == {"run_id": ("STRING", "run-7"), "since": since}
    jobs = [b for m, u, b in fake.calls if m == "POST" and u.endswith("/jobs")]
    assert {j["jobReference"]["location"] for j in jobs} == {"EU"}

    fake.calls.clear()
    fake.results = [(["claimed:BOOL"], [["true"]]), (["n:INT64"], [["3"]]), sums]
    assert warehouse.claim_statistics("run-7", 500, 2, 3)[0] == 3
    restart = [q["query"] for q in fake.queries()]
    assert restart == [
        ledger.claimed_before(sql),
        ledger.claimed_count(sql),
        linear_statistics.statistics(sql, 2),
    ]


def test_commit_is_one_transaction_that_asserts_the_checks(warehouse, fake):
    fake.results = [(["committed:INT64", "latest", "overlap:INT64"], [["0", None, "0"]]), ([], [])]
    run = TrainingRunRecord("run-1", "v-run-1", None, None, 12, 20, 20, "gs://a/policies/v")
    assert warehouse.commit(run) is True
    _, script = fake.queries()
    text = script["query"]
    assert text.startswith(
        "BEGIN TRANSACTION;\nASSERT (SELECT count(*) FROM `proj.ds.training_runs`"
    )
    sql = ledger.bigquery("proj", "ds")
    bootstrap, move = ledger.head_statements(sql)
    assert "UPDATE `proj.ds.ledger_head` SET run_id = @run_id" in move
    assert "IS NOT DISTINCT FROM @parent_run_id" in move
    # the compare-and-swap (an UPDATE: concurrent transactions conflict) must move one row
    assert f"{bootstrap};\n{move};\nASSERT @@row_count = 1 AS " in text
    for statement in ledger.commit_statements(sql):
        assert statement in text
        assert text.index(move) < text.index(statement)
    assert text.endswith("COMMIT TRANSACTION;")
    assert params(script)["parent_run_id"] == ("STRING", None)
    assert params(script)["examples"] == ("INT64", "12")


def test_two_runs_with_one_parent_the_second_commit_is_a_ledger_conflict(warehouse, fake):
    """Both runs pass the checks before either commits (BigQuery reads a snapshot); the second
    transaction's compare-and-swap moves no row, its ASSERT fails the job, and the commit
    raises LedgerConflict; a transaction BigQuery cancels for a concurrent update too."""
    fresh = (["committed:INT64", "latest", "overlap:INT64"], [["0", None, "0"]])
    moved = "Query error: the ledger head moved: another run committed at the same time at [5:1]"
    aborted = "Transaction is aborted due to concurrent update against table proj.ds.ledger_head"
    fake.results = [fresh, ([], []), fresh, moved, fresh, aborted]
    assert warehouse.commit(TrainingRunRecord("a", "v-a", None, None, 2, 20, 20, "gs://a"))
    for run_id in ("b", "c"):
        with pytest.raises(LedgerConflict, match="another run committed at the same time"):
            warehouse.commit(TrainingRunRecord(run_id, "v", None, None, 2, 20, 20, "gs://b"))
    scripts = [q["query"] for q in fake.queries() if q["query"].startswith("BEGIN")]
    assert len(scripts) == 3 and all("ASSERT @@row_count = 1" in q for q in scripts)


def test_a_failed_commit_for_another_reason_is_not_a_conflict(warehouse, fake):
    fake.results = [(["committed:INT64", "latest", "overlap:INT64"], [["0", None, "0"]]), "boom"]
    with pytest.raises(Exception, match="boom") as raised:
        warehouse.commit(TrainingRunRecord("a", "v", None, None, 2, 20, 20, "gs://a"))
    assert not isinstance(raised.value, LedgerConflict)


def test_commit_of_a_stale_run_sends_no_transaction(warehouse, fake):
    fake.results = [(["committed:INT64", "latest", "overlap:INT64"], [["0", "run-0", "0"]])]
    run = TrainingRunRecord("run-1", "v", None, None, 1, 20, 20, "gs://a")
    with pytest.raises(LedgerConflict, match="run run-0 has committed since"):
        warehouse.commit(run)
    assert len(fake.queries()) == 1


def test_ledger_reads_only_the_feedback_window_of_partitions(fake):
    """Every scan of predictions/feedback filters on the partition column, as a query
    parameter, before the dedup window: BigQuery prunes the partitions before the window."""
    client = bigquery.Client(project="proj", credentials=AnonymousCredentials(), _http=fake)
    warehouse = BigQueryWarehouse("proj", "ds", "EU", client=client, feedback_window_days=14)
    fake.results = [(["n:INT64"], [["0"]])]
    before = datetime.now(UTC)
    warehouse.count_untrained(20, 20)
    fake.results = [(["started:TIMESTAMP"], [[str(int(T0.timestamp() * 1e6))]]), ([], [])]
    list(warehouse.iter_claimed("run-7"))
    count, started, claimed = fake.queries()
    kind, value = params(count)["since"]
    assert kind == "TIMESTAMP"
    window = before - datetime.fromisoformat(value)
    assert timedelta(days=14, minutes=-5) < window <= timedelta(days=14)
    assert started["query"] == ledger.run_started(ledger.bigquery("proj", "ds"))
    assert datetime.fromisoformat(params(claimed)["since"][1]) == T0 - timedelta(days=14)
    for query in (count["query"], claimed["query"]):
        for table in ("predictions", "feedback"):
            scans = query.split(f"`proj.ds.{table}`")[1:]
            assert scans and all(_filtered_before_the_window(scan) for scan in scans)


def _filtered_before_the_window(scan: str) -> bool:
    """The scan's WHERE starts with the partition filter (others, e.g. the policy kind, may
    follow it) and comes before the dedup window."""
    where, window, _ = scan.partition(" QUALIFY ROW_NUMBER()")
    return bool(window) and (
        where == " WHERE ingested_at >= @since"
        or where.startswith(" WHERE ingested_at >= @since AND ")
    )


def test_every_read_of_the_logged_tables_filters_their_partition_column():
    """predictions and feedback are partitioned by day on ingested_at: every query over them
    (the ledger's, the statistics, the canary's rewards) filters that column against the
    `since` parameter where it reads the table, before any dedup window, so BigQuery scans
    the partitions of the window only; and a run's claims on theirs."""
    d = ledger.bigquery("proj", "ds")
    queries = {
        "count": ledger.count_untrained(d, GLOBAL),
        "claim": ledger.claim(d, GLOBAL, 20).script(
            linear_statistics.statistics(d, 20, holdout_every=5, claiming=True)
        ),
        "claimed before": ledger.claimed_before(d),
        "claimed count": ledger.claimed_count(d),
        "claimed": ledger.claimed(d),
        "statistics": linear_statistics.statistics(d, 20, holdout_every=5),
        "per-arm statistics": linear_statistics.per_arm_statistics(d, 20),
        "canary rewards": canary.rewards_by_version_sql(d),
    }
    for name, query in queries.items():
        if name.startswith("claimed "):
            continue  # they read the ledger only
        for table in (PREDICTIONS, FEEDBACK):
            assert table.partition_by == "ingested_at"
            scans = query.split(f"`proj.ds.{table.name}`")[1:]
            assert scans, f"{name} does not read {table.name}"
            for scan in scans:
                assert _filtered_before_the_window(scan), (name, scan[:80])
    # A run's claims, all made when it claimed, one window after `since`.
    for name in ("claimed", "claimed before", "claimed count", "statistics", "per-arm statistics"):
        reads = queries[name].split("FROM `proj.ds.run_examples`")[1:]
        assert reads and all(
            r.startswith(" WHERE run_id = @run_id AND claimed_at >= @since") for r in reads
        )


def test_retraining_bytes_are_dry_runs_of_the_runs_queries(fake):
    """jobs.insert with dryRun (free: BigQuery plans, bills nothing) for each scan of the
    logged tables a re-training makes, over the feedback window; the bytes BigQuery reports
    come back per query."""
    client = bigquery.Client(project="proj", credentials=AnonymousCredentials(), _http=fake)
    warehouse = BigQueryWarehouse("proj", "ds", "EU", client=client, feedback_window_days=14)
    fake.dry_run_bytes = [1_000, 2_000]
    before = datetime.now(UTC)
    scanned = warehouse.retraining_bytes(20, 20)
    assert scanned == {"count": 1_000, "claim": 2_000}
    jobs = [body for method, url, body in fake.calls if method == "POST" and url.endswith("/jobs")]
    d = ledger.bigquery("proj", "ds")
    assert [j["configuration"]["query"]["query"] for j in jobs] == [
        ledger.count_untrained(d, GLOBAL),
        ledger.claimable(d, GLOBAL, 20),  # what the claim's temporary table is made of
    ]
    assert ledger.claim(d, GLOBAL, 20).materialise.endswith(ledger.claimable(d, GLOBAL, 20))
    for job in jobs:
        assert job["configuration"]["dryRun"] is True
        assert job["configuration"]["query"]["useQueryCache"] is False  # a hit reports 0
        assert job["jobReference"]["location"] == "EU"
        kind, value = params(job["configuration"]["query"])["since"]
        window = before - datetime.fromisoformat(value)
        assert kind == "TIMESTAMP" and timedelta(days=14, minutes=-5) < window <= timedelta(days=14)
    assert not fake.jobs  # nothing ran


def test_recloop_retraining_bytes_prints_the_dry_runs(fake, monkeypatch, capsys):
    client = bigquery.Client(project="proj", credentials=AnonymousCredentials(), _http=fake)
    warehouse = BigQueryWarehouse("proj", "ds", "EU", client=client, feedback_window_days=14)
    monkeypatch.setattr(factory, "open_warehouse", lambda settings: warehouse)
    fake.dry_run_bytes = [10**9, 2 * 10**9]
    assert main(["retraining-bytes", "--env", "dev"]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert lines == [["count", "1.000", "GB"], ["claim", "2.000", "GB"], ["total", "3.000", "GB"]]


def test_recloop_retraining_bytes_of_a_duckdb_warehouse_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RECLOOP__WAREHOUSE__DUCKDB_PATH", str(tmp_path / "w.duckdb"))
    assert main(["retraining-bytes", "--env", "local"]) == 2
    assert capsys.readouterr().err == "error: the local warehouse is duckdb: BigQuery only\n"


def test_a_per_arm_claim_and_the_statistics_read_only_their_own_kind_of_rows(warehouse, fake):
    """Per-arm and global rows share `predictions`; the SQL BigQuery receives names the kind
    (NULL = global). Their behaviour on rows: tests/test_policy_kind.py."""
    fake.results = [(["claimed:BOOL"], [["false"]]), ([], []), (["n:INT64"], [["3"]])]
    assert warehouse.claim("run-7", 500, 20, 1682, policy_kind=PER_ARM) == 3
    _, script, _ = fake.queries()
    per_arm = "COALESCE(policy_kind, 'global') = 'per_arm'"
    assert per_arm in script["query"] and "= 'global'" not in script["query"]
    assert script["query"].endswith("COMMIT TRANSACTION;")  # a claim alone: no sums
    d = ledger.bigquery("proj", "ds")
    assert per_arm in linear_statistics.per_arm_statistics(d, 20)
    assert "COALESCE(policy_kind, 'global') = 'global'" in linear_statistics.statistics(d, 20)
    assert "= 'per_arm'" not in linear_statistics.statistics(d, 20)
