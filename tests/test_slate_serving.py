"""The actor-critic's slate policy served by numpy scoring: parity with the saved policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.config import DataConfig, Settings
from app.slate.serving import scorer_from_saved, state_of
from app.trainer.flags import parse_args
from app.trainer.run import run
from tests.synthetic import write_movielens

MOVIES, K = 300, 10


@pytest.fixture(scope="module")
def slate_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = write_movielens(tmp_path_factory.mktemp("ml300"), movies=MOVIES)
    artifacts = tmp_path_factory.mktemp("slate-policy")
    settings = Settings(
        artifacts_dir=str(artifacts), data=DataConfig(movielens_dir=str(data), download=False)
    )
    args = parse_args(["--agent=actor_critic", "--training-loops=2", "--batch-size=4"])
    return Path(run(args, settings).policy_dir)


def test_served_scores_rank_as_the_saved_policy_chooses(slate_policy: Path):
    import tensorflow as tf
    from tf_agents.trajectories import time_step as ts

    saved = tf.saved_model.load(str(slate_policy))
    items = saved.model_variables[0].numpy()[:MOVIES]  # the policy's embeddings, pad row last
    scorer = scorer_from_saved(saved, items)
    rng = np.random.default_rng(0)
    histories = np.array(
        [
            [MOVIES, MOVIES, MOVIES, MOVIES, MOVIES],
            [MOVIES, MOVIES, 3, 7, 11],
            *rng.choice(MOVIES, size=(6, 5), replace=False).tolist(),
        ]
    )
    chosen = saved.action(ts.restart(tf.constant(histories, tf.int32), len(histories))).action
    scores = scorer.scores(state_of(histories, items), None)
    for row, history in enumerate(histories):
        scores[row, history[history < MOVIES]] = -np.inf  # the saved policy excludes them
    served = np.argsort(-scores, axis=1, kind="stable")[:, :K]
    np.testing.assert_array_equal(served, chosen.numpy())
