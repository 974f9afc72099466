"""What every chaos scenario shares: interactions, delivery, re-training, accounting."""

from __future__ import annotations

import base64
import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from app import messages
from app.agents import LINUCB, AgentSpec, linear_bandit
from app.config import env_name
from app.deployer import pointer
from app.functions import logger
from app.loop import steps
from app.loop.parameters import PipelineParameters
from app.paths import join
from app.warehouse.duckdb_store import DuckDBWarehouse

RANK, ACTIONS = 5, 10
ALPHA, TIKHONOV, BATCH = 1.0, 1.0, 16
PER_REQUEST = 8


class Crash(RuntimeError):
    """An injected failure: the process 'dies' here (no state survives but what was stored)."""


@dataclass(frozen=True)
class Interaction:
    request_id: str
    instance_index: int
    observation: list[float]
    action: int
    reward: float

    @property
    def key(self) -> tuple[str, int]:
        return (self.request_id, self.instance_index)


def interactions(prefix: str, count: int, seed: int = 0) -> list[Interaction]:
    rng = np.random.default_rng(seed)
    made = []
    for i in range(count):
        made.append(
            Interaction(
                f"{prefix}-{i // PER_REQUEST:05d}",
                i % PER_REQUEST,
                np.round(rng.normal(size=RANK), 4).tolist(),
                int(rng.integers(ACTIONS)),
                float(rng.integers(1, 6)),
            )
        )
    return made


def by_request(items: list[Interaction]) -> dict[str, list[Interaction]]:
    grouped: dict[str, list[Interaction]] = {}
    for item in items:
        grouped.setdefault(item.request_id, []).append(item)
    return grouped


def prediction_logs(items: list[Interaction], time: datetime | None = None) -> list[bytes]:
    """One prediction-log message per request, as the predictor publishes them."""
    when = time or datetime.now(UTC)
    return [
        messages.prediction_log(
            request_id,
            when,
            "v-chaos",
            [
                {
                    "instance_index": i.instance_index,
                    "observation": i.observation,
                    "action": i.action,
                    "propensity": 1.0,
                }
                for i in rows
            ],
        )
        for request_id, rows in by_request(items).items()
    ]


def feedback(items: list[Interaction], time: datetime | None = None) -> list[bytes]:
    """One feedback message per request, as the Simulator publishes them."""
    return [
        messages.feedback(request_id, [(i.instance_index, i.reward) for i in rows], "chaos", time)
        for request_id, rows in by_request(items).items()
    ]


def cloud_event(data: bytes) -> dict:
    """The `messagePublished` data a push delivery carries."""
    return {"message": {"data": base64.b64encode(data).decode(), "messageId": uuid.uuid4().hex}}


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Configuration of the in-process pipeline steps (they read settings as in a pipeline)."""
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


@dataclass
class Loop:
    """One warehouse, one artifacts folder, and the re-training steps run on them directly."""

    state: Path
    runs: list[str] = field(default_factory=list)

    @property
    def warehouse_path(self) -> Path:
        return self.state / "warehouse.duckdb"

    @property
    def artifacts(self) -> str:
        return str(self.state / "artifacts")

    @property
    def policies(self) -> str:
        return join(self.artifacts, steps.POLICIES)

    def env(self, lock_wait_s: float = 30.0) -> dict[str, str]:
        return {
            env_name(("profile",)): "local",
            env_name(("state_dir",)): str(self.state),
            env_name(("artifacts_dir",)): self.artifacts,
            env_name(("warehouse", "duckdb_path")): str(self.warehouse_path),
            env_name(("warehouse", "lock_wait_seconds")): str(lock_wait_s),
        }

    @property
    def warehouse(self) -> DuckDBWarehouse:
        return DuckDBWarehouse(self.warehouse_path)

    def deliver(self, data: list[bytes]) -> None:
        """Through the Logger's handler, in this process."""
        for message in data:
            outcome = logger.handle(cloud_event(message), self.warehouse)
            if outcome.startswith("rejected"):
                raise ValueError(outcome)

    def parameters(self, max_rows: int = 100_000) -> PipelineParameters:
        return PipelineParameters(
            training_artifacts_dir=self.artifacts,
            bigquery_max_rows=max_rows,
            batch_size=BATCH,
            rank_k=RANK,
            num_actions=ACTIONS,
            tikhonov_weight=TIKHONOV,
            agent_alpha=ALPHA,
        )

    def ingest(self, run_id: str, max_rows: int = 100_000) -> None:
        with environment(self.env()):
            steps.run_ingester(
                output_dir=self._dir(run_id, "examples"),
                parameters=self.parameters(max_rows),
                run_id=run_id,
            )

    def train(self, run_id: str) -> None:
        with environment(self.env()):
            steps.run_trainer(
                examples_dir=self._dir(run_id, "examples"),
                policy_dir=self._dir(run_id, "policy"),
                parameters=self.parameters(),
            )

    def deploy(self, run_id: str) -> str:
        with environment(self.env()):
            version = steps.run_deployer(
                policy_dir=self._dir(run_id, "policy"),
                examples_dir=self._dir(run_id, "examples"),
                parameters=self.parameters(),
            )
        if run_id not in self.runs:
            self.runs.append(run_id)
        return version

    def retrain(self, run_id: str, max_rows: int = 100_000) -> str:
        """Ingester → Trainer → Deployer of the re-training pipeline, for one run id."""
        self.ingest(run_id, max_rows)
        self.train(run_id)
        return self.deploy(run_id)

    def _dir(self, run_id: str, name: str) -> str:
        return str(self.state / "runs" / run_id / name)

    def drain(self, prefix: str = "drain", max_rows: int = 100_000) -> None:
        """Re-trains until no untrained example is left (what the Trigger's ticks do)."""
        for attempt in range(20):
            if self.warehouse.count_untrained(RANK, ACTIONS) == 0:
                return
            self.retrain(f"{prefix}-{attempt}", max_rows)
        raise RuntimeError("examples are still untrained after 20 runs")


@dataclass(frozen=True)
class Accounting:
    interactions: int
    trained_once: int
    lost: int
    duplicated: int
    statistics_match: bool


def account(loop: Loop, items: list[Interaction]) -> Accounting:
    """Per interaction: how many ledger rows name it; and whether the served policy's LinUCB
    statistics are exactly those of training on every interaction once."""
    rows = loop.warehouse.query(
        "SELECT request_id, instance_index, count(*) FROM trained_examples GROUP BY ALL"
    )
    counts = {(r, i): n for r, i, n in rows}
    ledger_total = sum(counts.values())
    keys = [i.key for i in items]
    lost = sum(1 for k in keys if counts.get(k, 0) == 0)
    in_ledger_twice = sum(1 for k in keys if counts.get(k, 0) > 1)
    spec = AgentSpec(LINUCB, ACTIONS, RANK, ALPHA, TIKHONOV)
    expected = linear_bandit(spec)
    if items:
        expected.update(
            np.array([i.observation for i in items], dtype=np.float32).astype(np.float64),
            np.array([i.action for i in items]),
            np.array([i.reward for i in items], dtype=np.float32),
        )
    served_samples = 0
    match = False
    if pointer.current_version(loop.policies):
        from app.predictor.policy import load_policy

        state = load_policy(pointer.resolve(loop.policies)).scorer.model.state  # type: ignore[attr-defined]
        served_samples = round(float(state.num_samples.sum()))
        match = bool(
            np.allclose(state.cov_matrix, expected.state.cov_matrix, rtol=1e-4, atol=1e-4)
            and np.allclose(state.data_vector, expected.state.data_vector, rtol=1e-4, atol=1e-4)
        )
    elif not items:
        match = True
    counted_twice = max(0, served_samples - ledger_total) + in_ledger_twice
    once = sum(1 for k in keys if counts.get(k, 0) == 1)
    return Accounting(len(items), max(0, once - counted_twice), lost, counted_twice, match)
