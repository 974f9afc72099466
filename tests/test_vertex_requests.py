"""What recloop asks of Vertex AI, asserted call by call (Vertex cannot run here)."""

from types import SimpleNamespace

import google.cloud.aiplatform  # noqa: F401  (so that it can be patched)
import pytest

from app.config import CloudConfig, LoopConfig, ServingConfig, Settings
from app.deployer.vertex import VertexTarget, deploy
from app.loop.pipeline_jobs import submit_vertex

TARGET = VertexTarget(
    project_id="recloop-dev",
    region="europe-west4",
    endpoint="projects/1/locations/europe-west4/endpoints/77",
    model_display_name="recloop-policy",
    serving_image="europe-west4-docker.pkg.dev/recloop-dev/recloop/predictor@sha256:abc",
)


def test_deploy_uploads_a_new_version_to_the_one_endpoint_and_retires_the_old(mocker):
    aiplatform = mocker.patch("google.cloud.aiplatform")
    existing = SimpleNamespace(resource_name="projects/1/locations/europe-west4/models/5")
    aiplatform.Model.list.return_value = [existing]
    endpoint = aiplatform.Endpoint.return_value
    endpoint.list_models.return_value = [SimpleNamespace(id="old-1")]

    model = deploy("gs://art/policies/v20261122T1", "v20261122T1", TARGET, ServingConfig())

    aiplatform.init.assert_called_once_with(project="recloop-dev", location="europe-west4")
    aiplatform.Endpoint.assert_called_once_with("projects/1/locations/europe-west4/endpoints/77")
    aiplatform.Model.upload.assert_called_once_with(
        display_name="recloop-policy",
        parent_model="projects/1/locations/europe-west4/models/5",
        is_default_version=True,
        version_aliases=["v20261122t1"],
        artifact_uri="gs://art/policies/v20261122T1",
        serving_container_image_uri=TARGET.serving_image,
        serving_container_predict_route="/predict",
        serving_container_health_route="/health",
        serving_container_ports=[8080],
    )
    endpoint.deploy.assert_called_once_with(
        model=aiplatform.Model.upload.return_value,
        deployed_model_display_name="recloop-policy-v20261122t1",
        machine_type="n1-standard-2",
        min_replica_count=1,
        max_replica_count=2,
        traffic_percentage=100,
        sync=True,
    )
    endpoint.undeploy.assert_called_once_with(deployed_model_id="old-1", sync=True)
    assert aiplatform.Endpoint.create.call_count == 0  # never a new endpoint
    assert model is aiplatform.Model.upload.return_value


def test_first_deploy_registers_the_model(mocker):
    aiplatform = mocker.patch("google.cloud.aiplatform")
    aiplatform.Model.list.return_value = []
    aiplatform.Endpoint.return_value.list_models.return_value = []
    deploy("gs://a/p/v1", "v1", TARGET, ServingConfig())
    assert aiplatform.Model.upload.call_args.kwargs["parent_model"] is None
    assert aiplatform.Endpoint.return_value.undeploy.call_count == 0


def test_pipeline_job_request(mocker):
    aiplatform = mocker.patch("google.cloud.aiplatform")
    settings = Settings(
        artifacts_dir="gs://recloop-dev-artifacts",
        cloud=CloudConfig(
            project_id="recloop-dev",
            region="europe-west4",
            service_account="pipelines@recloop-dev.iam.gserviceaccount.com",
        ),
        loop=LoopConfig(pipeline_root="gs://recloop-dev-artifacts/pipeline-root"),
    )
    job = submit_vertex(
        "recloop-retraining", settings, "gs://t/recloop-retraining.yaml", {"rank_k": 20}
    )
    aiplatform.init.assert_called_once_with(project="recloop-dev", location="europe-west4")
    aiplatform.PipelineJob.assert_called_once_with(
        display_name="recloop-retraining",
        template_path="gs://t/recloop-retraining.yaml",
        pipeline_root="gs://recloop-dev-artifacts/pipeline-root",
        parameter_values={"rank_k": 20},
        enable_caching=False,
    )
    job.submit.assert_called_once_with(
        service_account="pipelines@recloop-dev.iam.gserviceaccount.com"
    )


def test_pipeline_submission_needs_a_project():
    with pytest.raises(ValueError, match=r"cloud\.project_id is not set"):
        submit_vertex("x", Settings(), "t.yaml", {})


def test_cli_submits_the_compiled_pipeline_to_vertex(mocker, monkeypatch):
    from typer.testing import CliRunner

    from app.cli import app

    aiplatform = mocker.patch("google.cloud.aiplatform")
    aiplatform.PipelineJob.return_value.resource_name = (
        "projects/1/locations/us-central1/pipelineJobs/7"
    )
    monkeypatch.setenv("RECLOOP__CLOUD__PROJECT_ID", "recloop-dev")
    monkeypatch.setenv(
        "RECLOOP__CLOUD__TRAINER_IMAGE", "us-docker.pkg.dev/recloop-dev/recloop/trainer@sha256:1"
    )
    result = CliRunner().invoke(app, ["pipeline", "run", "retraining", "--env", "dev"])
    assert result.exit_code == 0, result.output
    assert "submitted projects/1/locations/us-central1/pipelineJobs/7" in result.output
    kwargs = aiplatform.PipelineJob.call_args.kwargs
    assert kwargs["display_name"] == "recloop-retraining"
    assert kwargs["template_path"].endswith("recloop-retraining.yaml")
    assert kwargs["parameter_values"]["project_id"] == "recloop-dev"
    assert kwargs["parameter_values"]["training_artifacts_dir"] == "gs://recloop-dev-artifacts"
    assert kwargs["parameter_values"]["bigquery_dataset_id"] == "recloop_dev"
