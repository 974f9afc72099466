"""`recloop train` then `recloop serve`, as a newcomer would type them."""

import os
import subprocess
from pathlib import Path

import httpx

from app.local.processes import PYTHON, free_port, running

RECLOOP = [PYTHON, "-m", "app.cli"]


def test_help_lists_the_commands():
    out = subprocess.run([*RECLOOP, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("train", "tune", "serve"):
        assert command in out
    train_help = subprocess.run(
        [*RECLOOP, "train", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "usage: recloop train" in train_help and "--agent-alpha" in train_help


def test_train_then_serve_answers_a_vertex_request(movielens_dir: Path, tmp_path: Path):
    env = {
        "MOVIELENS_DIR": str(movielens_dir),
        "RECLOOP__ARTIFACTS_DIR": str(tmp_path / "artifacts"),
    }
    trained = subprocess.run(
        [
            *RECLOOP,
            "train",
            "--training-loops",
            "20",
            "--rank-k",
            "5",
            "--num-actions",
            "8",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    assert trained.returncode == 0, trained.stderr
    assert "trained linucb" in trained.stdout
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running([*RECLOOP, "serve", "--port", str(port)], env, base + "/health"):
        response = httpx.post(
            base + "/predict", json={"instances": [{"observation": [0.5, -0.1, 0.2, 0.0, 1.0]}]}
        )
    assert response.status_code == 200
    (prediction,) = response.json()["predictions"]
    assert 0 <= prediction["action"] < 8
    assert prediction["title"] == f"Synthetic Movie {prediction['movie_id']} (1995)"


def test_bad_flag_exits_nonzero_with_the_reason():
    result = subprocess.run([*RECLOOP, "train", "--rank-k", "zero"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "--rank-k" in result.stderr
