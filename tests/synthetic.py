"""Synthetic MovieLens-format data made in the test: the real set is never shipped."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

NUM_USERS = 60
NUM_MOVIES = 30


def write_movielens(
    folder: Path, seed: int = 7, users: int = NUM_USERS, movies: int = NUM_MOVIES
) -> Path:
    """A u.data/u.item pair with low-rank structure, so that bandits have something to learn."""
    rng = np.random.default_rng(seed)
    taste = rng.normal(size=(users, 3)) @ rng.normal(size=(3, movies))
    ratings = np.clip(np.round(3 + taste), 1, 5).astype(int)
    rated = rng.random((users, movies)) < 0.6
    rated[:, 0] = True  # every user rated something among the first movies
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        f"{u + 1}\t{m + 1}\t{ratings[u, m]}\t{881250949 + u * movies + m}"
        for u in range(users)
        for m in range(movies)
        if rated[u, m]
    ]
    (folder / "u.data").write_text("\n".join(lines) + "\n")
    (folder / "u.item").write_text(
        "".join(
            f"{m + 1}|Synthetic Movie {m + 1} (1995)|01-Jan-1995||http://example|0\n"
            for m in range(movies)
        ),
        encoding="latin-1",
    )
    return folder


def real_movielens() -> Path | None:
    folder = os.environ.get("MOVIELENS_DIR")
    return Path(folder) if folder and (Path(folder) / "u.data").is_file() else None


requires_real_movielens = pytest.mark.skipif(
    real_movielens() is None,
    reason="MovieLens 100K not available (set MOVIELENS_DIR to the ml-100k folder)",
)
