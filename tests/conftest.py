"""Shared fixtures: small synthetic MovieLens-format data made in the test, never the real set."""

from __future__ import annotations

from pathlib import Path

import pytest

import app  # noqa: F401  (sets TF_USE_LEGACY_KERAS before any TensorFlow import)
from app.config import DataConfig, Settings
from tests.synthetic import write_movielens


@pytest.fixture(scope="session")
def movielens_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_movielens(tmp_path_factory.mktemp("ml"))


@pytest.fixture
def settings(movielens_dir: Path, tmp_path: Path) -> Settings:
    return Settings(
        artifacts_dir=str(tmp_path / "artifacts"),
        state_dir=str(tmp_path / "state"),
        data=DataConfig(movielens_dir=str(movielens_dir), download=False),
    )


@pytest.fixture(scope="session")
def trained_policy(movielens_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small LinUCB policy trained once for every predictor test."""
    from app.trainer.flags import TrainingArgs
    from app.trainer.run import run

    artifacts = tmp_path_factory.mktemp("trained")
    settings = Settings(
        artifacts_dir=str(artifacts),
        data=DataConfig(movielens_dir=str(movielens_dir), download=False),
    )
    args = TrainingArgs(
        training_loops=40, rank_k=5, num_actions=10, progress=False, policy_version="v-test-1"
    )
    return Path(run(args, settings).policy_dir)
