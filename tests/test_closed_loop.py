"""The closed loop on the real local parts: Pub/Sub emulator, functions-framework, DuckDB,
kfp.local and the predictor over HTTP."""

import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from app.config import DataConfig, LoopConfig, Settings, load_settings
from app.local import pubsub_emulator
from app.local.stack import local_stack
from app.warehouse.duckdb_store import DuckDBWarehouse
from pipelines.run import STARTUP, run_local

EMULATOR = pytest.param(
    True,
    id="pubsub-emulator",
    marks=pytest.mark.skipif(
        not pubsub_emulator.available(),
        reason="Pub/Sub emulator not installed (apt-get install google-cloud-cli-pubsub-emulator)",
    ),
)
USERS = 24


def wait(condition, what: str, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := condition()) is not None:
            return value
        time.sleep(0.5)
    raise TimeoutError(what)


@pytest.mark.parametrize("use_emulator", [EMULATOR, pytest.param(False, id="direct-cloudevents")])
def test_served_predictions_with_rewards_become_training_examples_and_a_new_policy(
    movielens_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_emulator: bool
):
    for name in ("PUBSUB_EMULATOR_HOST", "RECLOOP__PUBSUB__PUSH_ENDPOINTS"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(
        data=DataConfig(movielens_dir=str(movielens_dir), download=False),
        loop=LoopConfig(simulated_users=USERS, min_new_examples=USERS, rank_k=5, num_actions=10),
    )
    with local_stack(tmp_path / "state", settings, use_emulator) as stack:
        assert stack.emulated == use_emulator
        run_local(STARTUP, load_settings())
        health = lambda: httpx.get(stack.health_url, timeout=5)  # noqa: E731
        first = wait(
            lambda: health().json().get("policy_version") if health().status_code == 200 else None,
            "first policy",
        )
        warehouse = DuckDBWarehouse(stack.env["RECLOOP__WAREHOUSE__DUCKDB_PATH"])
        assert warehouse.count_untrained(5, 10) == 0  # the start-up run used everything

        since = datetime.now(UTC)
        stack.tick(settings.pubsub.simulate_topic)
        sql = f"SELECT count(*) FROM predictions WHERE time >= TIMESTAMPTZ '{since.isoformat()}'"
        wait(
            lambda: (
                True
                if warehouse.query(sql)[0][0] >= USERS and warehouse.count_untrained(5, 10) >= USERS
                else None
            ),
            "served predictions and their rewards",
        )
        time.sleep(2)  # any duplicate delivery would land by now
        assert warehouse.query(sql)[0][0] == USERS
        assert warehouse.count_untrained(5, 10) == USERS  # N served + N rewards = N examples

        stack.tick(settings.pubsub.retrain_topic)
        second = wait(
            lambda: v if (v := health().json().get("policy_version")) != first else None,
            "second policy",
        )
        response = httpx.post(stack.predictor_url, json={"instances": [{"observation": [0.1] * 5}]})
        assert response.json()["predictions"][0]["policy_version"] == second
        runs = warehouse.query("SELECT policy_version, examples FROM training_runs ORDER BY time")
        assert [r[0] for r in runs] == [first, second]
        assert runs[1][1] == USERS
