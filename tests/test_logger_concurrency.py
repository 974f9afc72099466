"""The Logger as `make demo` runs it: functions-framework serving push requests on several
threads, while another process opens and closes the same DuckDB file (the Trigger, the
pipeline steps, the Simulator). A retry is one log line and a 503, never a traceback and a
500; every message is stored once."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx

from app import messages
from app.chaos import rig
from app.chaos.harness import Loop
from app.transport import push_request

MESSAGES = 240
SENDERS = 8

# Opens the file, reads, closes: over and over, as the other local processes do.
OTHER_PROCESS = (
    "import duckdb, sys, time\n"
    "end = time.monotonic() + float(sys.argv[2])\n"
    "while time.monotonic() < end:\n"
    "    try:\n"
    "        c = duckdb.connect(sys.argv[1])\n"
    "        c.execute('SELECT count(*) FROM predictions').fetchall()\n"
    "        time.sleep(0.01)\n"
    "        c.close()\n"
    "    except duckdb.IOException:\n"
    "        pass\n"
    "    time.sleep(0.005)\n"
)


def _deliver(client: httpx.Client, url: str, i: int) -> list[int]:
    """As a Pub/Sub push subscription does: any answer but 2xx is delivered again."""
    data = messages.prediction_log(
        f"request-{i}",
        datetime.now(UTC),
        "v1",
        [{"instance_index": 0, "observation": [1.0, 2.0], "action": 1, "propensity": 0.5}],
    )
    body, headers = push_request("recloop-local", "prediction-logs", data, {}, str(i))
    statuses = []
    for _ in range(50):
        statuses.append(client.post(url, json=body, headers=headers, timeout=60).status_code)
        if statuses[-1] == 200:
            break
    return statuses


def test_a_busy_logger_process_logs_no_traceback(tmp_path: Path):
    loop = Loop(tmp_path)
    loop.warehouse.ensure_tables()
    port = rig.new_port()
    with rig.logger_process(loop, port):
        other = subprocess.Popen(
            [sys.executable, "-c", OTHER_PROCESS, str(loop.warehouse_path), "60"]
        )
        try:
            with httpx.Client() as client, ThreadPoolExecutor(SENDERS) as senders:
                answers = list(
                    senders.map(lambda i: _deliver(client, rig.url(port), i), range(MESSAGES))
                )
        finally:
            other.kill()
            other.wait()
    (log,) = tmp_path.glob("logger-*.log")
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]
    assert {status for statuses in answers for status in statuses} <= {200, 503}
    assert all(statuses[-1] == 200 for statuses in answers)
    stored = "SELECT count(*), count(DISTINCT request_id) FROM predictions"
    assert loop.warehouse.query(stored) == [(MESSAGES, MESSAGES)]
