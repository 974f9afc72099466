"""`python -m app.predictor`: serve the policy in AIP_STORAGE_URI on AIP_HTTP_PORT."""

from __future__ import annotations

import functools
import logging
import sys

from app.config import ServingConfig, load_settings
from app.predictor.policy import load_policy
from app.predictor.server import PredictorApp


def build_app(serving: ServingConfig, storage_uri: str) -> PredictorApp:
    return PredictorApp(
        functools.partial(load_policy, storage_uri),
        health_route=serving.health_route,
        predict_route=serving.predict_route,
        max_body_bytes=serving.max_body_bytes,
    )


def serve(serving: ServingConfig, storage_uri: str) -> None:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    uvicorn.run(
        build_app(serving, storage_uri),
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
