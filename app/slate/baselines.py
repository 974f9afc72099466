"""Baselines on the slate environment: random, most popular and per-arm LinUCB (myopic).

Per-arm LinUCB scores each movie by one shared linear model over interaction features u ⊙ v
(u = the mean embedding of the state's movies, v = the movie's embedding): concatenating u and
v instead would add the same user term to every movie and personalise nothing. It learns from
every movie of every list (reward (r − 3)/2) and never plans beyond the next list.
Tests: tests/test_slate_agent.py.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from app.environment import GLOBAL_KEY, PER_ARM_KEY
from app.linear import UCB, LinearBandit
from app.slate.data import POSITIVE_RATING, SlateData
from app.slate.environment import top_k

LINUCB_ALPHA = 0.5
LINUCB_TIKHONOV = 1.0


class SlateMethod(Protocol):
    name: str

    def act(self, observations: np.ndarray, excluded: np.ndarray, k: int) -> np.ndarray:
        """batch × k distinct, allowed movies, best first."""

    def learn(
        self,
        observations: np.ndarray,
        slates: np.ndarray,
        rewards: np.ndarray,
        next_observations: np.ndarray,
        done: bool,
    ) -> None:
        """Takes one step's transitions (rewards batch × k)."""


class RandomSlates:
    name = "random"

    def __init__(self, seed: int | None = None):
        self.rng = np.random.default_rng(seed)

    def act(self, observations: np.ndarray, excluded: np.ndarray, k: int) -> np.ndarray:
        return top_k(self.rng.random(excluded.shape), excluded, k)

    def learn(self, *transition) -> None:
        pass


class PopularSlates:
    """Movies ranked by how many users rated them positively in train."""

    name = "popularity"

    def __init__(self, data: SlateData):
        counts = (data.train >= POSITIVE_RATING).sum(axis=0).astype(np.float64)
        # Ties broken by the mean train rating, then by index (stable).
        rated = np.maximum((data.train > 0).sum(axis=0), 1)
        self.scores = counts + 1e-3 * data.train.sum(axis=0) / rated

    def act(self, observations: np.ndarray, excluded: np.ndarray, k: int) -> np.ndarray:
        return top_k(np.broadcast_to(self.scores, excluded.shape), excluded, k)

    def learn(self, *transition) -> None:
        pass


class PerArmLinUCB:
    """Lists by the UCB score while it learns; by the mean alone once `exploring` is False,
    as `app.slate.run.evaluate` sets it (greedy evaluation, like the actors';
    tests/test_slate_agent.py::test_per_arm_linucb_is_evaluated_by_its_mean_without_the_bonus)."""

    name = "linucb_per_arm"

    def __init__(
        self,
        item_embeddings: np.ndarray,
        history_length: int,
        alpha: float = LINUCB_ALPHA,
        tikhonov_weight: float = LINUCB_TIKHONOV,
        seed: int | None = None,
    ):
        self.items = item_embeddings.astype(np.float64)
        self.history_length = history_length
        dim = self.items.shape[1]
        # One shared model over the arm features alone (global part of width 0).
        self.model = LinearBandit(
            self.items.shape[0],
            0,
            alpha=alpha,
            tikhonov_weight=tikhonov_weight,
            strategy=UCB,
            per_arm=True,
            arm_dim=dim,
            seed=seed,
        )
        self.exploring = True

    def user_vectors(self, observations: np.ndarray) -> np.ndarray:
        history = observations.reshape(len(observations), self.history_length, -1)
        present = np.any(history != 0, axis=2, keepdims=True)
        return (history * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1)

    def _features(self, observations: np.ndarray, movies: np.ndarray | None = None) -> dict:
        u = self.user_vectors(observations)
        v = self.items[None, :, :] if movies is None else self.items[movies]
        return {GLOBAL_KEY: np.zeros((len(u), 0)), PER_ARM_KEY: u[:, None, :] * v}

    def act(self, observations: np.ndarray, excluded: np.ndarray, k: int) -> np.ndarray:
        features = self._features(observations)
        if self.exploring:
            return top_k(self.model.scores(features), excluded, k)
        return top_k(self.model.mean_and_variance(features)[0], excluded, k)

    def learn(self, observations, slates, rewards, next_observations, done) -> None:
        features = self._features(observations, slates)
        rows, k = slates.shape
        flat = {
            GLOBAL_KEY: np.zeros((rows * k, 0)),
            PER_ARM_KEY: features[PER_ARM_KEY].reshape(rows * k, 1, -1),
        }
        self.model.update(flat, np.zeros(rows * k, dtype=np.int64), rewards.reshape(-1))
