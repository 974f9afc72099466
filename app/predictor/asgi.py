"""The predictor as an ASGI application built from configuration (the server's factory)."""

from __future__ import annotations

import functools

import numpy as np

from app.config import PubSubConfig, ServingConfig, load_settings
from app.deployer import canary
from app.deployer.pointer import current_version, resolve
from app.exploration import Exploration
from app.paths import join
from app.predictor.location import storage_uri_of
from app.predictor.policy import AnyPolicy, load_for_serving, open_canary
from app.predictor.server import PredictionSink, PredictorApp


def load_deployed(storage_uri: str, exploration: Exploration | None = None) -> AnyPolicy:
    """The deployed policy (global or per-arm, as its metadata says); with a canary open
    (app/deployer/canary.py), the candidate rides along and serves its share of requests."""
    policy = load_for_serving(resolve(storage_uri), exploration=exploration)
    if (opened := canary.read(storage_uri)) is not None:
        candidate = load_for_serving(join(storage_uri, opened.version), exploration=exploration)
        open_canary(policy, candidate, opened.share / 100)
    return policy


def deployed_marker(storage_uri: str) -> str | None:
    """What decides a reload: the pointer's version and the canary's, if one is open."""
    version = current_version(storage_uri)
    opened = canary.read(storage_uri)
    return f"{version}+{opened.version}:{opened.share}" if version and opened else version


def exploration_of(serving: ServingConfig) -> Exploration:
    """The serving settings' exploration (an ExplorationError names a bad value)."""
    return Exploration(serving.exploration, serving.epsilon, serving.temperature)


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
        marker=functools.partial(deployed_marker, storage_uri),
        sink=sink,
        rng=np.random.default_rng(serving.exploration_seed),
    )


def create() -> PredictorApp:
    """A worker's app. Its BLAS runs one thread: requests are answered one at a time per worker
    (concurrency comes from workers), and on a shared 2-core machine a second BLAS thread only
    spins against the HTTP server's threads: batches of 100 over HTTP, runs side by side on the
    loaded machine, answered 1,613 vs 1,264 and 1,327 vs 1,028 requests/s. Proved to apply by
    tests/test_per_arm_serving.py::test_a_worker_runs_one_blas_thread."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
    settings = load_settings()
    return build_app(
        settings.serving, storage_uri_of(settings.serving, settings.artifacts_dir), settings.pubsub
    )
