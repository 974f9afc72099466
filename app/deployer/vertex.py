"""Vertex AI deployment: a new version of one registered model on the one endpoint infra declares.

Never a new endpoint per run: the endpoint is named in configuration (an infra output), the
model is uploaded as a new version of the same registered model, traffic moves to it, and
the versions it replaced are undeployed afterwards. The model runs as the predictor account
with the cloud profile, publishing its prediction logs to the topic infra declares
(wiring.predictor_environment); machine type and replicas come from infra's environment
config through the pipeline parameters. Request contents: tests/test_vertex_requests.py.
"""

from __future__ import annotations

from typing import Any

from app import wiring
from app.config import Settings

MODEL_DISPLAY_NAME = "recloop-policy"


def deploy(policy_uri: str, version: str, settings: Settings) -> Any:
    from google.cloud import aiplatform

    wiring.require(settings, wiring.PIPELINES)
    cloud, serving = settings.cloud, settings.serving
    aiplatform.init(project=cloud.project_id, location=cloud.region)
    endpoint = aiplatform.Endpoint(str(settings.loop.vertex_endpoint))
    deployed_name = f"{MODEL_DISPLAY_NAME}-{_alias(version)}"
    current = endpoint.list_models()
    previous = [m.id for m in current if m.display_name != deployed_name]
    if len(previous) < len(current):
        # A restarted publish (app/loop/steps.py::run_deployer): this version is deployed
        # already; only retiring what the interrupted attempt left is still to do
        # (tests/test_vertex_requests.py::test_a_repeated_deploy_of_one_version_deploys_once).
        for deployed_model_id in previous:
            endpoint.undeploy(deployed_model_id=deployed_model_id, sync=True)
        return None
    existing = aiplatform.Model.list(filter=f'display_name="{MODEL_DISPLAY_NAME}"')
    model = aiplatform.Model.upload(
        display_name=MODEL_DISPLAY_NAME,
        parent_model=existing[0].resource_name if existing else None,
        is_default_version=True,
        version_aliases=[_alias(version)],
        artifact_uri=policy_uri,
        serving_container_image_uri=cloud.serving_image,
        serving_container_predict_route=serving.predict_route,
        serving_container_health_route=serving.health_route,
        serving_container_ports=[serving.port],
        serving_container_environment_variables=wiring.predictor_environment(settings),
    )
    endpoint.deploy(
        model=model,
        deployed_model_display_name=deployed_name,
        machine_type=cloud.predictor_machine_type,
        min_replica_count=cloud.predictor_min_replicas,
        max_replica_count=cloud.predictor_max_replicas,
        service_account=cloud.predictor_service_account,
        traffic_percentage=100,
        sync=True,
    )
    for deployed_model_id in previous:
        endpoint.undeploy(deployed_model_id=deployed_model_id, sync=True)
    return model


def _alias(version: str) -> str:
    """Vertex version aliases: lower-case letters, digits and dashes, starting with a letter."""
    cleaned = "".join(c if c.isalnum() else "-" for c in version.lower()).strip("-")
    return cleaned if cleaned[:1].isalpha() else f"v-{cleaned}"
