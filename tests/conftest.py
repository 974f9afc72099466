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
