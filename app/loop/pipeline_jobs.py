"""Submitting a compiled pipeline to Vertex AI Pipelines (no kfp needed: the Trigger uses it)."""

from __future__ import annotations

from typing import Any

from app.config import Settings


def vertex_parameters(settings: Settings) -> dict[str, Any]:
    """Pipeline parameters of a cloud environment, all taken from its configuration."""
    return {
        "project_id": settings.cloud.project_id,
        "training_artifacts_dir": settings.artifacts_dir,
        "bigquery_dataset_id": settings.warehouse.dataset,
        "bigquery_location": settings.warehouse.location,
        "rank_k": settings.loop.rank_k,
        "num_actions": settings.loop.num_actions,
        "agent_alpha": settings.loop.agent_alpha,
        "tikhonov_weight": settings.loop.tikhonov_weight,
        "endpoint": settings.loop.vertex_endpoint or "",
        "serving_image": settings.cloud.serving_image or "",
        "region": settings.cloud.region,
    }


def submit_vertex(
    name: str, settings: Settings, template_path: str, parameters: dict[str, Any]
) -> Any:
    from google.cloud import aiplatform

    cloud = settings.cloud
    if not cloud.project_id:
        raise ValueError("cloud.project_id is not set (RECLOOP__CLOUD__PROJECT_ID)")
    aiplatform.init(project=cloud.project_id, location=cloud.region)
    job = aiplatform.PipelineJob(
        display_name=name,
        template_path=template_path,
        pipeline_root=settings.loop.pipeline_root,
        parameter_values=parameters,
        enable_caching=False,
    )
    job.submit(service_account=cloud.service_account)
    return job
