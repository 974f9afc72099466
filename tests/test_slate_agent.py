"""The slate methods and the actor-critic's saved policy, on synthetic ratings."""

from __future__ import annotations

import numpy as np
import pytest

from app import movielens
from app.slate import data as slate_data
from app.slate.actor_critic import ActorCriticConfig
from app.slate.baselines import PerArmLinUCB, PopularSlates
from app.slate.environment import SlateEnvironment
from app.slate.run import ranking_metrics
from tests.synthetic import write_movielens


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = write_movielens(tmp_path_factory.mktemp("ml"))
    return slate_data.build(movielens.load_rating_events(folder / "u.data"), seed=3)


def test_ranking_metrics_by_hand():
    positives = np.array([[True, False, True, False], [False, False, False, False]])
    slates = np.array([[2, 1], [0, 1]])
    precision, ndcg = ranking_metrics(slates, positives)
    assert precision == pytest.approx(0.5)  # the user without positives is left out
    assert ndcg == pytest.approx(1.0 / (1.0 + 1.0 / np.log2(3)))


def test_popularity_ranks_by_positive_train_ratings(data):
    scores = PopularSlates(data).scores
    counts = (data.train >= 4).sum(axis=0)
    assert np.all(np.diff(counts[np.argsort(-scores, kind="stable")]) <= 0)


def test_per_arm_linucb_personalises_through_interaction_features(data):
    method = PerArmLinUCB(data.item_embeddings, history_length=5, seed=0)
    env = SlateEnvironment(data, data.train_users, slate_size=2, horizon=3, seed=0)
    for _ in range(5):
        observations = env.reset(batch_size=20)
        done = False
        while not done:
            slates = method.act(observations, env.excluded, 2)
            step = env.step(slates)
            nxt = env.observe()
            method.learn(observations, slates, step.rewards, nxt, step.done)
            observations, done = nxt, step.done
    observations = env.reset(batch_size=20)
    nothing = np.zeros_like(env.excluded)
    lists = {tuple(row) for row in method.act(observations, nothing, 2)}
    assert len(lists) > 1  # u ⊙ v: different states, different lists


def test_per_arm_linucb_is_evaluated_by_its_mean_without_the_bonus(data):
    """docs/slate.md: "Evaluated greedily (mean, no bonus)": the test return is that of the
    lists ranked by the model's mean reward (the UCB bonus only explores while it learns)."""
    from app.slate.environment import top_k
    from app.slate.run import SlateArgs, evaluate, train

    method = PerArmLinUCB(data.item_embeddings, history_length=5, seed=0)
    args = SlateArgs(slate_size=2, horizon=3, episodes=40, parallel_episodes=20, seed=0)
    train(method, SlateEnvironment(data, data.train_users, slate_size=2, horizon=3, seed=0), args)
    env = SlateEnvironment(data, data.test_users, slate_size=2, horizon=3, seed=0)
    observations, total, done = env.reset(users=data.test_users), 0.0, False
    while not done:
        mean, _ = method.model.mean_and_variance(method._features(observations))
        step = env.step(top_k(mean, env.excluded, 2))
        total += step.rewards.mean(axis=1).sum()
        observations, done = env.observe(), step.done
    evaluation = evaluate(method, SlateEnvironment(data, data.test_users, slate_size=2, horizon=3))
    assert evaluation.episode_return == pytest.approx(total / len(data.test_users))


def test_the_no_critic_baseline_is_the_same_agent_with_gamma_zero(data):
    """docs/slate.md: actor_no_critic is the same TD3 agent (config, initial weights) as
    actor_critic, with gamma 0: its critic then values only the next list."""
    import dataclasses

    from app.slate.run import SlateArgs, make_methods

    tiny = ActorCriticConfig(gamma=0.9, actor_layers=(4,), critic_layers=(4,))
    env = SlateEnvironment(data, data.train_users, slate_size=2, horizon=3, seed=0)
    methods = make_methods(data, env, SlateArgs(slate_size=2, horizon=3, actor_critic=tiny))
    planning, myopic = methods["actor_critic"], methods["actor_no_critic"]
    assert myopic.config == dataclasses.replace(planning.config, gamma=0.0)
    assert (planning.agent._gamma, myopic.agent._gamma) == (0.9, 0.0)
    for a, b in zip(planning.agent.variables, myopic.agent.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)


def test_gamma_must_discount():
    with pytest.raises(ValueError, match="gamma"):
        ActorCriticConfig(gamma=1.0)


def test_the_same_seed_builds_the_same_actor_and_critics(data):
    from app.slate.actor_critic import ActorCritic

    tiny = ActorCriticConfig(actor_layers=(4,), critic_layers=(4,))
    first, second = (
        ActorCritic(name, 5 * data.embedding_dim, data.item_embeddings, tiny, seed=5)
        for name in ("a", "b")
    )
    for a, b in zip(first.agent.variables, second.agent.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)


def test_the_trained_actor_points_are_unsaturated_directions_that_differ_between_users(data):
    """Ranking by v·a ignores ‖a‖: TF-Agents' tanh ActorNetwork pushed its point outward to a
    corner of [−1, 1]^d (on MovieLens every test user got the same sign vector, one list);
    the direction actor's points stay unit vectors that follow each user's history."""
    from app.slate.actor_critic import ActorCritic
    from app.slate.run import SlateArgs, train

    config = ActorCriticConfig(batch_size=16, actor_layers=(16,), critic_layers=(16,))
    args = SlateArgs(
        slate_size=2, horizon=3, episodes=320, parallel_episodes=16, seed=0, actor_critic=config
    )
    env = SlateEnvironment(data, data.train_users, slate_size=2, horizon=3, seed=0)
    agent = ActorCritic("a", env.state_dim, data.item_embeddings, config, seed=0)
    train(agent, env, args)
    test_env = SlateEnvironment(data, data.test_users, slate_size=2, horizon=3, seed=0)
    points = agent.points(test_env.reset(users=data.test_users))
    np.testing.assert_allclose(np.linalg.norm(points, axis=1), 1.0, rtol=1e-5)
    assert np.mean(np.abs(points) > 0.99) < 0.05
    assert len(np.unique(np.sign(points), axis=0)) > len(points) // 2
