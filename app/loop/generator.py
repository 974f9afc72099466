"""Generator: a uniformly random data-collecting policy writes the first interactions.

Each row is a prediction (propensity 1/num_actions) and its reward, written as the serving
path would write them, so that the first training run reads exactly what later ones do.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import numpy as np

from app.environment import MovieLensBandit
from app.warehouse.base import Warehouse
from app.warehouse.records import FeedbackRecord, PredictionRecord

POLICY_VERSION = "random"
SOURCE = "generator"


def generate(env: MovieLensBandit, warehouse: Warehouse, driver_steps: int, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    propensity = 1.0 / env.num_actions
    predictions: list[PredictionRecord] = []
    feedback: list[FeedbackRecord] = []
    for _ in range(driver_steps):
        observations = env.observe()
        actions = rng.integers(env.num_actions, size=len(observations))
        rewards = env.step(actions).rewards
        request_id = f"generator-{uuid.uuid4().hex}"
        now = datetime.now(UTC)
        for i, (observation, action, reward) in enumerate(
            zip(observations, actions, rewards, strict=True)
        ):
            predictions.append(
                PredictionRecord(
                    request_id,
                    i,
                    now,
                    POLICY_VERSION,
                    observation.tolist(),
                    int(action),
                    propensity,
                )
            )
            feedback.append(FeedbackRecord(request_id, i, now, float(reward), SOURCE))
    warehouse.insert_predictions(predictions)
    warehouse.insert_feedback(feedback)
    return len(predictions)
