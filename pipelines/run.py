"""Running a pipeline: locally with kfp.local, or on Vertex AI Pipelines from its template."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from app.config import Settings, load_settings
from pipelines.definitions import RETRAINING, STARTUP, build_pipelines

NAMES = {"startup": STARTUP, "retraining": RETRAINING}


def local_parameters(settings: Settings) -> dict[str, Any]:
    return {
        "training_artifacts_dir": settings.artifacts_dir,
        "rank_k": settings.loop.rank_k,
        "num_actions": settings.loop.num_actions,
        "agent_alpha": settings.loop.agent_alpha,
        "tikhonov_weight": settings.loop.tikhonov_weight,
    }


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


def run_local(name: str, settings: Settings, log_path: Path | None = None) -> None:
    """Runs the pipeline here: every step is a subprocess of this Python, as kfp.local does it.

    kfp.local narrates every step on stdout; `log_path` sends that to a file instead.
    """
    from kfp import local

    local.init(
        runner=local.SubprocessRunner(use_venv=False), pipeline_root=settings.loop.pipeline_root
    )
    built = build_pipelines()
    pipeline = built.startup if name == STARTUP else built.retraining
    if log_path is None:
        pipeline(**local_parameters(settings))
        return
    with (
        open(log_path, "a") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):
        pipeline(**local_parameters(settings))


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.run")
    parser.add_argument("pipeline", choices=sorted(NAMES))
    parser.add_argument(
        "--lock", type=Path, help="remove this lock file when done (set by the Trigger)"
    )
    args = parser.parse_args(argv)
    try:
        if args.lock:
            args.lock.write_text(str(os.getpid()))
        run_local(NAMES[args.pipeline], load_settings())
    finally:
        if args.lock:
            args.lock.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
