"""`make demo`: train a policy, serve it over HTTP, and show what it recommends.

Everything runs on this machine: the trainer in-process, the predictor as the very process
the Vertex AI container runs (`python -m app.predictor`, configured by AIP_* variables).
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from app.config import load_settings
from app.environment import MovieLensBandit
from app.local.processes import PYTHON, free_port, running
from app.trainer.flags import TrainingArgs
from app.trainer.run import build_environment, run

USERS_SHOWN = 8


def main() -> int:
    console = Console()
    settings = load_settings()
    artifacts = Path(settings.state_dir) / "demo"
    args = TrainingArgs(artifacts_dir=str(artifacts), training_loops=300)
    console.rule("[bold]recloop demo: train → serve → recommend")
    result = run(args, settings)
    console.print(
        f"trained LinUCB on {result.history.interactions:,} interactions "
        f"({result.history.interactions_per_second:,.0f}/s); "
        f"curves in {artifacts / 'training_curves.png'}"
    )

    env, _ = build_environment(args, settings)
    assert isinstance(env, MovieLensBandit)
    users = env.sample_users(USERS_SHOWN)
    observations = env.factorization.user_features[users]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server_env = {"AIP_STORAGE_URI": result.policy_dir, "AIP_HTTP_PORT": str(port)}
    with (
        console.status("starting the predictor (python -m app.predictor)…"),
        running(
            [PYTHON, "-m", "app.predictor"],
            server_env,
            base + "/health",
            log_path=artifacts / "predictor.log",
        ),
    ):
        body = {"instances": [{"observation": o} for o in observations.tolist()]}
        predictions = httpx.post(base + "/predict", json=body, timeout=10).json()["predictions"]

    table = Table(title=f"recommendations from policy {predictions[0]['policy_version']}")
    for column in (
        "user",
        "recommended movie",
        "its rating",
        "best movie's rating",
        "average movie",
    ):
        table.add_column(column)
    ratings = env.factorization.approx_ratings
    for user, prediction in zip(users, predictions, strict=True):
        table.add_row(
            str(user + 1),
            prediction["title"],
            f"{ratings[user, prediction['action']]:.1f}",
            f"{ratings[user].max():.1f}",
            f"{ratings[user].mean():.1f}",
        )
    console.print(table)
    chosen = ratings[users, [p["action"] for p in predictions]]
    console.print(
        f"mean rating of the recommendations {np.mean(chosen):.2f} "
        f"vs {ratings[users].mean():.2f} for a random movie"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
