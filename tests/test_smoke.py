"""The dev smoke test accepts only a prediction from the deployment it made (issue 8, defect 7)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.config import ConfigError, Settings
from app.deployer.smoke import ServedBy, main, problems, run, settings_from
from app.deployer.vertex import _alias as version_alias
from app.loop.parameters import STARTUP
from app.rehearsal.fakes import FakeVertex
from tests.test_vertex_requests import TRAINER, trigger_environment

NEW = "us-central1-docker.pkg.dev/recloop-dev/recloop/predictor@sha256:" + "b" * 64
OLD = "us-central1-docker.pkg.dev/recloop-dev/recloop/predictor@sha256:" + "a" * 64
SUBMITTED = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
PREDICTIONS = [{"action": 3, "policy_version": "v20261123T151000Z"}]


def served(image: str = NEW, aliases=("v20261123t151000z", "default"), minutes: int = 10):
    return ServedBy(image, list(aliases), SUBMITTED + timedelta(minutes=minutes))


def test_a_prediction_from_the_new_deployment_passes():
    assert problems(PREDICTIONS, served(), NEW, SUBMITTED) == []


@pytest.mark.parametrize(
    ("by", "predictions", "why"),
    [
        (served(image=OLD), PREDICTIONS, "not the new"),  # the previous predictor image
        (served(minutes=-60), PREDICTIONS, "before this run"),  # deployed before the run
        (served(aliases=("v20261122t090000z",)), PREDICTIONS, "is not the served model"),
        (served(), [{"action": 3, "policy_version": "v20261122T090000Z"}], "is not the served"),
        (served(), [], "no prediction"),
    ],
)
def test_whatever_was_deployed_before_fails(by: ServedBy, predictions, why: str):
    found = problems(predictions, by, NEW, SUBMITTED)
    assert found and any(why in p for p in found), found


def test_settings_are_the_triggers_environment_with_the_new_image(tmp_path: Path):
    environment = tmp_path / "trigger.json"
    environment.write_text(
        json.dumps(
            {
                "RECLOOP_PROFILE": "dev",
                "RECLOOP__CLOUD__PROJECT_ID": "recloop-dev",
                "RECLOOP__LOOP__VERTEX_ENDPOINT": "projects/1/locations/us-central1/endpoints/7",
                "RECLOOP__CLOUD__SERVING_IMAGE": NEW,
            }
        )
    )
    settings = settings_from(environment, NEW)
    assert settings.profile == "dev" and settings.cloud.project_id == "recloop-dev"
    assert settings.loop.vertex_endpoint == "projects/1/locations/us-central1/endpoints/7"
    assert settings.cloud.serving_image == NEW
    with pytest.raises(ConfigError, match="did not take this release"):
        settings_from(environment, OLD)


def test_an_unreadable_environment_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    bad = tmp_path / "trigger.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not a JSON object"):
        settings_from(bad, NEW)
    args = ["--environment-file", str(tmp_path / "missing.json"), "--serving-image", NEW]
    assert main([*args, "--template", "gs://b/pipelines/c/recloop-startup.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("smoke: ") and len(err.strip().splitlines()) == 1


# --- the SDK's requests and Vertex's answers: app/rehearsal/fakes.py at the gRPC channel ----

OLD_VERSION = "v20261122T090000Z"
NEW_VERSION = "v20261123T151000Z"


class VertexAfterTheRun(FakeVertex):
    """Vertex as the smoke test finds it: the start-up run succeeds and, if `deploys` names an
    image, its Deployer has put a new model version with that image on the endpoint;
    predictions name the policy version of the model version that serves."""

    deploys: str | None = None
    serving: str = OLD_VERSION

    def deploy_version(self, image: str, version: str, created: datetime) -> None:
        from google.cloud.aiplatform_v1 import types

        (name,) = self.models
        self.models[name] = types.Model(
            name=name,
            display_name="recloop-policy",
            version_id=str(int(self.models[name].version_id) + 1),
            version_aliases=[version_alias(version)],
            version_create_time=created,
            container_spec=types.ModelContainerSpec(image_uri=image),
        )
        self.serving = version

    def _pipelineservice_getpipelinejob(self, body: Any) -> Any:
        from google.cloud.aiplatform_v1 import types

        job = next(j for j in self.pipeline_jobs if j.name == body.name)
        if job.state != types.PipelineState.PIPELINE_STATE_SUCCEEDED and self.deploys:
            self.deploy_version(self.deploys, NEW_VERSION, datetime.now(UTC))
        job.state = types.PipelineState.PIPELINE_STATE_SUCCEEDED
        return job

    def _predictionservice_predict(self, body: Any) -> Any:
        from google.cloud.aiplatform_v1 import types
        from google.protobuf import json_format, struct_pb2

        (name,) = self.models
        response = types.PredictResponse(
            deployed_model_id="9", model=name, model_version_id=self.models[name].version_id
        )
        raw = types.PredictResponse.pb(response)  # repeated Value: filled on the raw message
        for _ in body.instances:
            prediction = {"action": 1, "policy_version": self.serving}
            raw.predictions.append(json_format.ParseDict(prediction, struct_pb2.Value()))
        return response


@pytest.fixture(scope="module")
def startup_template(tmp_path_factory: pytest.TempPathFactory) -> str:
    from pipelines.compile import compile_all

    paths = compile_all(tmp_path_factory.mktemp("templates"), TRAINER)
    return str(next(p for p in paths if p.stem == STARTUP))


def vertex_with_the_previous_deployment(
    deploys: str | None, folder: Path
) -> tuple[VertexAfterTheRun, Settings]:
    """Vertex serving an older policy in the old image; the Trigger deployed with the new one."""
    fake = VertexAfterTheRun(project="recloop-dev")
    fake.deploys = deploys
    endpoint = fake.add_endpoint("77", ("old-1",))
    fake.add_model("recloop-policy")
    fake.deploy_version(OLD, OLD_VERSION, SUBMITTED - timedelta(days=1))
    trigger = {**trigger_environment("dev", endpoint), "RECLOOP__CLOUD__SERVING_IMAGE": NEW}
    (folder / "trigger.json").write_text(json.dumps(trigger))
    return fake, settings_from(folder / "trigger.json", NEW)


def test_the_smoke_run_submits_the_release_startup_pipeline_and_accepts_its_deployment(
    startup_template: str, tmp_path: Path
):
    fake, settings = vertex_with_the_previous_deployment(NEW, tmp_path)
    with fake.install():
        assert run(settings, startup_template) == []
    (create,) = fake.sent("PipelineService/CreatePipelineJob")
    assert create.pipeline_job.display_name == STARTUP
    values = dict(create.pipeline_job.runtime_config.parameter_values)
    assert values["serving_image"] == NEW  # the run deploys the new predictor
    assert values["endpoint"] == settings.loop.vertex_endpoint
    (predict,) = fake.sent("PredictionService/Predict")
    assert predict.endpoint == settings.loop.vertex_endpoint


def test_the_smoke_run_fails_when_the_endpoint_still_serves_the_previous_deployment(
    startup_template: str, tmp_path: Path
):
    fake, settings = vertex_with_the_previous_deployment(None, tmp_path)
    with fake.install():
        found = run(settings, startup_template)
    assert any("not the new" in p for p in found), found
    assert any("before this run" in p for p in found), found
