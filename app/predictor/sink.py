"""The predictor's logging hook: every served prediction is published, asynchronously.

The record is published after the response has been sent; the Pub/Sub client batches in
the background and drops messages rather than block when its queue is full, so a slow or
failing Pub/Sub never slows or fails a prediction.
"""

from __future__ import annotations

import logging
from typing import Any

from app import messages
from app.config import PubSubConfig
from app.predictor.server import Served
from app.transport import DirectPublisher, Publisher, PubSubPublisher, parse_routes

log = logging.getLogger("recloop.predictor.sink")


class PredictionLogSink:
    def __init__(self, publisher: Publisher, topic: str):
        self.publisher, self.topic = publisher, topic

    def record(self, served: Served) -> None:
        """One row per served instance, with the exact probability of its action and, for a
        per-arm policy, the candidate movie ids (left out: the policy's whole catalogue) and a
        top-k answer's movie ids (left out: one movie); the
        message says which kind of policy served (tests/test_policy_kind.py)."""
        p = served.propensities
        chances = [None] * len(served.actions) if p is None else p.tolist()
        rows = [
            {"instance_index": i, "observation": o, "action": a, "propensity": c}
            for i, (o, a, c) in enumerate(
                zip(served.observations, served.actions.tolist(), chances, strict=True)
            )
        ]
        for key, values in (("candidates", served.candidates), ("slate", served.slates)):
            if values is not None:
                for row, ids in zip(rows, values, strict=True):
                    if ids is not None:
                        row[key] = ids
        data = messages.prediction_log(
            served.request_id, served.time, served.policy.version, rows, served.policy_kind
        )
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
