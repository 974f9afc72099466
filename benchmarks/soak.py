"""The logging soak of issue 11: the predictor at full rate under wrk with logging on, for
60 seconds, through the real local parts — `python -m app.predictor` publishing its prediction
logs to the Pub/Sub emulator, the pull Logger (`python -m app.functions.logger_pull`) writing
them into DuckDB.

Exactly once: every prediction id a response carried (wrk records each response's
`request_id`) must be in the warehouse once: `missing` and `duplicates` are 0. Rows the
warehouse holds but no recorded response named (requests in flight when wrk stopped, whose
answers it never read) are counted apart, as `unanswered`.

Lag: for every row, the warehouse's `ingested_at` (DuckDB's clock, set in the insert's
transaction) minus the predictor's `time` (when it served); both are this machine's clock.
Reported: max and p99 over all rows, and the max per 10 seconds of serving, so a lag that
grows with time shows. `python -m benchmarks.soak` writes .recloop/bench/soak.json; `make bench`
runs it beside the other figures; tests/test_soak.py runs it for a few seconds (exactly once,
not speed).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from app.config import Settings, env_name
from app.local import pubsub_emulator
from app.local.processes import PYTHON, free_port, running
from app.local.stack import PROJECT, stack_environment
from benchmarks.serving import CONNECTIONS, body_of, require_wrk

SOAK_SECONDS = 60
WINDOW_S = 10
LAG_BOUND_S = 10.0  # the Logger keeps up if no row waits longer (its batches take ≤ 1 s)
SUBSCRIPTION = "prediction-logs-to-logger-pull"
DRAIN_TIMEOUT_S = 180.0  # after the load stops: the Logger must have stored every row by then
OUTPUT = Path(".recloop/bench/soak.json")


@dataclass(frozen=True)
class SoakResult:
    seconds: float
    requests_per_s: float
    served: int  # distinct prediction ids in wrk's responses
    stored: int  # rows in the warehouse
    missing: int  # served, not stored
    duplicates: int  # served ids stored more than once, or answered twice
    unanswered: int  # stored, but wrk never read the response (in flight at the stop)
    errors: int  # responses without a prediction id
    max_lag_s: float
    p99_lag_s: float
    max_lag_by_window_s: list[float]
    drain_s: float  # from the end of the load until the last row was stored

    @property
    def exactly_once(self) -> bool:
        return self.served > 0 and self.missing == 0 and self.duplicates == 0

    @property
    def lag_bounded(self) -> bool:
        """No row waited longer than LAG_BOUND_S: a Logger that falls behind a predictor
        serving for a minute shows lags that grow towards that minute."""
        return self.max_lag_s <= LAG_BOUND_S


def _script(folder: Path, body: bytes, ids: Path) -> Path:
    """wrk posts `body` and writes the request_id of every response to `ids`, a line each."""
    body_file = folder / "body.json"
    body_file.write_bytes(body)
    script = folder / "soak.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'local f = io.open("{body_file}", "rb")\nwrk.body = f:read("*a")\nf:close()\n'
        "local out\n"
        f'function init(args) out = io.open("{ids}", "w"); out:setvbuf("line") end\n'
        "function response(status, headers, body)\n"
        '  out:write(body:match(\'"request_id":"(%x+)"\') or "-", "\\n")\n'
        "end\n"
    )
    return script


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """This process creates the topic and reads the warehouse with the stack's settings."""
    previous = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def soak(policy_dir: str, rank_k: int, state_dir: Path, seconds: int = SOAK_SECONDS) -> SoakResult:
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    from app.warehouse.duckdb_store import DuckDBWarehouse

    settings = Settings()
    port = free_port()
    env = stack_environment(state_dir, port, settings)
    warehouse = DuckDBWarehouse(env[env_name(("warehouse", "duckdb_path"))])
    logs = state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    emulator = pubsub_emulator.emulator(PROJECT, state_dir / "pubsub", logs / "pubsub.log")
    with emulator as host, _environment({**env, "PUBSUB_EMULATOR_HOST": host}):
        topic = settings.pubsub.prediction_logs_topic
        pubsub_emulator.create_topics(PROJECT, [topic])
        subscriber = pubsub_v1.SubscriberClient()
        with subscriber:
            subscriber.create_subscription(
                name=subscriber.subscription_path(PROJECT, SUBSCRIPTION),
                topic=f"projects/{PROJECT}/topics/{topic}",
                ack_deadline_seconds=pubsub_emulator.ACK_DEADLINE_S,
            )
        warehouse.ensure_tables()
        logger = [PYTHON, "-m", "app.functions.logger_pull", SUBSCRIPTION]
        predictor_env = {**env, "AIP_STORAGE_URI": policy_dir, "AIP_HTTP_PORT": str(port)}
        with (
            running(logger, {}, lambda: True, log_path=logs / "logger.log"),
            running(
                [PYTHON, "-m", "app.predictor"],
                predictor_env,
                f"http://127.0.0.1:{port}/health",  # 200 once the policy is loaded
                log_path=logs / "predictor.log",
            ),
        ):
            ids_file = state_dir / "ids.txt"
            script = _script(state_dir, body_of(1, rank_k), ids_file)
            url = f"http://127.0.0.1:{port}/predict"
            command = [require_wrk(), "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s"]
            out = subprocess.run(
                [*command, "-s", str(script), url], capture_output=True, text=True, check=True
            ).stdout
            stopped = time.monotonic()
            answered = [line for line in ids_file.read_text().splitlines() if line]
            ids = Counter(line for line in answered if line != "-")
            drain_s = _wait_for_rows(warehouse, len(ids), stopped)
    rows = warehouse.query(
        "SELECT request_id, count(*), "
        "max(epoch(ingested_at) - epoch(time)) FROM predictions GROUP BY request_id"
    )
    served_times = dict(
        warehouse.query("SELECT request_id, epoch(time) FROM predictions WHERE instance_index = 0")
    )
    stored = {request_id: count for request_id, count, _ in rows}
    lags = sorted(lag for _, _, lag in rows)
    return SoakResult(
        seconds=seconds,
        requests_per_s=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        served=len(ids),
        stored=sum(stored.values()),
        missing=sum(1 for i in ids if i not in stored),
        duplicates=sum(1 for i, n in ids.items() if n > 1 or stored.get(i, 0) > 1),
        unanswered=sum(1 for i in stored if i not in ids),
        errors=len(answered) - sum(ids.values()),
        max_lag_s=lags[-1] if lags else float("nan"),
        p99_lag_s=lags[int(0.99 * (len(lags) - 1))] if lags else float("nan"),
        max_lag_by_window_s=_by_window(rows, served_times),
        drain_s=drain_s,
    )


def _wait_for_rows(warehouse, served: int, stopped: float) -> float:
    """Seconds from `stopped` until the warehouse holds at least `served` rows and has stopped
    growing (the in-flight ones too); gives up after DRAIN_TIMEOUT_S."""
    last, last_change = -1, time.monotonic()
    while time.monotonic() - stopped < DRAIN_TIMEOUT_S:
        count = warehouse.query("SELECT count(*) FROM predictions")[0][0]
        if count != last:
            last, last_change = count, time.monotonic()
        elif count >= served and time.monotonic() - last_change > 2:
            break
        time.sleep(0.5)
    return last_change - stopped


def _by_window(rows: list[tuple], served_times: dict[str, float]) -> list[float]:
    if not rows:
        return []
    start = min(served_times.values())
    windows: dict[int, float] = {}
    for request_id, _, lag in rows:
        w = int((served_times[request_id] - start) // WINDOW_S)
        windows[w] = max(windows.get(w, 0.0), lag)
    return [round(windows.get(w, 0.0), 3) for w in range(max(windows) + 1)]


def train_policy(scratch: Path) -> tuple[str, int]:
    """A LinUCB policy on MovieLens (MOVIELENS_DIR), as `make bench` serves: its path, rank."""
    from app.config import DataConfig, load_settings
    from app.trainer.run import run
    from benchmarks.training import reference_args

    args = reference_args(50, 0)
    movielens_dir = load_settings().data.movielens_dir
    settings = Settings(
        artifacts_dir=str(scratch / "artifacts"),
        data=DataConfig(movielens_dir=movielens_dir, download=False),
    )
    return run(args, settings).policy_dir, args.rank_k


def measure(seconds: int = SOAK_SECONDS) -> SoakResult:
    with tempfile.TemporaryDirectory() as folder:
        policy, rank_k = train_policy(Path(folder))
        return soak(policy, rank_k, Path(folder) / "state", seconds)


def report(result: SoakResult) -> str:
    lag = f"max {result.max_lag_s:.2f} s, p99 {result.p99_lag_s:.2f} s"
    return (
        f"soak {result.seconds} s: {result.requests_per_s:,.0f} requests/s, "
        f"{result.served:,} served, {result.stored:,} stored, missing {result.missing}, "
        f"duplicates {result.duplicates}, unanswered {result.unanswered}, lag {lag}, "
        f"max lag per {WINDOW_S} s {result.max_lag_by_window_s}, drained {result.drain_s:.1f} s "
        "after the load"
    )


def save(result: SoakResult) -> None:
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    flags = {"exactly_once": result.exactly_once, "lag_bounded": result.lag_bounded}
    OUTPUT.write_text(json.dumps({**asdict(result), **flags}) + "\n")


def main() -> int:
    result = measure()
    save(result)
    print(report(result))
    print(f"wrote {OUTPUT}")
    return 0 if result.exactly_once else 1


if __name__ == "__main__":
    sys.exit(main())
