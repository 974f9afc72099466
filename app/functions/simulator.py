"""Simulator: plays MovieLens users against the serving endpoint and reports their rewards.

On each tick it samples users, asks the endpoint what to recommend, and publishes, for
exactly the users it asked about, the approximate rating of the recommended movie as
feedback keyed by the prediction's request id and instance index. (The Vertex sample
re-sampled users before computing rewards, crediting rewards to the wrong users.)
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from app import messages, movielens, wiring
from app.config import Settings, load_settings
from app.environment import MovieLensBandit, factorize
from app.functions.endpoints import Endpoint, endpoint_from
from app.transport import publisher_for

log = logging.getLogger("recloop.simulator")
SOURCE = "simulator"
INSTANCES_PER_REQUEST = 8


@dataclass(frozen=True)
class Simulation:
    users: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    optimal_rewards: np.ndarray
    request_ids: list[str]


def simulate(
    env: MovieLensBandit,
    endpoint: Endpoint,
    publish: Callable[[bytes], None],
    users: int,
    per_request: int = INSTANCES_PER_REQUEST,
) -> Simulation:
    sampled = env.sample_users(min(users, env.num_users))
    predictions: list[dict[str, Any]] = []
    for start in range(0, len(sampled), per_request):
        chunk = sampled[start : start + per_request]
        predictions += endpoint.predict(env.factorization.user_features[chunk].tolist())
    actions = np.array([p["action"] for p in predictions])
    outcome = env.outcome(sampled, actions)
    by_request: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for prediction, reward in zip(predictions, outcome.rewards.tolist(), strict=True):
        by_request[prediction["request_id"]].append((int(prediction["instance_index"]), reward))
    for request_id, rewards in by_request.items():
        publish(messages.feedback(request_id, rewards, SOURCE))
    return Simulation(sampled, actions, outcome.rewards, outcome.optimal_rewards, list(by_request))


@cache
def environment(settings: Settings) -> MovieLensBandit:
    files = movielens.locate(
        None, settings.data.movielens_dir, settings.data.cache_dir, settings.data.download
    )
    ratings = movielens.load_ratings_matrix(files.ratings)
    return MovieLensBandit(
        factorize(ratings, settings.loop.rank_k, settings.loop.num_actions), batch_size=1
    )


@cache
def _context() -> tuple[Settings, Endpoint, Callable[[bytes], None]]:
    settings = wiring.require_in_cloud(load_settings(), wiring.SIMULATOR)
    publisher = publisher_for(settings.pubsub)

    def publish(data: bytes) -> None:
        publisher.publish(settings.pubsub.feedback_topic, data, kind=messages.FEEDBACK).result(
            timeout=60
        )

    return settings, endpoint_from(settings), publish


def simulator(event: Any) -> None:
    settings, endpoint, publish = _context()
    result = simulate(environment(settings), endpoint, publish, settings.loop.simulated_users)
    log.info(
        "simulated %d users: mean reward %.3f, regret %.3f",
        len(result.users),
        float(result.rewards.mean()),
        float((result.optimal_rewards - result.rewards).mean()),
    )
