"""The predictor's logging hook: every served prediction is published, asynchronously.

The record is published after the response has been sent; the Pub/Sub client batches in
the background and drops messages rather than block when its queue is full, so a slow or
failing Pub/Sub never slows or fails a prediction.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import numpy as np

from app import messages
from app.config import PubSubConfig
from app.predictor.policy import ServingPolicy
from app.transport import DirectPublisher, Publisher, PubSubPublisher, parse_routes

log = logging.getLogger("recloop.predictor.sink")


class PredictionLogSink:
    def __init__(self, publisher: Publisher, topic: str):
        self.publisher, self.topic = publisher, topic

    def record(
        self,
        request_id: str,
        time: datetime,
        policy: ServingPolicy,
        observations: np.ndarray,
        actions: np.ndarray,
        propensities: np.ndarray | None,
    ) -> None:
        """One row per served instance, with the exact probability of its action."""
        chances = [None] * len(actions) if propensities is None else propensities.tolist()
        rows = [
            {
                "instance_index": i,
                "observation": o,
                "action": int(a),
                "propensity": p,
            }
            for i, (o, a, p) in enumerate(zip(observations, actions, chances, strict=True))
        ]
        data = messages.prediction_log(request_id, time, policy.version, rows)
        future = self.publisher.publish(self.topic, data, kind=messages.PREDICTION_LOG)
        future.add_done_callback(_report_failure)


def sink_for(config: PubSubConfig) -> PredictionLogSink:
    publisher: Publisher
    if config.push_endpoints:
        publisher = DirectPublisher(config, parse_routes(config.push_endpoints))
    else:
        publisher = PubSubPublisher(config, client=_batching_client())
    return PredictionLogSink(publisher, config.prediction_logs_topic)


def _batching_client() -> Any:
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]
    from google.cloud.pubsub_v1.types import (
        BatchSettings,
        LimitExceededBehavior,
        PublisherOptions,
        PublishFlowControl,
    )

    return pubsub_v1.PublisherClient(
        batch_settings=BatchSettings(max_messages=500, max_latency=0.05),
        publisher_options=PublisherOptions(
            flow_control=PublishFlowControl(
                message_limit=10_000, limit_exceeded_behavior=LimitExceededBehavior.IGNORE
            )
        ),
    )


def _report_failure(future: Any) -> None:
    if (error := future.exception()) is not None:
        log.warning("could not publish a prediction log: %s", error)
