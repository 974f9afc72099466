"""The numpy linear bandit against TF-Agents itself: same parameters, same actions."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory

from app import movielens
from app.agents import (
    LINTS,
    LINUCB,
    AgentSpec,
    copy_state_to_agent,
    create_agent,
    linear_bandit,
    state_from_agent,
)
from app.environment import GLOBAL_KEY, PER_ARM_KEY, MovieLensBandit, factorize
from app.policy_store import PolicyMetadata, save_tf_policy
from app.predictor.policy import load_policy
from app.trainer.learners import LinearLearner, TfAgentLearner

DIM, ARMS = 6, 5


def experience(agent, observations, actions, rewards):
    expand = lambda t: tf.expand_dims(t, 1)  # noqa: E731
    observation = tf.nest.map_structure(lambda o: expand(tf.constant(o)), observations)
    n = len(actions)
    info = tf.nest.map_structure(
        lambda s: tf.zeros([n, 1, *s.shape], s.dtype), agent.training_data_spec.policy_info
    )
    if isinstance(observations, dict):  # per-arm agents learn from the chosen arm's features
        chosen = observations[PER_ARM_KEY][np.arange(n), actions]
        info = info._replace(chosen_arm_features=expand(tf.constant(chosen)))
    return trajectory.single_step(
        observation=observation,
        action=expand(tf.constant(actions, tf.int32)),
        policy_info=info,
        reward=expand(tf.constant(rewards, tf.float32)),
        discount=expand(tf.zeros(len(actions))),
    )


def batch(rng, n, per_arm=False):
    if per_arm:
        observations = {
            GLOBAL_KEY: rng.normal(size=(n, DIM)).astype(np.float32),
            PER_ARM_KEY: rng.normal(size=(n, ARMS, DIM)).astype(np.float32),
        }
    else:
        observations = rng.normal(size=(n, DIM))
    return observations, rng.integers(ARMS, size=n), rng.normal(size=n).astype(np.float32)


def tf_actions(policy, observations):
    obs = tf.nest.map_structure(tf.constant, observations)
    n = tf.nest.flatten(obs)[0].shape[0]
    return policy.action(ts.restart(obs, batch_size=n)).action.numpy()


@pytest.mark.parametrize("name", [LINUCB, LINTS])
@pytest.mark.parametrize("per_arm", [False, True])
def test_training_updates_equal_agent_train(name, per_arm):
    spec = AgentSpec(name, ARMS, DIM, alpha=1.5, tikhonov_weight=0.3, per_arm=per_arm)
    agent, model = create_agent(spec), linear_bandit(spec)
    rng = np.random.default_rng(0)
    for n in (8, 16, 3):
        observations, actions, rewards = batch(rng, n, per_arm)
        agent.train(experience(agent, observations, actions, rewards))
        model.update(observations, actions, rewards)
    theirs = state_from_agent(agent)
    np.testing.assert_allclose(model.state.cov_matrix, theirs.cov_matrix, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.state.data_vector, theirs.data_vector, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(model.state.num_samples, theirs.num_samples)


@pytest.mark.parametrize("per_arm", [False, True])
def test_linucb_actions_equal_the_tf_agents_policy(per_arm):
    spec = AgentSpec(LINUCB, ARMS, DIM, alpha=2.0, tikhonov_weight=0.5, per_arm=per_arm)
    agent, model = create_agent(spec), linear_bandit(spec)
    rng = np.random.default_rng(1)
    observations, actions, rewards = batch(rng, 40, per_arm)
    model.update(observations, actions, rewards)
    copy_state_to_agent(model.state, agent)
    test_observations, _, _ = batch(rng, 300, per_arm)
    ours = model.act(test_observations)
    np.testing.assert_array_equal(ours, tf_actions(agent.policy, test_observations))
    assert len(set(ours.tolist())) > 1  # a policy that always picks one arm would prove little


def test_saved_policy_and_served_fast_path_agree(tmp_path: Path):
    spec = AgentSpec(LINUCB, ARMS, DIM, alpha=1.0, tikhonov_weight=0.1)
    learner = LinearLearner(spec, seed=0)
    rng = np.random.default_rng(2)
    observations, actions, rewards = batch(rng, 64)
    learner.learn(observations, actions, rewards)
    metadata = PolicyMetadata(LINUCB, False, ARMS, DIM, 1.0, 0.1, "v-test")
    save_tf_policy(learner.export_agent().policy, str(tmp_path), metadata)

    saved = tf.saved_model.load(str(tmp_path))
    served = load_policy(str(tmp_path))
    probe = rng.normal(size=(300, DIM))
    expected = tf_actions(saved, probe)
    np.testing.assert_array_equal(learner.act(probe), expected)
    np.testing.assert_array_equal(served.actions(probe), expected)
    np.testing.assert_array_equal(
        load_policy(str(tmp_path), fast_path=False).actions(probe), expected
    )


def test_step_by_step_training_matches_tf_agents(movielens_dir: Path):
    """TF-Agents drives the on-policy loop (its policy acts, agent.train learns); at every step
    the numpy model, fed the same experience, must choose exactly the same movies.

    TF-Agents solves with float32 conjugate gradients, which drift when A + λI is badly
    conditioned (tiny λ, few samples per arm; see docs/benchmarks.md); λ = 1, its default,
    keeps the comparison about the algorithm rather than float32 round-off."""
    ratings = movielens.load_ratings_matrix(movielens_dir / "u.data")
    env = MovieLensBandit(factorize(ratings, rank_k=6, num_movies=10), 4, seed=5)
    spec = AgentSpec(LINUCB, 10, 6, alpha=3.0, tikhonov_weight=1.0)
    reference, model = TfAgentLearner(spec), linear_bandit(spec)
    chosen = []
    for _ in range(40):
        observations = env.observe()
        theirs = reference.act(observations)
        np.testing.assert_array_equal(model.act(observations), theirs)
        rewards = env.step(theirs).rewards
        reference.learn(observations, theirs, rewards)
        model.update(observations, theirs, rewards)
        chosen.extend(theirs.tolist())
    assert len(set(chosen)) >= 5
    np.testing.assert_allclose(
        model.state.cov_matrix, state_from_agent(reference.agent).cov_matrix, rtol=1e-4
    )
