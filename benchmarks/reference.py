"""TF-Agents' reference bandit loop, as train_eval_movielens and its trainer run it.

MovieLensPyEnvironment in a TFPyEnvironment, LinearUCBAgent, a BanditReplayBuffer filled by
a DynamicStepDriver, then `agent.train` on everything gathered, once per loop.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np

# train_eval_movielens.py constants.
BATCH_SIZE = 8
STEPS_PER_LOOP = 2
RANK_K = 20
NUM_ACTIONS = 20
AGENT_ALPHA = 10.0
TIKHONOV_WEIGHT = 0.001


@dataclass(frozen=True)
class LoopResult:
    regret: list[float]
    interactions: int
    seconds: float

    @property
    def interactions_per_second(self) -> float:
        return self.interactions / self.seconds


def run_reference(data_file: str, training_loops: int, seed: int) -> LoopResult:
    import random

    import tensorflow as tf
    from tf_agents.bandits.agents import lin_ucb_agent
    from tf_agents.bandits.environments import environment_utilities, movielens_py_environment
    from tf_agents.bandits.metrics import tf_metrics as bandit_metrics
    from tf_agents.bandits.replay_buffers import bandit_replay_buffer
    from tf_agents.drivers import dynamic_step_driver
    from tf_agents.environments import tf_py_environment

    random.seed(seed)  # MovieLensPyEnvironment samples users with the `random` module
    tf.random.set_seed(seed)
    env = movielens_py_environment.MovieLensPyEnvironment(
        data_file, RANK_K, BATCH_SIZE, num_movies=NUM_ACTIONS, csv_delimiter="\t"
    )
    environment = tf_py_environment.TFPyEnvironment(env)
    agent = lin_ucb_agent.LinearUCBAgent(
        time_step_spec=environment.time_step_spec(),
        action_spec=environment.action_spec(),
        tikhonov_weight=TIKHONOV_WEIGHT,
        alpha=AGENT_ALPHA,
        dtype=tf.float32,
    )
    regret_metric = bandit_metrics.RegretMetric(
        functools.partial(
            environment_utilities.compute_optimal_reward_with_movielens_environment,
            environment=environment,
        )
    )
    replay_buffer = bandit_replay_buffer.BanditReplayBuffer(
        data_spec=agent.policy.trajectory_spec, batch_size=BATCH_SIZE, max_length=STEPS_PER_LOOP
    )
    step_regrets: list[float] = []

    def record_regret(trajectory) -> None:  # type: ignore[no-untyped-def]
        regret_metric(trajectory)
        step_regrets.append(float(regret_metric.result()))

    driver = dynamic_step_driver.DynamicStepDriver(
        env=environment,
        policy=agent.collect_policy,
        num_steps=STEPS_PER_LOOP * BATCH_SIZE,
        observers=[replay_buffer.add_batch, record_regret],
    )
    regret: list[float] = []
    started = time.perf_counter()
    for _ in range(training_loops):
        driver.run()
        agent.train(replay_buffer.gather_all())
        replay_buffer.clear()
        regret.append(float(np.mean(step_regrets[-STEPS_PER_LOOP:])))
    seconds = time.perf_counter() - started
    return LoopResult(regret, training_loops * STEPS_PER_LOOP * BATCH_SIZE, seconds)
