"""The predictor as an ASGI application built from configuration (the server's factory)."""

from __future__ import annotations

import functools

import numpy as np

from app.config import PubSubConfig, ServingConfig, load_settings
from app.deployer.local import current_version, resolve
from app.exploration import Exploration
from app.predictor.policy import ServingPolicy, load_policy
from app.predictor.server import PredictionSink, PredictorApp


def load_deployed(storage_uri: str, exploration: Exploration | None = None) -> ServingPolicy:
    return load_policy(resolve(storage_uri), exploration=exploration)


def exploration_of(serving: ServingConfig) -> Exploration:
    """The serving settings' exploration (an ExplorationError names a bad value)."""
    return Exploration(serving.exploration, serving.epsilon, serving.temperature)


def storage_uri_of(serving: ServingConfig, artifacts_dir: str) -> str:
    """AIP_STORAGE_URI, else the trainer's default output `<artifacts_dir>/policy`."""
    return serving.storage_uri or artifacts_dir.rstrip("/") + "/policy"


def build_app(
    serving: ServingConfig, storage_uri: str, pubsub: PubSubConfig | None = None
) -> PredictorApp:
    """`storage_uri`: a policy folder, or a deployment folder whose CURRENT pointer is followed."""
    sink: PredictionSink | None = None
    if pubsub is not None and pubsub.publish_predictions:
        from app.predictor.sink import sink_for

        sink = sink_for(pubsub)
    return PredictorApp(
        functools.partial(load_deployed, storage_uri, exploration_of(serving)),
        health_route=serving.health_route,
        predict_route=serving.predict_route,
        max_body_bytes=serving.max_body_bytes,
        marker=functools.partial(current_version, storage_uri),
        sink=sink,
        rng=np.random.default_rng(serving.exploration_seed),
    )


def create() -> PredictorApp:
    settings = load_settings()
    return build_app(
        settings.serving, storage_uri_of(settings.serving, settings.artifacts_dir), settings.pubsub
    )
