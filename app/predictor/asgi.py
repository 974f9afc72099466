"""The predictor as an ASGI application built from configuration (the server's factory)."""

from __future__ import annotations

import functools

from app.config import PubSubConfig, ServingConfig, load_settings
from app.deployer.local import current_version, resolve
from app.predictor.location import storage_uri_of
from app.predictor.policy import ServingPolicy, load_policy
from app.predictor.server import PredictionSink, PredictorApp


def load_deployed(storage_uri: str) -> ServingPolicy:
    return load_policy(resolve(storage_uri))


def build_app(
    serving: ServingConfig, storage_uri: str, pubsub: PubSubConfig | None = None
) -> PredictorApp:
    """`storage_uri`: a policy folder, or a deployment folder whose CURRENT pointer is followed."""
    sink: PredictionSink | None = None
    if pubsub is not None and pubsub.publish_predictions:
        from app.predictor.sink import sink_for

        sink = sink_for(pubsub)
    return PredictorApp(
        functools.partial(load_deployed, storage_uri),
        health_route=serving.health_route,
        predict_route=serving.predict_route,
        max_body_bytes=serving.max_body_bytes,
        marker=functools.partial(current_version, storage_uri),
        sink=sink,
    )


def create() -> PredictorApp:
    settings = load_settings()
    return build_app(
        settings.serving, storage_uri_of(settings.serving, settings.artifacts_dir), settings.pubsub
    )
