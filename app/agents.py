"""TF-Agents agents selectable by name, and the bridge to the numpy linear model.

TF-Agents remains the canonical artifact: every trained policy is a TF-Agents policy saved
with PolicySaver. Linear agents train in numpy (`app.linear`) and copy their state into the
agent's variables before saving.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.environment import GLOBAL_KEY, PER_ARM_KEY
from app.linear import THOMPSON, UCB, LinearBandit, LinearState

LINUCB = "linucb"
LINTS = "lints"
NEURAL_EPSILON_GREEDY = "neural_epsilon_greedy"
NEURAL_LINUCB = "neural_linucb"
AGENTS = (LINUCB, LINTS, NEURAL_EPSILON_GREEDY, NEURAL_LINUCB)
LINEAR_AGENTS = (LINUCB, LINTS)
# The list-wise actor-critic (app/slate/): trained on the sequential slate environment, not on
# the bandit environment, so it has no AgentSpec; `recloop train --agent` takes it too.
ACTOR_CRITIC = "actor_critic"
TRAINABLE_AGENTS = (*AGENTS, ACTOR_CRITIC)
# What the re-training pipeline's Trainer trains (app/loop/steps.py run_trainer).
PIPELINE_AGENTS = (*LINEAR_AGENTS, ACTOR_CRITIC)

NEURAL_LAYERS = (50, 50, 50)
NEURAL_LEARNING_RATE = 0.005
NEURAL_EPSILON = 0.05
NEURAL_LINUCB_ENCODER_STEPS = 100


@dataclass(frozen=True)
class AgentSpec:
    """Everything needed to build the same agent twice (in training and in a parity test)."""

    name: str
    num_actions: int
    context_dim: int
    alpha: float
    tikhonov_weight: float
    per_arm: bool = False

    def __post_init__(self) -> None:
        if self.name not in AGENTS:
            raise ValueError(f"unknown agent {self.name!r}; choose one of {', '.join(AGENTS)}")
        if self.per_arm and self.name == NEURAL_LINUCB:
            raise ValueError("neural_linucb has no per-arm variant here; use linucb or lints")

    @property
    def is_linear(self) -> bool:
        return self.name in LINEAR_AGENTS


def linear_bandit(spec: AgentSpec, seed: int | None = None) -> LinearBandit:
    return LinearBandit(
        spec.num_actions,
        spec.context_dim,
        alpha=spec.alpha,
        tikhonov_weight=spec.tikhonov_weight,
        strategy=UCB if spec.name == LINUCB else THOMPSON,
        per_arm=spec.per_arm,
        arm_dim=spec.context_dim,
        seed=seed,
    )


def tensor_specs(spec: AgentSpec):
    """Time-step and action specs, as a TFPyEnvironment over the MovieLens env gives them."""
    import tensorflow as tf
    from tf_agents.specs import tensor_spec
    from tf_agents.trajectories import time_step as ts

    if spec.per_arm:
        observation = {
            GLOBAL_KEY: tf.TensorSpec([spec.context_dim], tf.float32),
            PER_ARM_KEY: tf.TensorSpec([spec.num_actions, spec.context_dim], tf.float32),
        }
    else:
        observation = tf.TensorSpec([spec.context_dim], tf.float64, name="observation")
    action = tensor_spec.BoundedTensorSpec(
        shape=(), dtype=tf.int32, minimum=0, maximum=spec.num_actions - 1, name="action"
    )
    return ts.time_step_spec(observation), action


def create_agent(spec: AgentSpec):
    """The TF-Agents agent named by `spec`, built as TF-Agents' MovieLens example builds it."""
    import tensorflow as tf
    from tf_agents.bandits.agents import (
        lin_ucb_agent,
        linear_thompson_sampling_agent,
        neural_epsilon_greedy_agent,
        neural_linucb_agent,
    )
    from tf_agents.bandits.networks import global_and_arm_feature_network
    from tf_agents.networks import encoding_network, q_network

    time_step_spec, action_spec = tensor_specs(spec)
    common = {"time_step_spec": time_step_spec, "action_spec": action_spec}
    if spec.name == LINUCB:
        return lin_ucb_agent.LinearUCBAgent(
            **common,
            alpha=spec.alpha,
            tikhonov_weight=spec.tikhonov_weight,
            dtype=tf.float32,
            accepts_per_arm_features=spec.per_arm,
        )
    if spec.name == LINTS:
        return linear_thompson_sampling_agent.LinearThompsonSamplingAgent(
            **common,
            alpha=spec.alpha,
            tikhonov_weight=spec.tikhonov_weight,
            dtype=tf.float32,
            accepts_per_arm_features=spec.per_arm,
        )
    optimizer = tf.compat.v1.train.AdamOptimizer(learning_rate=NEURAL_LEARNING_RATE)
    if spec.name == NEURAL_EPSILON_GREEDY:
        if spec.per_arm:
            network = global_and_arm_feature_network.create_feed_forward_dot_product_network(
                time_step_spec.observation,
                global_layers=NEURAL_LAYERS,
                arm_layers=NEURAL_LAYERS,
            )
        else:
            network = q_network.QNetwork(
                input_tensor_spec=time_step_spec.observation,
                action_spec=action_spec,
                fc_layer_params=NEURAL_LAYERS,
            )
        return neural_epsilon_greedy_agent.NeuralEpsilonGreedyAgent(
            **common,
            reward_network=network,
            optimizer=optimizer,
            epsilon=NEURAL_EPSILON,
            accepts_per_arm_features=spec.per_arm,
        )
    encoder = encoding_network.EncodingNetwork(
        input_tensor_spec=time_step_spec.observation, fc_layer_params=NEURAL_LAYERS
    )
    return neural_linucb_agent.NeuralLinUCBAgent(
        **common,
        encoding_network=encoder,
        encoding_network_num_train_steps=NEURAL_LINUCB_ENCODER_STEPS,
        encoding_dim=NEURAL_LAYERS[-1],
        optimizer=optimizer,
        alpha=spec.alpha,
        epsilon_greedy=NEURAL_EPSILON,
        dtype=tf.float64,
    )


def copy_state_to_agent(state: LinearState, agent) -> None:
    """Writes numpy-trained linear state into a TF-Agents linear agent's variables."""
    import tensorflow as tf

    for k, variable in enumerate(agent.cov_matrix):
        variable.assign(state.cov_matrix[k].astype(variable.dtype.as_numpy_dtype))
    for k, variable in enumerate(agent.data_vector):
        variable.assign(state.data_vector[k].astype(variable.dtype.as_numpy_dtype))
    for k, variable in enumerate(agent.num_samples):
        variable.assign(tf.cast(state.num_samples[k], variable.dtype))
    # LinearBanditAgent caches θ in a variable that its train step refreshes; do the same.
    agent._theta.assign(agent.theta)


def state_from_agent(agent) -> LinearState:
    return LinearState(
        cov_matrix=np.stack([v.numpy() for v in agent.cov_matrix]).astype(np.float64),
        data_vector=np.stack([v.numpy() for v in agent.data_vector]).astype(np.float64),
        num_samples=np.array([float(v.numpy()) for v in agent.num_samples]),
    )
