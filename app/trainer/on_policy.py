"""The on-policy bandit loop: observe, act, reward, and learn once per loop.

It mirrors TF-Agents' bandit trainer (a DynamicStepDriver collecting
`batch_size × steps_per_loop` interactions, then one `agent.train` on them).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from app.environment import Observation, Outcome
from app.trainer.learners import Learner
from app.trainer.metrics import History, LoopMetrics


def _stack(observations: list[Observation]) -> Observation:
    first = observations[0]
    if isinstance(first, dict):
        return {k: np.concatenate([o[k] for o in observations]) for k in first}
    return np.concatenate(observations)  # type: ignore[arg-type]


def train_on_policy(
    env,
    learner: Learner,
    training_loops: int,
    steps_per_loop: int,
    history: History | None = None,
    on_loop: Callable[[LoopMetrics], None] | None = None,
) -> History:
    history = history or History()
    started = time.perf_counter()
    for loop in range(len(history.loops), training_loops):
        learner.start_loop(loop)
        observations: list[Observation] = []
        actions: list[np.ndarray] = []
        outcomes: list[Outcome] = []
        for _ in range(steps_per_loop):
            observation = env.observe()
            action = learner.act(observation)
            outcomes.append(env.step(action))
            observations.append(observation)
            actions.append(action)
        chosen = np.concatenate(actions)
        learner.learn(_stack(observations), chosen, np.concatenate([o.rewards for o in outcomes]))
        metrics = history.record(loop, chosen, outcomes)
        now = time.perf_counter()
        history.seconds += now - started  # training time only: progress and checkpoints aside
        if on_loop is not None:
            on_loop(metrics)
        started = time.perf_counter()
    return history
