"""`python -m app.predictor`: serve the policy in AIP_STORAGE_URI on AIP_HTTP_PORT."""

from __future__ import annotations

import functools
import logging
import sys

from app.config import PubSubConfig, ServingConfig, load_settings
from app.deployer.local import current_version, resolve
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
        from app.predictor.sink import PubSubPredictionSink

        sink = PubSubPredictionSink(pubsub)
    return PredictorApp(
        functools.partial(load_deployed, storage_uri),
        health_route=serving.health_route,
        predict_route=serving.predict_route,
        max_body_bytes=serving.max_body_bytes,
        marker=functools.partial(current_version, storage_uri),
        sink=sink,
    )


def serve(serving: ServingConfig, storage_uri: str, pubsub: PubSubConfig | None = None) -> None:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    uvicorn.run(
        build_app(serving, storage_uri, pubsub),
        host=serving.host,
        port=serving.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


def default_storage_uri(artifacts_dir: str) -> str:
    return artifacts_dir.rstrip("/") + "/policy"


def main() -> int:
    settings = load_settings()
    serve(
        settings.serving,
        settings.serving.storage_uri or default_storage_uri(settings.artifacts_dir),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
