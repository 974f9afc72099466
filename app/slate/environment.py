"""The sequential, list-wise MovieLens environment, vectorised over a batch of users.

State: the embeddings of a user's last N positively rated movies (zeros where fewer), most
recent last. Action: K distinct movies from the full catalogue, none the user rated in train
or was already shown this episode. Reward of each movie: (r − 3)/2 with r the user's held-out
rating if there is one, else the simulator's rating (`app.slate.data`). A movie the user likes
(r ≥ 4; a simulated rating ≥ 3.5 rounds to 4) is consumed: it enters the state. An episode
lasts `horizon` lists. Tests: tests/test_slate_environment.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.slate.data import POSITIVE_RATING, SlateData, reward_of_rating

HISTORY_LENGTH = 5
SLATE_SIZE = 10
HORIZON = 10
SIMULATED_LIKE = POSITIVE_RATING - 0.5


class SlateError(ValueError):
    """A slate that breaks the rules: wrong shape, unknown movie, a repeat, or an excluded one."""


@dataclass(frozen=True)
class SlateStep:
    rewards: np.ndarray  # batch × K, per movie
    liked: np.ndarray  # batch × K, bool
    done: bool


class SlateEnvironment:
    def __init__(
        self,
        data: SlateData,
        users: np.ndarray,
        *,
        slate_size: int = SLATE_SIZE,
        horizon: int = HORIZON,
        history_length: int = HISTORY_LENGTH,
        seed: int | None = None,
    ):
        if not 1 <= slate_size <= data.num_movies // 2:
            raise ValueError(f"slate_size={slate_size} must be between 1 and half the catalogue")
        if horizon < 1 or history_length < 1:
            raise ValueError("horizon and history_length must be ≥ 1")
        if len(users) == 0:
            raise ValueError("no users to play episodes with")
        self.data = data
        self.users = np.asarray(users, dtype=np.int64)
        self.slate_size = slate_size
        self.horizon = horizon
        self.history_length = history_length
        self.rng = np.random.default_rng(seed)
        movies = data.num_movies
        # Row `movies` is the zero vector that pads short histories.
        self.padded_embeddings = np.vstack(
            [data.item_embeddings, np.zeros((1, data.embedding_dim), np.float32)]
        )
        known = data.held_out > 0
        rewards = np.where(known, reward_of_rating(data.held_out), 0.0)
        simulated = reward_of_rating(data.simulated_ratings)
        self._rewards = np.where(known, rewards, simulated)
        self._liked = np.where(
            known, data.held_out >= POSITIVE_RATING, data.simulated_ratings >= SIMULATED_LIKE
        )
        self._initial_history = np.full((len(data.train), history_length), movies, np.int64)
        for u, items in enumerate(data.train_positives):
            recent = items[-history_length:]
            if len(recent):
                self._initial_history[u, -len(recent) :] = recent
        self._batch_users = np.zeros(0, dtype=np.int64)
        self.history = np.zeros((0, history_length), dtype=np.int64)
        self.excluded = np.zeros((0, movies), dtype=bool)
        self.t = 0

    @property
    def state_dim(self) -> int:
        return self.history_length * self.data.embedding_dim

    @property
    def batch_users(self) -> np.ndarray:
        return self._batch_users

    def reset(self, batch_size: int | None = None, users: np.ndarray | None = None) -> np.ndarray:
        """Starts episodes for `users` (or `batch_size` users drawn without replacement)."""
        if users is None:
            if batch_size is None or not 1 <= batch_size <= len(self.users):
                raise ValueError(f"batch_size must be between 1 and the {len(self.users)} users")
            users = self.rng.choice(self.users, size=batch_size, replace=False)
        self._batch_users = np.asarray(users, dtype=np.int64)
        self.history = self._initial_history[self._batch_users].copy()
        self.excluded = self.data.train[self._batch_users] > 0
        self.t = 0
        return self.observe()

    def observe(self) -> np.ndarray:
        """batch × (N·d) float32: the history's embeddings, oldest first."""
        return self.padded_embeddings[self.history].reshape(len(self.history), -1)

    def best_slates(self) -> np.ndarray:
        """The K allowed movies with the highest true reward for each user now: the one-step
        oracle list that the trainer's regret is measured against
        (tests/test_slate_trainer.py::test_regret_is_measured_against_the_oracle_list)."""
        return top_k(self._rewards[self._batch_users], self.excluded, self.slate_size)

    def rewards_of(self, slates: np.ndarray) -> np.ndarray:
        """batch × K: what each listed movie would earn (no state changes)."""
        return self._rewards[self._batch_users[:, None], slates]

    def step(self, slates: np.ndarray) -> SlateStep:
        slates = self._validate(slates)
        rows = np.arange(len(slates))[:, None]
        rewards = self.rewards_of(slates)
        liked = self._liked[self._batch_users[:, None], slates]
        self.excluded[rows, slates] = True
        # Consumed movies enter the state in slate order (the first listed is seen first).
        for k in range(slates.shape[1]):
            take = liked[:, k]
            if take.any():
                self.history[take] = np.concatenate(
                    [self.history[take, 1:], slates[take, k : k + 1]], axis=1
                )
        self.t += 1
        return SlateStep(rewards=rewards, liked=liked, done=self.t >= self.horizon)

    def _validate(self, slates: np.ndarray) -> np.ndarray:
        slates = np.asarray(slates)
        expected = (len(self._batch_users), self.slate_size)
        if slates.shape != expected or not np.issubdtype(slates.dtype, np.integer):
            raise SlateError(
                f"slates must be integer {expected}, got {slates.dtype} {slates.shape}"
            )
        if self.t >= self.horizon:
            raise SlateError("the episode is over; call reset()")
        if slates.min() < 0 or slates.max() >= self.data.num_movies:
            raise SlateError(f"movie indices must be in 0..{self.data.num_movies - 1}")
        ordered = np.sort(slates, axis=1)
        if np.any(ordered[:, 1:] == ordered[:, :-1]):
            raise SlateError("a slate repeats a movie")
        if np.any(self.excluded[np.arange(len(slates))[:, None], slates]):
            raise SlateError("a slate holds a movie rated in train or already shown this episode")
        return slates.astype(np.int64)


def top_k(scores: np.ndarray, excluded: np.ndarray, k: int) -> np.ndarray:
    """The k best-scoring allowed movies per row, best first (no repeats by construction)."""
    scores = np.where(excluded, -np.inf, scores)
    best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, best, axis=1), axis=1, kind="stable")
    return np.take_along_axis(best, order, axis=1)
