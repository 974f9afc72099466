"""The sequential slate environment on synthetic ratings (tests/synthetic.py)."""

from __future__ import annotations

import numpy as np
import pytest

from app import movielens
from app.slate import data as slate_data
from app.slate.environment import SlateEnvironment, SlateError, top_k
from tests.synthetic import write_movielens


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    folder = write_movielens(tmp_path_factory.mktemp("ml"))
    return movielens.load_rating_events(folder / "u.data")


@pytest.fixture(scope="module")
def data(events):
    return slate_data.build(events, seed=3)


def test_each_users_earliest_ratings_are_train_and_the_latest_held_out(events):
    train, held_out, positives = slate_data.time_split(events)
    for user in range(train.shape[0]):
        rows = events[events[:, 0] == user + 1]
        rows = rows[np.argsort(rows[:, 3])]
        cut = int(np.ceil(0.8 * len(rows)))
        assert set(np.flatnonzero(train[user]) + 1) == set(rows[:cut, 1])
        assert set(np.flatnonzero(held_out[user]) + 1) == set(rows[cut:, 1])
        liked = rows[:cut][rows[:cut, 2] >= 4, 1] - 1
        assert list(positives[user]) == list(liked)  # time order kept


def test_embeddings_and_simulator_never_see_held_out_ratings(events, data):
    _, held_out, _ = slate_data.time_split(events)
    flipped = events.copy()
    for row in flipped:
        if held_out[row[0] - 1, row[1] - 1]:
            row[2] = 6 - row[2]
    other = slate_data.build(flipped, seed=3)
    np.testing.assert_array_equal(other.item_embeddings, data.item_embeddings)
    np.testing.assert_array_equal(other.simulated_ratings, data.simulated_ratings)
    assert not np.array_equal(other.held_out, data.held_out)


def test_train_and_test_users_are_disjoint_and_cover_everyone(data):
    assert not set(data.train_users) & set(data.test_users)
    assert len(data.train_users) + len(data.test_users) == data.train.shape[0]


def env_for(data, **kwargs):
    options = {"slate_size": 2, "horizon": 3, "history_length": 5, "seed": 1, **kwargs}
    return SlateEnvironment(data, data.test_users, **options)


def test_state_is_the_last_liked_train_movies_embeddings_padded_with_zeros(data):
    env = env_for(data)
    observation = env.reset(users=data.test_users)
    dim = data.embedding_dim
    for row, user in enumerate(data.test_users):
        recent = data.train_positives[user][-5:]
        expected = np.zeros((5, dim), np.float32)
        if len(recent):
            expected[-len(recent) :] = data.item_embeddings[recent]
        np.testing.assert_array_equal(observation[row].reshape(5, dim), expected)


def test_rewards_come_from_held_out_ratings_else_the_simulator(data):
    env = env_for(data, slate_size=2)
    env.reset(users=data.test_users)
    slates = top_k(np.random.default_rng(0).random(env.excluded.shape), env.excluded, 2)
    step = env.step(slates)
    for row, user in enumerate(data.test_users):
        for k, movie in enumerate(slates[row]):
            rating = data.held_out[user, movie] or data.simulated_ratings[user, movie]
            assert step.rewards[row, k] == pytest.approx((rating - 3) / 2)
            assert step.liked[row, k] == (rating >= (4 if data.held_out[user, movie] else 3.5))


def test_liked_movies_enter_the_state_and_shown_ones_are_excluded(data):
    env = env_for(data)
    env.reset(users=data.test_users)
    before = env.history.copy()
    slates = top_k(np.random.default_rng(1).random(env.excluded.shape), env.excluded, 2)
    step = env.step(slates)
    for row in range(len(slates)):
        liked = list(slates[row][step.liked[row]])
        expected = (list(before[row]) + liked)[-5:]
        assert list(env.history[row]) == expected
    assert env.excluded[np.arange(len(slates))[:, None], slates].all()
    with pytest.raises(SlateError, match="already shown"):
        env.step(slates)


def test_bad_slates_are_refused_with_the_reason(data):
    env = env_for(data)
    env.reset(users=data.test_users)
    allowed = np.argsort(env.excluded, axis=1, kind="stable")[:, :2]
    with pytest.raises(SlateError, match="repeats"):
        env.step(np.repeat(allowed[:, :1], 2, axis=1))
    with pytest.raises(SlateError, match="integer"):
        env.step(allowed[:, :1])
    with pytest.raises(SlateError, match="movie indices"):
        env.step(allowed + data.num_movies)
    train_rated = np.argsort(~env.excluded, axis=1, kind="stable")[:, :2]
    with pytest.raises(SlateError, match="rated in train"):
        env.step(train_rated)


def test_an_episode_ends_after_the_horizon_and_reset_is_seeded(data):
    env = env_for(data, horizon=2)
    for t in range(2):
        if t == 0:
            env.reset(batch_size=4)
        step = env.step(top_k(np.zeros(env.excluded.shape), env.excluded, 2))
    assert step.done
    with pytest.raises(SlateError, match="episode is over"):
        env.step(top_k(np.zeros(env.excluded.shape), env.excluded, 2))
    first = env_for(data)
    second = env_for(data)
    first.reset(batch_size=5)
    second.reset(batch_size=5)
    np.testing.assert_array_equal(first.batch_users, second.batch_users)


def test_top_k_is_best_first_without_repeats_or_excluded_movies():
    scores = np.array([[0.1, 0.9, 0.5, 0.7, 0.3]])
    excluded = np.array([[False, True, False, False, False]])
    assert top_k(scores, excluded, 3).tolist() == [[3, 2, 4]]
