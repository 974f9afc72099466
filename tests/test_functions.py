"""Simulator and Trigger logic, with the endpoint and the launcher replaced by recorders."""

import base64
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from app import messages, movielens
from app.environment import MovieLensBandit, factorize
from app.functions.events import pubsub_message
from app.functions.simulator import simulate
from app.functions.trigger import LocalLauncher, decide
from app.warehouse.duckdb_store import DuckDBWarehouse
from app.warehouse.records import FeedbackRecord, PredictionRecord
from tests.test_warehouse import T0


class RecordingEndpoint:
    """Answers like the predictor: a request id per call, one prediction per instance."""

    def __init__(self):
        self.calls: list[list[list[float]]] = []

    def predict(self, observations):
        self.calls.append(observations)
        request_id = f"req-{len(self.calls)}"
        return [
            {"action": (i * 3) % 10, "request_id": request_id, "instance_index": i}
            for i in range(len(observations))
        ]


def test_simulator_rewards_exactly_the_users_it_asked_about(movielens_dir: Path):
    ratings = movielens.load_ratings_matrix(movielens_dir / "u.data")
    f = factorize(ratings, 5, 10)
    env = MovieLensBandit(f, batch_size=1, seed=3)
    endpoint, published = RecordingEndpoint(), []
    result = simulate(env, endpoint, published.append, users=20, per_request=8)
    assert [len(c) for c in endpoint.calls] == [8, 8, 4]
    asked = np.concatenate([np.array(c) for c in endpoint.calls])
    np.testing.assert_allclose(asked, f.user_features[result.users])
    rewards = {}
    for data in published:
        for record in messages.parse(data):
            rewards[(record.request_id, record.instance_index)] = record.reward
    expected = {}
    for call, observations in enumerate(endpoint.calls, start=1):
        for i, observation in enumerate(observations):
            user = int(np.flatnonzero((f.user_features == np.array(observation)).all(axis=1))[0])
            expected[(f"req-{call}", i)] = f.approx_ratings[user, (i * 3) % 10]
    assert rewards == pytest.approx(expected)


class RecordingLauncher:
    def __init__(self, busy: bool):
        self.busy, self.started = busy, 0

    def running(self) -> bool:
        return self.busy

    def start(self) -> bool:
        if self.busy:
            return False
        self.started += 1
        return True


def filled_warehouse(tmp_path: Path, rows: int) -> DuckDBWarehouse:
    w = DuckDBWarehouse(tmp_path / "w.duckdb")
    w.insert_predictions(
        [PredictionRecord(f"r{i}", 0, T0, "v", [1.0], 0, 1.0) for i in range(rows)]
    )
    w.insert_feedback([FeedbackRecord(f"r{i}", 0, T0, 1.0, "s") for i in range(rows)])
    return w


def test_trigger_waits_for_enough_examples_and_for_a_running_job(tmp_path: Path):
    warehouse = filled_warehouse(tmp_path, 5)
    idle, busy = RecordingLauncher(False), RecordingLauncher(True)
    assert (
        decide(warehouse, idle, 6, 1, 1) == "waiting: 5 new training examples, 6 needed"
        and idle.started == 0
    )
    assert (
        decide(warehouse, busy, 5, 1, 1).startswith("waiting: a re-training is running")
        and busy.started == 0
    )
    assert (
        decide(warehouse, idle, 5, 1, 1) == "started re-training on 5 new examples"
        and idle.started == 1
    )


def test_local_launcher_lock_follows_the_process(tmp_path: Path):
    """The lock is an flock the run's process holds: a pid left in the file by a run that
    died, or an empty file left by a launch that failed, blocks nothing."""
    launcher = LocalLauncher(str(tmp_path), [sys.executable, "-c", "import time; time.sleep(30)"])
    assert not launcher.running()
    launcher.lock.write_text("999999999")  # a run that died without cleaning up
    assert not launcher.running()
    launcher.lock.write_text("")  # a launch that failed before writing anything
    assert not launcher.running()
    assert launcher.start() and launcher.running() and not launcher.start()
    os.kill(int(launcher.lock.read_text()), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while launcher.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not launcher.running()


def test_pubsub_cloud_event_payload_is_decoded():
    data = {
        "message": {
            "data": base64.b64encode(b'{"a": 1}').decode(),
            "messageId": "42",
            "attributes": {"kind": "x"},
        }
    }
    message = pubsub_message(data)
    assert (message.message_id, json.loads(message.data), message.attributes) == (
        "42",
        {"a": 1},
        {"kind": "x"},
    )
