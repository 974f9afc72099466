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
from app.exploration import GREEDY, SOFTMAX, Exploration, one_hot, probabilities, sample
from app.linear import UCB, LinearState
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

    def scores(self, observations: np.ndarray) -> np.ndarray | None:
        """Deterministic per-arm scores whose first maximum is the policy's choice, or None."""


class ServingPolicy:
    def __init__(
        self,
        metadata: PolicyMetadata,
        scorer: Scorer,
        uri: str,
        exploration: Exploration | None = None,
    ):
        self.metadata = metadata
        self.scorer = scorer
        self.uri = uri
        self.exploration = exploration or Exploration()
        # An open canary: the candidate and the share of requests it serves.
        self.canary: tuple[ServingPolicy, float] | None = None
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
        # Served greedily, LinUCB is deterministic (propensity 1); LinTS's and the neural
        # agents' own sampling have no closed form here, so it stays unknown.
        self.greedy_propensity: float | None = 1.0 if metadata.agent == LINUCB else None

    def for_request(self, rng: np.random.Generator) -> ServingPolicy:
        """The version that answers one request (split by request while a canary is open)."""
        if self.canary is not None and rng.random() < self.canary[1]:
            return self.canary[0]
        return self

    @property
    def rank_k(self) -> int:
        return self.metadata.rank_k

    @property
    def version(self) -> str:
        return self.metadata.policy_version

    def actions(self, observations: np.ndarray) -> np.ndarray:
        """The TF-Agents policy's own choice (no exploration)."""
        return self.scorer.actions(observations)

    def distribution(self, observations: np.ndarray) -> np.ndarray:
        """The served action distribution (rows × arms) under this policy's exploration."""
        scores = self.scorer.scores(observations)
        if scores is None:
            return probabilities(
                one_hot(self.actions(observations), self.metadata.num_actions), self.exploration
            )
        return probabilities(scores, self.exploration)

    def choose(
        self, observations: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The actions served and the exact probability of each (None: unknown)."""
        if self.exploration.kind == GREEDY:
            actions = self.actions(observations)
            if self.greedy_propensity is None:
                return actions, None
            return actions, np.full(len(actions), self.greedy_propensity)
        return sample(self.distribution(observations), rng)


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

    def scores(self, observations: np.ndarray) -> np.ndarray:
        """LinUCB: its upper confidence bounds (argmax = its action); LinTS: the posterior
        mean (its samples have no closed-form choice probability)."""
        with np.errstate(over="ignore", invalid="ignore"):
            mean, variance = self.model.mean_and_variance(observations)
            scores = (
                mean + self.model.alpha * np.sqrt(variance) if self.model.strategy == UCB else mean
            )
        _refuse_non_finite(scores)
        return scores


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

    def scores(self, observations: np.ndarray) -> None:
        return None


def load_policy(
    uri: str, fast_path: bool = True, exploration: Exploration | None = None
) -> ServingPolicy:
    """Loads a policy folder (local path or gs://) that `recloop train` wrote; `exploration`
    is how it will be served (default: greedy, the policy's own choice)."""
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
        if exploration is not None and exploration.kind == SOFTMAX:
            raise PolicyStoreError(
                f"{uri} holds a {metadata.agent} policy, which exposes no scores: "
                "serve it greedy or epsilon_greedy, not softmax"
            )
        scorer = SavedModelScorer(saved)
    return ServingPolicy(metadata, scorer, uri, exploration)
