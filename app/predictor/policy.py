"""A policy loaded for serving, and its fast path.

The SavedModel written by PolicySaver is the artifact. For linear agents the predictor reads
its variables once and scores with numpy (microseconds per request); other agents are served
by calling the SavedModel itself. Parity tests check the numpy path against `action()`.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import orjson

from app.agents import LINEAR_AGENTS, LINUCB, AgentSpec, linear_bandit
from app.linear import LinearState
from app.policy_store import (
    PolicyMetadata,
    PolicyStoreError,
    linear_state_from_variables,
    read_metadata,
)


class NonFiniteScores(ValueError):
    """Some observation rows give scores that are not finite (values too large to score)."""

    def __init__(self, rows: np.ndarray):
        self.rows = [int(r) for r in rows]
        super().__init__(f"observation rows {self.rows} give scores that are not finite")


def _refuse_non_finite(values: np.ndarray) -> None:
    bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if bad.any():
        raise NonFiniteScores(np.flatnonzero(bad))


class Scorer(Protocol):
    def actions(self, observations: np.ndarray) -> np.ndarray: ...


class ServingPolicy:
    def __init__(self, metadata: PolicyMetadata, scorer: Scorer, uri: str):
        self.metadata = metadata
        self.scorer = scorer
        self.uri = uri
        titles = metadata.titles or [""] * metadata.num_actions
        movie_ids = metadata.movie_ids or list(range(1, metadata.num_actions + 1))
        # One dict per action, copied per response: building a response is a list lookup.
        self.predictions: list[dict[str, Any]] = [
            {
                "action": a,
                "movie_id": movie_ids[a],
                "title": titles[a],
                "policy_version": metadata.policy_version,
            }
            for a in range(metadata.num_actions)
        ]
        # The same, serialised without the closing brace: responses append to it.
        self.fragments = [orjson.dumps(p)[:-1] for p in self.predictions]
        # Probability of the served action: LinUCB is deterministic; sampling and ε-greedy
        # policies have no closed form here, so it stays unknown.
        self.propensity: float | None = 1.0 if metadata.agent == LINUCB else None

    @property
    def rank_k(self) -> int:
        return self.metadata.rank_k

    @property
    def version(self) -> str:
        return self.metadata.policy_version

    def actions(self, observations: np.ndarray) -> np.ndarray:
        return self.scorer.actions(observations)


class LinearScorer:
    def __init__(self, metadata: PolicyMetadata, state: LinearState):
        spec = AgentSpec(
            metadata.agent,
            metadata.num_actions,
            metadata.rank_k,
            metadata.alpha,
            metadata.tikhonov_weight,
        )
        self.model = linear_bandit(spec)
        self.model.set_state(state)

    def actions(self, observations: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            scores = self.model.scores(observations)
        _refuse_non_finite(scores)
        return np.argmax(scores, axis=1)


class SavedModelScorer:
    """Calls the TF-Agents policy itself: the general (slow) path."""

    def __init__(self, saved: Any):
        self.saved = saved

    def actions(self, observations: np.ndarray) -> np.ndarray:
        import tensorflow as tf
        from tf_agents.trajectories import time_step as ts

        # The SavedModel hides its scores; a row whose squared norm overflows cannot score.
        with np.errstate(over="ignore", invalid="ignore"):
            _refuse_non_finite(np.sum(observations * observations, axis=1))
        step = ts.restart(tf.constant(observations, tf.float64), batch_size=len(observations))
        return self.saved.action(step).action.numpy()


def load_policy(uri: str, fast_path: bool = True) -> ServingPolicy:
    """Loads a policy folder (local path or gs://) that `recloop train` wrote."""
    import tensorflow as tf
    import tensorflow_probability  # noqa: F401  (registers the distribution specs the SavedModel uses)

    metadata = read_metadata(uri)
    if metadata.per_arm:
        raise PolicyStoreError(
            f"{uri} holds a per-arm policy; the predictor serves global-feature policies"
        )
    saved = tf.saved_model.load(uri)
    scorer: Scorer
    if fast_path and metadata.agent in LINEAR_AGENTS:
        num_models = metadata.num_actions
        scorer = LinearScorer(
            metadata, linear_state_from_variables(saved.model_variables, num_models)
        )
    else:
        scorer = SavedModelScorer(saved)
    return ServingPolicy(metadata, scorer, uri)
