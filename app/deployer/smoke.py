"""`python -m app.deployer.smoke`: does a release serve? Run by deploy.yml after a dev deploy.

It runs the release's own start-up pipeline (the template compiled against the new trainer
digest) with the new predictor image, waits for it, then sends one prediction through the
environment's endpoint and accepts it only if it came from that run's deployment: the model
version that answered was created after the run was submitted, runs the new predictor image,
and carries the alias of the policy version in every prediction. A prediction from whatever
was deployed before fails it (tests/test_smoke.py).

Settings are the Trigger function's environment as deployed (a JSON object of its variables),
so the smoke test submits exactly what the Trigger would.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.config import ConfigError, Settings, env_name, load_settings
from app.deployer.vertex import _alias as version_alias


@dataclass(frozen=True)
class ServedBy:
    """What Vertex says about the model version that answered a prediction."""

    image: str
    version_aliases: Sequence[str]
    created: datetime


def problems(
    predictions: Sequence[Mapping[str, Any]],
    served: ServedBy,
    expected_image: str,
    submitted: datetime,
) -> list[str]:
    """Why these predictions did not come from the smoke run's deployment (none: they did)."""
    found = []
    if not predictions:
        found.append("the endpoint returned no prediction")
    if served.image != expected_image:
        found.append(f"served by image {served.image}, not the new {expected_image}")
    if served.created < submitted:
        found.append(
            f"served by a model version created at {served.created.isoformat()}, "
            f"before this run's pipeline was submitted ({submitted.isoformat()})"
        )
    for prediction in predictions:
        version = str(prediction.get("policy_version", ""))
        if version_alias(version) not in served.version_aliases:
            found.append(
                f"policy_version {version!r} is not the served model version "
                f"(aliases {list(served.version_aliases)})"
            )
    return found


def settings_from(environment_file: Path, serving_image: str) -> Settings:
    """The Trigger's deployed environment, which must carry the release's predictor image
    (else the deploy did not take this release)."""
    try:
        environment = json.loads(environment_file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"{environment_file}: not a JSON object of variables ({err})") from err
    if not isinstance(environment, dict):
        raise ConfigError(f"{environment_file}: not a JSON object of variables")
    environ = {str(k): str(v) for k, v in environment.items()}
    deployed = environ.get(env_name(("cloud", "serving_image")))
    if deployed != serving_image:
        raise ConfigError(
            f"the Trigger is deployed with serving image {deployed!r}, not the new "
            f"{serving_image}: the deploy did not take this release"
        )
    return load_settings(environ=environ)


def run(settings: Settings, template: str) -> list[str]:
    """Runs the start-up pipeline to completion, then checks one prediction; returns problems."""
    from google.cloud import aiplatform

    from app.loop.parameters import STARTUP
    from app.loop.pipeline_jobs import submit_vertex, vertex_parameters

    endpoint_name = settings.loop.vertex_endpoint
    image = settings.cloud.serving_image or ""
    if not endpoint_name:
        variable = env_name(("loop", "vertex_endpoint"))
        raise ConfigError(f"loop.vertex_endpoint is not set ({variable})")
    submitted = datetime.now(UTC)
    job = submit_vertex(STARTUP, settings, template, vertex_parameters(STARTUP, settings))
    try:
        job.wait()
    except RuntimeError as err:  # the SDK's word for a failed or cancelled pipeline run
        return [f"the start-up pipeline {job.resource_name} did not succeed: {err}"]
    endpoint = aiplatform.Endpoint(endpoint_name)
    observation = [round(0.1 * (i % 10 + 1), 1) for i in range(settings.loop.rank_k)]
    response = endpoint.predict(instances=[{"observation": observation}])
    if not response.model_resource_name:
        return ["the endpoint's answer names no model: nothing is deployed"]
    model = aiplatform.Model(response.model_resource_name, version=response.model_version_id)
    served = ServedBy(
        image=model.container_spec.image_uri if model.container_spec else "",
        version_aliases=list(model.version_aliases),
        created=model.version_create_time,
    )
    return problems(response.predictions, served, image, submitted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.deployer.smoke", description=__doc__)
    parser.add_argument("--environment-file", type=Path, required=True)
    parser.add_argument("--serving-image", required=True, help="the new predictor, by digest")
    parser.add_argument("--template", required=True, help="the release's start-up template")
    args = parser.parse_args(argv)
    try:
        found = run(settings_from(args.environment_file, args.serving_image), args.template)
    except ConfigError as err:
        print(f"smoke: {err}", file=sys.stderr)
        return 2
    if found:
        print("smoke: FAILED: " + "; ".join(found), file=sys.stderr)
        return 1
    print(f"smoke: the endpoint serves the new deployment ({args.serving_image})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
