"""The saved form of the actor: a TF-Agents policy from recent liked movies to a K-movie list.

Observation: the last N liked movie indices (0-based, oldest first; the catalogue size pads a
shorter history). Action: K distinct movie indices, best first, none of them in the history.
It embeds the history with the same item embeddings the agent trained on, runs the actor and
ranks the whole catalogue by v·a, so serving needs nothing but the SavedModel.
Test: tests/test_slate_agent.py (saved and reloaded, it chooses the lists the agent chooses).
"""

from __future__ import annotations

import numpy as np


def slate_policy(actor_network, item_embeddings: np.ndarray, history_length: int, k: int):
    import tensorflow as tf
    import tensorflow_probability as tfp
    from tf_agents.policies import tf_policy
    from tf_agents.specs import tensor_spec
    from tf_agents.trajectories import policy_step
    from tf_agents.trajectories import time_step as ts

    movies, dim = item_embeddings.shape

    class SlatePolicy(tf_policy.TFPolicy):
        def __init__(self):
            observation = tensor_spec.BoundedTensorSpec(
                [history_length], tf.int32, minimum=0, maximum=movies, name="history"
            )
            action = tensor_spec.BoundedTensorSpec(
                [k], tf.int32, minimum=0, maximum=movies - 1, name="slate"
            )
            super().__init__(ts.time_step_spec(observation), action)
            self._actor = actor_network
            padded = np.vstack([item_embeddings, np.zeros((1, dim))]).astype(np.float32)
            self._embeddings = tf.Variable(padded, trainable=False, name="item_embeddings")

        def _variables(self):
            return [self._embeddings, *self._actor.variables]

        def _distribution(self, time_step, policy_state):
            history = tf.cast(time_step.observation, tf.int32)
            batch = tf.shape(history)[0]
            state = tf.reshape(tf.gather(self._embeddings, history), [batch, history_length * dim])
            point, _ = self._actor(state, step_type=time_step.step_type, training=False)
            scores = tf.matmul(point, self._embeddings[:movies], transpose_b=True)
            seen = tf.reduce_max(tf.one_hot(history, movies + 1), axis=1)[:, :movies] > 0
            scores = tf.where(seen, tf.fill(tf.shape(scores), -np.inf), scores)
            slate = tf.math.top_k(scores, k=k).indices
            return policy_step.PolicyStep(tfp.distributions.Deterministic(slate), policy_state)

    return SlatePolicy()
