"""Exactly-once training under faults: publish restarts, a busy warehouse, redelivery, and
single-flight re-training (the full scenarios: tests/test_chaos.py and `make chaos`)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from google.auth.credentials import AnonymousCredentials

from app.chaos.harness import (
    Crash,
    Loop,
    account,
    cloud_event,
    feedback,
    interactions,
    prediction_logs,
)
from app.chaos.scenarios import FAULT_POINTS, fault
from app.config import CloudConfig, PubSubConfig, Settings
from app.deployer import pointer
from app.functions.logger import handle
from app.functions.trigger import LOCK_FILE, UNDER_WAY, LocalLauncher, VertexLauncher, decide
from app.loop import ingester
from app.transport import DirectPublisher
from app.warehouse.base import WarehouseBusy
from app.warehouse.duckdb_store import DuckDBWarehouse


@pytest.fixture
def loop(tmp_path: Path, movielens_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Loop:
    monkeypatch.setenv("MOVIELENS_DIR", str(movielens_dir))
    return Loop(tmp_path / "loop")


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_publish_fault_then_restart(loop: Loop, point: str):
    """Issue 8 defect 3: a run that dies anywhere in its publish and runs again (same run id)
    serves exactly the LinUCB sums of a run that never died; the old Deployer moved CURRENT
    first, so the rerun warm-started from it and counted every example twice."""
    first, second = interactions("a", 24, seed=1), interactions("b", 16, seed=2)
    loop.deliver(prediction_logs(first) + feedback(first))
    loop.retrain("run-1")
    loop.deliver(prediction_logs(second) + feedback(second))
    with pytest.raises(Exception, match=r"injected|killed inside the commit"), fault(point):
        loop.retrain("run-2")
    committed = loop.warehouse.find_run("run-2") is not None
    assert committed == (point in ("after_commit", "after_pointer"))
    # Until the run is retried, serving stays on the last published policy or moves to the
    # committed one; never to a policy the ledger does not know.
    served = pointer.current_version(loop.policies)
    assert served in ("v-run-1", "v-run-2") and (served == "v-run-1" or committed)
    loop.retrain("run-2")
    assert pointer.current_version(loop.policies) == "v-run-2"
    counted = account(loop, first + second)
    assert (counted.lost, counted.duplicated, counted.statistics_match) == (0, 0, True)
    assert loop.warehouse.count_untrained(5, 10) == 0


def test_a_crashed_run_that_is_never_retried_is_superseded(loop: Loop):
    items = interactions("a", 16)
    loop.deliver(prediction_logs(items) + feedback(items))
    with pytest.raises(Crash), fault("after_stage"):
        loop.retrain("dead")
    loop.retrain("next")
    counted = account(loop, items)
    assert (counted.trained_once, counted.duplicated, counted.statistics_match) == (16, 0, True)
    assert loop.warehouse.find_run("dead") is None


def test_a_committed_run_left_unserved_is_served_by_the_next_run(loop: Loop):
    """A run that committed but died before its pointer moved (or its Vertex deploy failed)
    and is never retried stays unserved until the next re-training: that run warm-starts from
    it (the last committed run), so what it serves counts both runs' examples once."""
    first, second = interactions("a", 24, seed=1), interactions("b", 16, seed=2)
    loop.deliver(prediction_logs(first) + feedback(first))
    loop.retrain("run-1")
    loop.deliver(prediction_logs(second) + feedback(second))
    with pytest.raises(Exception, match="injected"), fault("after_commit"):
        loop.retrain("run-2")
    assert loop.warehouse.find_run("run-2") is not None
    assert pointer.current_version(loop.policies) == "v-run-1"  # committed, not served
    third = interactions("c", 16, seed=3)
    loop.deliver(prediction_logs(third) + feedback(third))
    loop.retrain("run-3")
    assert pointer.current_version(loop.policies) == "v-run-3"
    assert loop.warehouse.find_run("run-3").parent_run_id == "run-2"
    counted = account(loop, first + second + third)
    assert (counted.lost, counted.duplicated, counted.statistics_match) == (0, 0, True)


def test_a_changed_rank_is_an_error_of_the_run_that_names_it(loop: Loop):
    items = interactions("a", 8)
    loop.deliver(prediction_logs(items) + feedback(items))
    loop.retrain("run-1")
    with pytest.raises(ingester.IngestError, match=r"run run-2 has rank 6 and 10 actions.*run-1"):
        ingester.ingest(loop.warehouse, str(loop.state / "x"), "run-2", 100, 6, 10)
    assert loop.warehouse.query("SELECT count(*) FROM quarantine") == [(0,)]


@pytest.fixture
def locked(tmp_path: Path):
    """Another process holding the DuckDB file, as a full ingest does."""
    path = tmp_path / "w.duckdb"
    DuckDBWarehouse(path).ensure_tables()
    code = (
        "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
        "print('locked', flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout and holder.stdout.readline().strip() == "locked"
    yield path, holder
    holder.kill()
    holder.wait()


def test_busy_warehouse_raises_and_the_message_is_stored_on_retry(locked):
    path, holder = locked
    warehouse = DuckDBWarehouse(path, lock_wait_s=0.3)
    items = interactions("busy", 8)
    (message,) = prediction_logs(items)
    with pytest.raises(WarehouseBusy, match="is locked by another process"):
        handle(cloud_event(message), warehouse)  # the function errors: Pub/Sub redelivers
    holder.stdin.close()  # type: ignore[union-attr]
    holder.wait()
    assert handle(cloud_event(message), warehouse) == "stored 8 predictions"
    assert warehouse.query("SELECT count(*) FROM predictions") == [(8,)]


def test_direct_publisher_redelivers_until_the_function_succeeds():
    answers = [503, 500, 204]
    seen: list[str] = []

    class Function(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["content-length"]))
            seen.append(self.headers["ce-id"])
            status = answers.pop(0) if answers else 400
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Function)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/"
    publisher = DirectPublisher(PubSubConfig(), {"t": [url]})
    publisher.BACKOFF_S = (0.01, 0.05)
    try:
        message_id = publisher.publish("t", b"{}").result(timeout=30)
        assert seen == [message_id] * 3  # the same message, delivered again
        with pytest.raises(Exception, match="400"):  # a refusal is final: never retried
            publisher.publish("t", b"{}").result(timeout=30)
        assert len(seen) == 4
    finally:
        server.shutdown()


def test_concurrent_trigger_ticks_start_one_run(tmp_path: Path):
    loop = Loop(tmp_path)
    items = interactions("t", 8)
    loop.deliver(prediction_logs(items) + feedback(items))
    warehouse = loop.warehouse
    (tmp_path / LOCK_FILE).write_text("")  # a launch that failed before writing its pid
    launcher = LocalLauncher(str(tmp_path), [sys.executable, "-c", "import time; time.sleep(2)"])
    assert not launcher.running()  # the old Trigger said "running" here, forever
    outcomes: list[str] = []
    threads = [
        threading.Thread(target=lambda: outcomes.append(decide(warehouse, launcher, 8, 5, 10)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 8
    assert sum(o.startswith("started") for o in outcomes) == 1
    assert sum(o.startswith("waiting: a re-training is running") for o in outcomes) == 7
    assert launcher.running()
    pid = int((tmp_path / LOCK_FILE).read_text())
    deadline = time.monotonic() + 30
    while launcher.running() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not launcher.running(), f"the lock outlived run {pid}"
    assert decide(warehouse, launcher, 9, 5, 10) == "waiting: 8 new training examples, 9 needed"


def test_vertex_single_flight_filter_on_the_wire(monkeypatch: pytest.MonkeyPatch):
    """The list request Vertex receives counts pending, queued and running jobs."""
    from google.cloud import aiplatform

    monkeypatch.setattr(aiplatform.initializer, "global_config", aiplatform.initializer._Config())
    aiplatform.initializer.global_config.init(  # `aiplatform.init` is bound to the old config
        project="p",
        location="europe-west4",
        credentials=AnonymousCredentials(),
        api_transport="rest",
    )
    seen: list[tuple[str, str, dict[str, str]]] = []
    jobs: list[dict[str, object]] = []

    def receive(self, method, url, *args, **kwargs):
        seen.append((method, url, dict(kwargs.get("params") or {})))
        response = requests.Response()
        response.status_code = 200
        response._content = json.dumps({"pipelineJobs": jobs}).encode()
        response.headers["content-type"] = "application/json"
        response.request = requests.Request(method, url).prepare()
        return response

    monkeypatch.setattr("google.auth.transport.requests.AuthorizedSession.request", receive)
    launcher = VertexLauncher(
        Settings(cloud=CloudConfig(project_id="p", region="europe-west4")), "gs://b/t.yaml"
    )
    assert launcher.running() is False
    method, url, params = seen[-1]
    assert (method, url) == (
        "GET",
        "https://europe-west4-aiplatform.googleapis.com/v1/projects/p/locations/europe-west4/pipelineJobs",
    )
    assert params["filter"] == (
        'display_name="recloop-retraining" AND (state="PIPELINE_STATE_PENDING" OR '
        'state="PIPELINE_STATE_QUEUED" OR state="PIPELINE_STATE_RUNNING")'
    )
    assert set(UNDER_WAY) == {
        "PIPELINE_STATE_PENDING",
        "PIPELINE_STATE_QUEUED",
        "PIPELINE_STATE_RUNNING",
    }
    jobs.append({"name": "projects/p/locations/europe-west4/pipelineJobs/j1", "state": 1})
    assert launcher.running() is True  # a queued job counts
