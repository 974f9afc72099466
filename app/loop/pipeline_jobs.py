"""Submitting a compiled pipeline to Vertex AI Pipelines (no kfp needed: the Trigger uses it)."""

from __future__ import annotations

from typing import Any

from app import wiring
from app.config import Settings
from app.loop.parameters import PipelineParameters


def vertex_parameters(pipeline: str, settings: Settings, **pipeline_only: Any) -> dict[str, Any]:
    """Pipeline parameters of a cloud environment, all taken from its configuration (the
    tuned values: <artifacts_dir>/best_hyperparameters.json, read by the Trainer step)."""
    return PipelineParameters.from_settings(settings, **pipeline_only).values(pipeline)


def submit_vertex(
    name: str, settings: Settings, template_path: str, parameters: dict[str, Any]
) -> Any:
    """Submits the job as the pipelines account, its root on GCS, labelled with the release;
    a setting the submission needs that is missing or local (a pipeline root that is not
    gs://) fails here, before anything is sent (request contents, and the refusal:
    tests/test_vertex_requests.py)."""
    from google.cloud import aiplatform

    wiring.require(settings, wiring.SUBMISSION)
    cloud = settings.cloud
    aiplatform.init(project=cloud.project_id, location=cloud.region)
    job = aiplatform.PipelineJob(
        display_name=name,
        template_path=template_path,
        pipeline_root=settings.loop.pipeline_root,
        parameter_values=parameters,
        enable_caching=False,
        labels={"release": cloud.release} if cloud.release else None,
    )
    job.submit(service_account=cloud.pipelines_service_account)
    return job
