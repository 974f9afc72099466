"""Vertex AI deployment: a new version of one registered model on the one endpoint infra declares.

Never a new endpoint per run: the endpoint is named in configuration (an infra output), the
model is uploaded as a new version of the same registered model, traffic moves to it, and
the versions it replaced are undeployed afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.config import ServingConfig


@dataclass(frozen=True)
class VertexTarget:
    project_id: str
    region: str
    endpoint: str  # projects/…/locations/…/endpoints/… (the infra output)
    model_display_name: str
    serving_image: str
    machine_type: str = "n1-standard-2"
    min_replicas: int = 1
    max_replicas: int = 2


def deploy(policy_uri: str, version: str, target: VertexTarget, serving: ServingConfig) -> Any:
    from google.cloud import aiplatform

    aiplatform.init(project=target.project_id, location=target.region)
    endpoint = aiplatform.Endpoint(target.endpoint)
    existing = aiplatform.Model.list(filter=f'display_name="{target.model_display_name}"')
    model = aiplatform.Model.upload(
        display_name=target.model_display_name,
        parent_model=existing[0].resource_name if existing else None,
        is_default_version=True,
        version_aliases=[_alias(version)],
        artifact_uri=policy_uri,
        serving_container_image_uri=target.serving_image,
        serving_container_predict_route=serving.predict_route,
        serving_container_health_route=serving.health_route,
        serving_container_ports=[serving.port],
    )
    previous = [m.id for m in endpoint.list_models()]
    endpoint.deploy(
        model=model,
        deployed_model_display_name=f"{target.model_display_name}-{_alias(version)}",
        machine_type=target.machine_type,
        min_replica_count=target.min_replicas,
        max_replica_count=target.max_replicas,
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
