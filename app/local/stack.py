"""The whole platform on this machine: Pub/Sub emulator, the three functions under
functions-framework, and the predictor, wired as they are in cloud.

    predictor ──prediction logs──▶ logger ──▶ DuckDB ◀── ingester (kfp.local)
    simulator ──feedback────────▶ logger        ▲
    scheduler ticks ──▶ simulator, trigger ──▶ re-training pipeline ──▶ policies/CURRENT

Without the emulator, publishers post the same CloudEvents to the functions directly
(`pubsub.push_endpoints`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from app.config import (
    PROFILE_VARIABLE,
    SettingPath,
    Settings,
    env_name,
    env_value,
    load_settings,
)
from app.local import pubsub_emulator
from app.local.processes import PYTHON, free_port, port_open, running
from app.paths import join
from app.transport import Publisher, publisher_for

PROJECT = "recloop-local"
DUCKDB_PATH: SettingPath = ("warehouse", "duckdb_path")
FUNCTIONS_SOURCE = Path(__file__).resolve().parent.parent / "functions" / "main.py"


@dataclass(frozen=True)
class LocalStack:
    state_dir: Path
    predictor_url: str
    health_url: str
    policies_dir: str
    env: dict[str, str]
    publisher: Publisher
    emulated: bool  # False: no emulator, messages go to the functions directly

    def tick(self, topic: str) -> None:
        """What Cloud Scheduler does: publish an (empty) message to a topic."""
        self.publisher.publish(topic, b"{}").result(timeout=60)


def stack_environment(state_dir: Path, predictor_port: int, settings: Settings) -> dict[str, str]:
    """Configuration every local process shares, as the variables app/config.py reads."""
    data = {"MOVIELENS_DIR": settings.data.movielens_dir} if settings.data.movielens_dir else {}
    values: dict[SettingPath, object] = {
        ("state_dir",): state_dir,
        ("artifacts_dir",): state_dir / "artifacts",
        DUCKDB_PATH: state_dir / "warehouse.duckdb",
        ("pubsub", "project_id"): PROJECT,
        ("pubsub", "publish_predictions"): True,
        ("loop", "endpoint_url"): f"http://127.0.0.1:{predictor_port}/predict",
        ("loop", "pipeline_root"): state_dir / "pipeline-root",
        ("loop", "simulated_users"): settings.loop.simulated_users,
        ("loop", "min_new_examples"): settings.loop.min_new_examples,
        ("loop", "rank_k"): settings.loop.rank_k,
        ("loop", "num_actions"): settings.loop.num_actions,
        # Served with known propensities, so that the Evaluator can judge candidates.
        ("serving", "exploration"): settings.serving.exploration,
        ("serving", "epsilon"): settings.serving.epsilon,
        ("serving", "temperature"): settings.serving.temperature,
    }
    return {
        **data,
        PROFILE_VARIABLE: "local",
        **{env_name(path): env_value(v) for path, v in values.items()},
    }


@contextlib.contextmanager
def local_stack(
    state_dir: Path,
    settings: Settings,
    use_emulator: bool = True,
    config_file: Path | None = None,
) -> Iterator[LocalStack]:
    """Starts everything; on exit (also on Ctrl-C) stops every process group it started.
    `config_file` becomes every process's RECLOOP_CONFIG (the demo's switches live there)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    logs = state_dir / "logs"
    logs.mkdir(exist_ok=True)
    p = settings.pubsub
    routes = {
        "logger": [p.prediction_logs_topic, p.feedback_topic],
        "simulator": [p.simulate_topic],
        "trigger": [p.retrain_topic],
    }
    ports = {target: free_port() for target in routes}
    predictor_port = free_port()
    env = stack_environment(state_dir, predictor_port, settings)
    if config_file is not None:
        env["RECLOOP_CONFIG"] = str(config_file)
    emulated = use_emulator and pubsub_emulator.available()
    with contextlib.ExitStack() as stack:
        if emulated:
            host = stack.enter_context(
                pubsub_emulator.emulator(
                    PROJECT, state_dir / "pubsub", logs / "pubsub-emulator.log"
                )
            )
            env["PUBSUB_EMULATOR_HOST"] = host
        else:
            env[env_name(("pubsub", "push_endpoints"))] = ",".join(
                f"{topic}=http://127.0.0.1:{ports[target]}/"
                for target, topics in routes.items()
                for topic in topics
            )
        # This process publishes ticks and runs kfp.local too; restore its environment after.
        previous = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        stack.callback(_restore_environment, previous)
        stack.callback(_stop_retraining, state_dir)
        if emulated:
            pubsub_emulator.create_topics(
                PROJECT, [t for topics in routes.values() for t in topics]
            )

        for target, topics in routes.items():
            port = ports[target]
            command = [
                PYTHON,
                "-m",
                "functions_framework",
                f"--target={target}",
                f"--source={FUNCTIONS_SOURCE}",
                "--signature-type=cloudevent",
                "--host=127.0.0.1",
                f"--port={port}",
            ]
            stack.enter_context(
                running(
                    command,
                    env,
                    functools.partial(port_open, port),
                    log_path=logs / f"{target}.log",
                )
            )
            if emulated:
                for topic in topics:
                    pubsub_emulator.push(
                        PROJECT, topic, f"{topic}-to-{target}", f"http://127.0.0.1:{port}/"
                    )

        policies = join(env[env_name(("artifacts_dir",))], "policies")
        predictor_env = {**env, "AIP_STORAGE_URI": policies, "AIP_HTTP_PORT": str(predictor_port)}
        stack.enter_context(
            running(
                [PYTHON, "-m", "app.predictor"],
                predictor_env,
                functools.partial(port_open, predictor_port),
                log_path=logs / "predictor.log",
            )
        )
        base = f"http://127.0.0.1:{predictor_port}"
        publisher = publisher_for(load_settings().pubsub)
        yield LocalStack(
            state_dir, base + "/predict", base + "/health", policies, env, publisher, emulated
        )


def _restore_environment(previous: dict[str, str | None]) -> None:
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _stop_retraining(state_dir: Path) -> None:
    """A re-training started by the Trigger runs in a session of its own: stop it too."""
    lock = state_dir / "retraining.lock"
    with contextlib.suppress(ValueError, OSError):
        os.killpg(int(lock.read_text().strip()), signal.SIGTERM)
