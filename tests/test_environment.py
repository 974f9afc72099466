from pathlib import Path

import numpy as np
import pytest

from app import movielens
from app.environment import (
    GLOBAL_KEY,
    PER_ARM_KEY,
    MovieLensBandit,
    MovieLensPerArmBandit,
    factorize,
    factorize_per_arm,
)
from tests.synthetic import NUM_MOVIES


@pytest.fixture(scope="module")
def ratings(movielens_dir: Path) -> np.ndarray:
    return movielens.load_ratings_matrix(movielens_dir / "u.data")


def test_factorization_equals_tf_agents_movielens_environment(
    movielens_dir: Path, ratings: np.ndarray
):
    from tf_agents.bandits.environments import movielens_py_environment

    theirs = movielens_py_environment.MovieLensPyEnvironment(
        str(movielens_dir / "u.data"), rank_k=5, batch_size=4, num_movies=12, csv_delimiter="\t"
    )
    ours = factorize(ratings, rank_k=5, num_movies=12)
    np.testing.assert_allclose(ours.user_features, theirs._u_hat, atol=1e-12)
    np.testing.assert_allclose(ours.movie_features, theirs._v_hat.T, atol=1e-12)
    np.testing.assert_allclose(ours.approx_ratings, theirs._approx_ratings_matrix, atol=1e-12)


def test_per_arm_factorization_equals_tf_agents(movielens_dir: Path, ratings: np.ndarray):
    from tf_agents.bandits.environments import movielens_per_arm_py_environment

    theirs = movielens_per_arm_py_environment.MovieLensPerArmPyEnvironment(
        str(movielens_dir / "u.data"), rank_k=4, batch_size=2, num_actions=5, csv_delimiter="\t"
    )
    ours = factorize_per_arm(ratings, rank_k=4)
    users = ratings.shape[0]
    # TF-Agents pads to 943 × 1682, which may flip the sign of singular vectors: align them.
    signs = np.sign(np.sum(ours.user_features * theirs._u_hat[:users], axis=0))
    np.testing.assert_allclose(ours.user_features * signs, theirs._u_hat[:users], atol=1e-6)
    np.testing.assert_allclose(
        ours.approx_ratings, theirs._approx_ratings_matrix[:users, :NUM_MOVIES], atol=1e-5
    )


def test_users_without_ratings_among_the_first_movies_are_dropped():
    ratings = np.array([[5.0, 0, 3], [0, 0, 4], [1, 2, 0]])
    f = factorize(ratings, rank_k=2, num_movies=2)
    assert f.user_features.shape == (2, 2)  # user 2 rated only movie 3


def test_rewards_and_regret_refer_to_the_observed_users(ratings: np.ndarray):
    f = factorize(ratings, rank_k=6, num_movies=10)
    env = MovieLensBandit(f, batch_size=7, seed=1)
    observations = env.observe()
    users = [int(np.flatnonzero((f.user_features == row).all(axis=1))[0]) for row in observations]
    assert len(set(users)) == 7  # sampled without replacement, like random.sample
    actions = np.arange(7) % 10
    outcome = env.step(actions)
    np.testing.assert_allclose(outcome.rewards, f.approx_ratings[users, actions])
    np.testing.assert_allclose(outcome.optimal_rewards, f.approx_ratings[users].max(axis=1))
    np.testing.assert_array_equal(outcome.optimal_actions, f.approx_ratings[users].argmax(axis=1))


def test_same_seed_same_users(ratings: np.ndarray):
    f = factorize(ratings, rank_k=6, num_movies=10)
    a, b, c = (MovieLensBandit(f, 5, seed=s) for s in (3, 3, 4))
    first = [a.observe() for _ in range(3)]
    np.testing.assert_array_equal(first, [b.observe() for _ in range(3)])
    assert not np.array_equal(first, [c.observe() for _ in range(3)])


def test_per_arm_candidates_are_distinct_and_rewards_consistent(ratings: np.ndarray):
    f = factorize_per_arm(ratings, rank_k=4)
    env = MovieLensPerArmBandit(f, batch_size=6, num_actions=8, seed=0)
    observation = env.observe()
    assert observation[GLOBAL_KEY].shape == (6, 4)
    assert observation[PER_ARM_KEY].shape == (6, 8, 4)
    candidates = env._candidates
    assert all(len(set(row)) == 8 for row in candidates)
    actions = np.array([0, 1, 2, 3, 4, 5])
    outcome = env.step(actions)
    expected = f.approx_ratings[env._users, candidates[np.arange(6), actions]]
    np.testing.assert_allclose(outcome.rewards, expected)
    assert (outcome.optimal_rewards >= outcome.rewards).all()


def test_per_arm_rewards_are_the_sum_of_the_interaction_features(ratings: np.ndarray):
    """The reward Σᵢ sᵢ uᵢ vᵢ is the plain sum of the observed u ⊙ v (√s on both sides): a
    linear agent learns it with its default ridge. Over the bare singular vectors the features
    were ~1e-3 and the ridge prior drowned them (MovieLens regret 0.051 → 0.041)."""
    f = factorize_per_arm(ratings, rank_k=4)
    env = MovieLensPerArmBandit(f, batch_size=6, num_actions=8, seed=0)
    features = env.observe()[PER_ARM_KEY]
    expected = f.approx_ratings[env._users[:, None], env._candidates]
    np.testing.assert_allclose(features.sum(axis=-1), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rank_k": 50, "num_movies": 10}, "rank_k=50 exceeds"),
        ({"rank_k": 3, "num_movies": 999}, "num_actions=999 exceeds"),
    ],
)
def test_impossible_shapes_are_named(ratings: np.ndarray, kwargs, message):
    with pytest.raises(ValueError, match=message):
        factorize(ratings, **kwargs)
