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


def deploy(policy_uri: str, version: str, settings: Settings, share: int = 100) -> Any:
    """`share` < 100 is a canary: the new version gets that percentage of the endpoint's
    traffic beside the serving one, which stays deployed until `promote` or `roll_back`."""
    from google.cloud import aiplatform

    if not 0 < share <= 100:
        raise ValueError(f"a canary's traffic share must be 1..100 percent, got {share}")
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
        traffic_percentage=share,
        sync=True,
    )
    if share == 100:
        for deployed_model_id in previous:
            endpoint.undeploy(deployed_model_id=deployed_model_id, sync=True)
    return model


class NothingToRollBackTo(ValueError):
    """Only the version being rolled back is deployed on the endpoint."""


def _endpoint(settings: Settings) -> Any:
    from google.cloud import aiplatform

    wiring.require(settings, wiring.PIPELINES)
    aiplatform.init(project=settings.cloud.project_id, location=settings.cloud.region)
    return aiplatform.Endpoint(str(settings.loop.vertex_endpoint))


def _deployed_ids(endpoint: Any, version: str) -> tuple[list[str], list[str]]:
    """(the deployed models of `version`, every other deployed model) on the endpoint."""
    name = f"{MODEL_DISPLAY_NAME}-{_alias(version)}"
    deployed = endpoint.gca_resource.deployed_models
    return (
        [d.id for d in deployed if d.display_name == name],
        [d.id for d in deployed if d.display_name != name],
    )


def promote(version: str, settings: Settings) -> None:
    """The canary won: every other deployed model is undeployed, its traffic moving to it."""
    endpoint = _endpoint(settings)
    mine, others = _deployed_ids(endpoint, version)
    if not mine:
        raise ValueError(f"policy {version} is not deployed on {endpoint.resource_name}")
    for deployed_model_id in others:
        endpoint.undeploy(deployed_model_id=deployed_model_id, sync=True)


def roll_back(version: str, settings: Settings) -> None:
    """`version` lost (or is rolled back by hand): it is undeployed, its traffic returning
    to the models deployed beside it."""
    endpoint = _endpoint(settings)
    mine, others = _deployed_ids(endpoint, version)
    if not others:
        raise NothingToRollBackTo(
            f"nothing else is deployed on {endpoint.resource_name} to roll back to"
        )
    for deployed_model_id in mine:
        endpoint.undeploy(deployed_model_id=deployed_model_id, sync=True)


def _alias(version: str) -> str:
    """Vertex version aliases: lower-case letters, digits and dashes, starting with a letter."""
    cleaned = "".join(c if c.isalnum() else "-" for c in version.lower()).strip("-")
    return cleaned if cleaned[:1].isalpha() else f"v-{cleaned}"
