"""The sequential MovieLens view: a time-ordered split, shared embeddings and a reward simulator.

Each user's ratings are sorted by time: the first 80% are what is known (train), the last 20%
are held out and answer for the items they cover. Everything learned from data uses train
ratings only: the agents' item embeddings (a rank-k SVD plus popularity and quality features)
and the simulator that answers for items a user never rated, a biased matrix factorisation fitted by
alternating least squares — a different model from the agents' embeddings, so that no agent
is graded by its own representation. Tests: tests/test_slate_environment.py
(`test_embeddings_and_simulator_never_see_held_out_ratings`, `test_each_users_earliest_…`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TRAIN_SHARE = 0.8
POSITIVE_RATING = 4
EMBEDDING_RANK = 16
SIMULATOR_RANK = 16
SIMULATOR_REGULARISATION = 15.0
SIMULATOR_SWEEPS = 6
# Pseudo-ratings at the global mean added to every movie's mean train rating (its quality).
QUALITY_SHRINKAGE = 10.0
TEST_USER_SHARE = 0.2


@dataclass(frozen=True)
class SlateData:
    train: np.ndarray  # users × movies: ratings from each user's first 80% (0 = none)
    held_out: np.ndarray  # users × movies: ratings from each user's last 20% (0 = none)
    train_positives: list[np.ndarray]  # per user, positively rated train items in time order
    item_embeddings: np.ndarray  # movies × dim, float32 (the agents' shared representation)
    simulated_ratings: np.ndarray  # users × movies, the simulator's rating of every pair
    train_users: np.ndarray
    test_users: np.ndarray

    @property
    def num_movies(self) -> int:
        return int(self.train.shape[1])

    @property
    def embedding_dim(self) -> int:
        return int(self.item_embeddings.shape[1])


def reward_of_rating(ratings: np.ndarray) -> np.ndarray:
    """(r − 3) / 2: −1 for one star, 0 for three, +1 for five."""
    return (np.asarray(ratings, dtype=np.float64) - 3.0) / 2.0


def time_split(events: np.ndarray, train_share: float = TRAIN_SHARE):
    """Dense train/held-out matrices and each user's positive train items, in time order.

    `events` holds (user id, item id, rating, timestamp) rows with 1-based ids. A user's
    earliest ⌈share·n⌉ ratings are train (at least one), the rest held out.
    """
    if not 0.0 < train_share < 1.0:
        raise ValueError(f"train_share={train_share} must be strictly between 0 and 1")
    users, movies = int(events[:, 0].max()), int(events[:, 1].max())
    order = np.lexsort((events[:, 1], events[:, 3], events[:, 0]))  # user, then time, then id
    events = events[order]
    train = np.zeros((users, movies))
    held_out = np.zeros((users, movies))
    positives: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * users
    starts = np.searchsorted(events[:, 0], np.arange(1, users + 2))
    for u in range(users):
        rows = events[starts[u] : starts[u + 1]]
        if len(rows) == 0:
            continue
        cut = max(1, int(np.ceil(train_share * len(rows))))
        first, last = rows[:cut], rows[cut:]
        train[u, first[:, 1] - 1] = first[:, 2]
        held_out[u, last[:, 1] - 1] = last[:, 2]
        positives[u] = first[first[:, 2] >= POSITIVE_RATING, 1] - 1
    return train, held_out, positives


def item_embeddings(train: np.ndarray, rank: int = EMBEDDING_RANK) -> np.ndarray:
    """Rank-k SVD item factors of the train ratings, log-popularity and quality, centred.

    Quality is the movie's mean train rating shrunk towards the global mean by
    QUALITY_SHRINKAGE pseudo-ratings: the simulator that answers for most listed movies pays
    mostly for it (its item bias), and SVD factors of a zero-filled matrix do not carry it.
    Every method sees the same vectors. Each column is scaled to unit RMS so that an actor
    pointing in any unit direction can weigh every feature, popularity and quality included.
    """
    rank = min(rank, min(train.shape) - 1)
    if rank < 1:
        raise ValueError(f"the train ratings ({train.shape}) are too small for an embedding")
    _, s, vh = np.linalg.svd(train, full_matrices=False)
    factors = vh[:rank].T * np.sqrt(s[:rank])
    popularity = np.log1p((train >= POSITIVE_RATING).sum(axis=0))[:, None]
    rated = (train > 0).sum(axis=0)
    mean = train.sum() / max(int(rated.sum()), 1)
    quality = ((train.sum(axis=0) + QUALITY_SHRINKAGE * mean) / (rated + QUALITY_SHRINKAGE))[
        :, None
    ]
    features = np.concatenate([factors, popularity, quality], axis=1)
    features[:, rank:] -= features[:, rank:].mean(axis=0)
    scale = np.sqrt(np.mean(features**2, axis=0))
    return (features / np.where(scale > 0, scale, 1.0)).astype(np.float32)


def fit_simulator(
    train: np.ndarray,
    rank: int = SIMULATOR_RANK,
    regularisation: float = SIMULATOR_REGULARISATION,
    sweeps: int = SIMULATOR_SWEEPS,
    seed: int = 0,
) -> np.ndarray:
    """Biased MF (r ≈ μ + b_u + b_i + p_u·q_i) by ALS on train ratings; the full rating matrix.

    Each sweep solves every user's (then every item's) ridge regression at once: the Gram
    matrices of all users are one product of the rated-mask with the items' outer products.
    """
    rng = np.random.default_rng(seed)
    rated = (train > 0).astype(np.float64)
    mean = train.sum() / rated.sum()
    users, movies = train.shape
    p = rng.normal(scale=0.1, size=(users, rank))
    q = rng.normal(scale=0.1, size=(movies, rank))
    b_user = np.zeros(users)
    b_item = np.zeros(movies)

    def solve(mask, targets, fixed):
        # Rows: one ridge problem each over `fixed` (the other side's [factors, 1]).
        dim = fixed.shape[1]
        outer = (fixed[:, :, None] * fixed[:, None, :]).reshape(len(fixed), -1)
        gram = (mask @ outer).reshape(-1, dim, dim) + regularisation * np.eye(dim)
        rhs = (mask * targets) @ fixed
        return np.linalg.solve(gram, rhs[:, :, None])[:, :, 0]

    ones_items = np.ones((movies, 1))
    ones_users = np.ones((users, 1))
    for _ in range(sweeps):
        solution = solve(rated, train - mean - b_item[None, :], np.hstack([q, ones_items]))
        p, b_user = solution[:, :rank], solution[:, rank]
        solution = solve(rated.T, (train - mean - b_user[:, None]).T, np.hstack([p, ones_users]))
        q, b_item = solution[:, :rank], solution[:, rank]
    return np.clip(mean + b_user[:, None] + b_item[None, :] + p @ q.T, 1.0, 5.0)


def build(events: np.ndarray, seed: int = 0, test_user_share: float = TEST_USER_SHARE) -> SlateData:
    """Split by time and by user, fit embeddings and simulator on train ratings only."""
    train, held_out, positives = time_split(events)
    active = np.flatnonzero(train.sum(axis=1) > 0)
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(active)
    test_count = max(1, round(test_user_share * len(shuffled)))
    if test_count >= len(shuffled):
        raise ValueError(f"{len(shuffled)} users are too few to split into train and test users")
    return SlateData(
        train=train,
        held_out=held_out,
        train_positives=positives,
        item_embeddings=item_embeddings(train),
        simulated_ratings=fit_simulator(train, seed=seed),
        train_users=np.sort(shuffled[test_count:]),
        test_users=np.sort(shuffled[:test_count]),
    )
