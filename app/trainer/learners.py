"""Learners: one interface over the numpy linear model and TF-Agents' own training.

The trainer's loop only asks a learner to act on a batch, to learn from it, and to hand
over a TF-Agents agent for saving; which path does the math stays out of the loop.
"""

from __future__ import annotations

import io
import json
from typing import Protocol

import numpy as np

from app.agents import AgentSpec, copy_state_to_agent, create_agent, linear_bandit
from app.environment import Observation
from app.linear import LinearState
from app.paths import join

LINEAR_STATE_FILE = "linear_state.npz"
AGENT_CHECKPOINT = "agent"


class Learner(Protocol):
    spec: AgentSpec

    def act(self, observations: Observation) -> np.ndarray: ...

    def learn(
        self, observations: Observation, actions: np.ndarray, rewards: np.ndarray
    ) -> None: ...

    def export_agent(self):
        """The TF-Agents agent holding the learned parameters."""

    def start_loop(self, loop: int) -> None:
        """Called before each training loop's first `act`."""

    def save(self, directory: str) -> None:
        """Writes into `directory` all that `load` needs to continue exactly as this one."""

    def load(self, directory: str) -> None:
        """Continues from what `save` wrote."""


class LinearLearner:
    """LinUCB / LinTS in numpy; the TF-Agents agent is only built when exporting."""

    def __init__(self, spec: AgentSpec, seed: int | None = None):
        self.spec = spec
        self.model = linear_bandit(spec, seed)
        self._agent = None

    def act(self, observations: Observation) -> np.ndarray:
        return self.model.act(observations)

    def learn(self, observations: Observation, actions: np.ndarray, rewards: np.ndarray) -> None:
        self.model.update(observations, actions, rewards)

    def export_agent(self):
        if self._agent is None:
            self._agent = create_agent(self.spec)
        copy_state_to_agent(self.model.state, self._agent)
        return self._agent

    def start_loop(self, loop: int) -> None:
        pass

    def save(self, directory: str) -> None:
        """The float64 state itself (the agent's variables are float32) and the sampling RNG."""
        import tensorflow as tf

        s = self.model.state
        buffer = io.BytesIO()
        rng = json.dumps(self.model.rng.bit_generator.state)
        np.savez(
            buffer,
            cov_matrix=s.cov_matrix,
            data_vector=s.data_vector,
            num_samples=s.num_samples,
            rng=np.array(rng),
        )
        with tf.io.gfile.GFile(join(directory, LINEAR_STATE_FILE), "wb") as f:
            f.write(buffer.getvalue())

    def load(self, directory: str) -> None:
        import tensorflow as tf

        with tf.io.gfile.GFile(join(directory, LINEAR_STATE_FILE), "rb") as f:
            saved = np.load(io.BytesIO(f.read()))
        state = LinearState(saved["cov_matrix"], saved["data_vector"], saved["num_samples"])
        expected = self.model.state
        for name in ("cov_matrix", "data_vector", "num_samples"):
            if getattr(state, name).shape != getattr(expected, name).shape:
                raise ValueError(
                    f"{directory}: {name} has shape {getattr(state, name).shape}, "
                    f"this agent needs {getattr(expected, name).shape}"
                )
        self.model.set_state(state)
        self.model.rng.bit_generator.state = json.loads(str(saved["rng"]))


class TfAgentLearner:
    """Any TF-Agents bandit agent, trained by `agent.train` like the DynamicStepDriver does."""

    def __init__(self, spec: AgentSpec, seed: int | None = None):
        import tensorflow as tf

        if seed is not None:
            tf.random.set_seed(seed)
        self.spec = spec
        self.seed = seed
        self.agent = create_agent(spec)
        self.agent.initialize()
        self._pending_info: list = []

    def _time_step(self, observations: Observation):
        import tensorflow as tf
        from tf_agents.trajectories import time_step as ts

        spec = self.agent.time_step_spec.observation
        obs = tf.nest.map_structure(
            lambda o, s: tf.convert_to_tensor(o, s.dtype), observations, spec
        )
        batch = tf.nest.flatten(obs)[0].shape[0]
        return ts.restart(obs, batch_size=batch)

    def act(self, observations: Observation) -> np.ndarray:
        step = self.agent.collect_policy.action(self._time_step(observations))
        self._pending_info.append(step.info)
        return step.action.numpy()

    def learn(self, observations: Observation, actions: np.ndarray, rewards: np.ndarray) -> None:
        """Trains on the rows `act` chose since the last call, in order, with their policy info."""
        import tensorflow as tf
        from tf_agents.trajectories import trajectory

        time_step = self._time_step(observations)
        info = tf.nest.map_structure(lambda *t: tf.concat(t, 0), *self._pending_info)
        self._pending_info = []
        expand = lambda t: tf.expand_dims(t, 1)  # noqa: E731  (batch, time=1)
        experience = trajectory.single_step(
            observation=tf.nest.map_structure(expand, time_step.observation),
            action=expand(tf.constant(actions, tf.int32)),
            policy_info=tf.nest.map_structure(expand, info),
            reward=expand(tf.constant(rewards, tf.float32)),
            discount=expand(tf.zeros(len(actions), tf.float32)),
        )
        self.agent.train(experience)

    def export_agent(self):
        return self.agent

    def start_loop(self, loop: int) -> None:
        """Re-seeds TensorFlow from (seed, loop): a loop's random draws then depend only on
        them and the agent's variables, so a run resumed from a checkpoint draws what an
        uninterrupted one would (TensorFlow's global RNG state cannot be checkpointed;
        tests/test_trainer_checkpoint.py::test_a_run_that_dies_resumes_to_the_same_result)."""
        import tensorflow as tf

        if self.seed is not None:
            tf.random.set_seed((self.seed * 1_000_003 + loop) % 2**31)

    def save(self, directory: str) -> None:
        import tensorflow as tf

        tf.train.Checkpoint(agent=self.agent).write(join(directory, AGENT_CHECKPOINT))

    def load(self, directory: str) -> None:
        import tensorflow as tf

        status = tf.train.Checkpoint(agent=self.agent).read(join(directory, AGENT_CHECKPOINT))
        status.assert_existing_objects_matched()


def make_learner(spec: AgentSpec, seed: int | None = None) -> Learner:
    return LinearLearner(spec, seed) if spec.is_linear else TfAgentLearner(spec, seed)
