"""The list-wise actor-critic agent: TF-Agents' TD3 over an item-embedding action space.

The actor maps the state (the last N liked movies' embeddings) to a unit direction a in
item-embedding space; the list is the K allowed movies with the highest score v·a, so the
cost of a decision grows with one dot product per movie, not with a Q-value per movie. The
ranking ignores ‖a‖, so the actor outputs only a direction: TF-Agents' tanh ActorNetwork
was free to push a outward, saturated at one corner of [−1, 1]^d and served every user the
same list. The direction is a bounded learned residual added to a fixed similarity prior,
the normalised sum of the state's movies (the actor starts as "movies like the ones you
liked" and learns how far to turn from it). Two
critics (TD3) learn the long-term value Q(s, a) of a list, whose reward is the mean item
reward; training is off-policy from a replay buffer. TF-Agents' defaults that do not fit
(gamma 1, target tau 1, noise) are overridden below. With gamma = 0 the same agent is the
myopic "actor without the critic's long-term value" baseline. Tests: tests/test_slate_run.py
(it trains, finite losses, saved policy = agent), tests/test_slate_agent.py (seeding;
`test_the_trained_actor_points_are_unsaturated_directions_that_differ_between_users`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from app.agents import ACTOR_CRITIC
from app.hyperparameters import ACTOR_CRITIC_DEFAULTS
from app.slate.environment import top_k

__all__ = ["ACTOR_CRITIC", "ACTOR_NO_CRITIC", "ActorCritic", "ActorCriticConfig"]
ACTOR_NO_CRITIC = "actor_no_critic"
ACTOR_SCOPE = "ActorNetwork"
# The direction is l2norm(PRIOR_WEIGHT·l2norm(Σ state rows) + RESIDUAL·tanh(MLP(state))): each
# learned coordinate turns it by at most RESIDUAL, so it never loses the user's history. The
# serving scorer (app/slate/serving.py) applies the same formula to the saved weights.
PRIOR_WEIGHT = 1.0
RESIDUAL = 0.15
# The output layer starts near zero (as TF-Agents' ActorNetwork's), so training starts at the prior.
OUTPUT_INIT = 0.003


@dataclass(frozen=True)
class ActorCriticConfig:
    gamma: float = ACTOR_CRITIC_DEFAULTS.gamma
    actor_layers: tuple[int, ...] = (64, 64)
    critic_layers: tuple[int, ...] = (64, 64)
    actor_learning_rate: float = ACTOR_CRITIC_DEFAULTS.actor_learning_rate
    critic_learning_rate: float = ACTOR_CRITIC_DEFAULTS.critic_learning_rate
    target_update_tau: float = 0.05
    actor_update_period: int = 2
    exploration_std: float = ACTOR_CRITIC_DEFAULTS.exploration_std
    target_policy_noise: float = 0.2
    batch_size: int = 64
    replay_capacity: int = 50_000
    updates_per_step: int = 4

    def __post_init__(self) -> None:
        if not 0.0 <= self.gamma < 1.0:
            raise ValueError(f"gamma={self.gamma} must be in [0, 1)")


class ActorCritic:
    """Collects with Gaussian exploration around the actor's direction (re-normalised);
    `learn` must follow its `act`."""

    def __init__(
        self,
        name: str,
        state_dim: int,
        item_embeddings: np.ndarray,
        config: ActorCriticConfig,
        seed: int = 0,
    ):
        import tensorflow as tf
        from tf_agents.agents.ddpg import critic_network
        from tf_agents.agents.td3 import td3_agent
        from tf_agents.specs import tensor_spec
        from tf_agents.trajectories import time_step as ts

        # Seeds Python's `random` too: unseeded Keras initialisers (the networks' last layers) draw
        # their seeds from it, which made the same seed train differently run to run.
        tf.keras.utils.set_random_seed(seed)
        self.name = name
        self.config = config
        self.items = item_embeddings.astype(np.float32)
        dim = self.items.shape[1]
        if state_dim % dim:
            raise ValueError(f"state_dim={state_dim} is not a whole number of {dim}-dim movie rows")
        self.rng = np.random.default_rng(seed)
        self.exploring = True
        observation_spec = tf.TensorSpec([state_dim], tf.float32, name="state")
        self.action_spec = tensor_spec.BoundedTensorSpec(
            [dim], tf.float32, minimum=-1.0, maximum=1.0, name="point"
        )
        time_step_spec = ts.time_step_spec(observation_spec)
        self.actor_network = direction_actor_class()(
            observation_spec, dim, layers=tuple(config.actor_layers)
        )

        def critic():
            return critic_network.CriticNetwork(
                (observation_spec, self.action_spec), joint_fc_layer_params=config.critic_layers
            )

        self.agent = td3_agent.Td3Agent(
            time_step_spec,
            self.action_spec,
            actor_network=self.actor_network,
            critic_network=critic(),
            critic_network_2=critic(),
            actor_optimizer=tf.keras.optimizers.Adam(config.actor_learning_rate),
            critic_optimizer=tf.keras.optimizers.Adam(config.critic_learning_rate),
            exploration_noise_std=config.exploration_std,
            target_update_tau=config.target_update_tau,
            target_update_period=1,
            actor_update_period=config.actor_update_period,
            gamma=config.gamma,
            target_policy_noise=config.target_policy_noise,
            target_policy_noise_clip=0.5,
        )
        self.agent.initialize()
        # The agent's greedy policy is the actor network's output (a unit vector, within the spec).
        self._point = tf.function(
            lambda s: self.actor_network(s, training=False)[0], autograph=False
        )
        self._train = tf.function(self.agent.train, autograph=False)
        capacity = config.replay_capacity
        self._states = np.zeros((capacity, state_dim), np.float32)
        self._next_states = np.zeros((capacity, state_dim), np.float32)
        self._actions = np.zeros((capacity, dim), np.float32)
        self._rewards = np.zeros(capacity, np.float32)
        self._discounts = np.zeros(capacity, np.float32)
        self._size = 0
        self._cursor = 0
        self._last_points = np.zeros((0, dim), np.float32)
        self.losses: list[float] = []

    # -- acting -----------------------------------------------------------------------------
    def points(self, observations: np.ndarray) -> np.ndarray:
        return self._point(np.asarray(observations, np.float32)).numpy()

    def act(self, observations: np.ndarray, excluded: np.ndarray, k: int) -> np.ndarray:
        points = self.points(observations)
        if self.exploring:
            noise = self.rng.normal(scale=self.config.exploration_std, size=points.shape)
            points = unit_rows(points + noise).astype(np.float32)
        self._last_points = points
        return top_k(points @ self.items.T, excluded, k)

    # -- learning ---------------------------------------------------------------------------
    def learn(self, observations, slates, rewards, next_observations, done) -> None:
        rows = len(observations)
        index = (self._cursor + np.arange(rows)) % len(self._states)
        self._states[index] = observations
        self._next_states[index] = next_observations
        self._actions[index] = self._last_points
        self._rewards[index] = np.mean(rewards, axis=1)
        # The horizon truncates a session; it is no terminal state (the state does not hold the
        # time left), so the critic bootstraps through it and learns a stationary value.
        self._discounts[index] = 1.0
        self._cursor = int((self._cursor + rows) % len(self._states))
        self._size = min(self._size + rows, len(self._states))
        if self._size < self.config.batch_size:
            return
        for _ in range(self.config.updates_per_step):
            loss = self._train(
                self._experience(self.rng.integers(self._size, size=self.config.batch_size))
            )
            self.losses.append(float(loss.loss))

    def _experience(self, index: np.ndarray):
        """Transitions as TF-Agents' [batch, 2] trajectories (see trajectory.to_transition)."""
        from tf_agents.trajectories import time_step as ts
        from tf_agents.trajectories import trajectory

        batch = len(index)
        mid = np.full((batch, 2), ts.StepType.MID, np.int32)
        next_type = np.full(batch, ts.StepType.MID)
        action = np.repeat(self._actions[index][:, None, :], 2, axis=1)
        return trajectory.Trajectory(
            step_type=mid,
            observation=np.stack([self._states[index], self._next_states[index]], axis=1),
            action=action,
            policy_info=(),
            next_step_type=np.stack([next_type, next_type], axis=1).astype(np.int32),
            reward=np.stack([self._rewards[index], np.zeros(batch, np.float32)], axis=1),
            discount=np.stack([self._discounts[index], np.ones(batch, np.float32)], axis=1),
        )


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as tf.math.l2_normalize does."""
    return x / np.sqrt(np.maximum(np.sum(x * x, axis=-1, keepdims=True), 1e-12))


@cache
def direction_actor_class():
    """The actor network class (built on first use: TensorFlow is imported lazily)."""
    import tensorflow as tf
    from tf_agents.networks import network

    class DirectionActor(network.Network):
        """state → l2norm(PRIOR_WEIGHT·l2norm(Σ rows) + RESIDUAL·tanh(MLP(state)))."""

        def __init__(self, input_tensor_spec, dim, layers, name=ACTOR_SCOPE):
            super().__init__(input_tensor_spec=input_tensor_spec, state_spec=(), name=name)
            self._dim = dim
            self._hidden = [tf.keras.layers.Dense(n, activation="relu") for n in layers]
            init = tf.keras.initializers.RandomUniform(-OUTPUT_INIT, OUTPUT_INIT)
            self._output = tf.keras.layers.Dense(dim, kernel_initializer=init)

        def call(self, observations, step_type=(), network_state=(), training=False):
            state = tf.cast(observations, tf.float32)
            hidden = state
            for layer in self._hidden:
                hidden = layer(hidden, training=training)
            turn = RESIDUAL * tf.tanh(self._output(hidden, training=training))
            rows = tf.reshape(state, [tf.shape(state)[0], -1, self._dim])
            prior = tf.math.l2_normalize(tf.reduce_sum(rows, axis=1), axis=-1)
            return tf.math.l2_normalize(PRIOR_WEIGHT * prior + turn, axis=-1), network_state

    return DirectionActor
