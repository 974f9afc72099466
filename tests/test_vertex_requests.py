"""What Vertex AI receives from recloop: the real SDK builds and serializes every request,
app/rehearsal/fakes.py decodes it at the gRPC channel, and these tests assert what the
service needs (image, routes, ports, environment, identity, resources, traffic, pipeline
root, parameters)."""

import warnings
from pathlib import Path

import pytest

from app import wiring
from app.config import env_name, load_settings
from app.deployer import vertex
from app.functions.trigger import VertexLauncher
from app.loop.parameters import RETRAINING, PipelineParameters
from app.rehearsal.fakes import FakeVertex
from infra import config as infra_config

warnings.filterwarnings("ignore", category=FutureWarning)
SERVING = "us-central1-docker.pkg.dev/recloop-prod/recloop/predictor@sha256:" + "b" * 64
TRAINER = "us-central1-docker.pkg.dev/recloop-prod/recloop/trainer@sha256:" + "a" * 64
RELEASE = "c" * 40


def trigger_environment(env: str, endpoint: str) -> dict[str, str]:
    """The Trigger's environment as infra builds it (tests/infra/test_wiring.py checks infra
    against the same declaration), sized by infra's environment config."""
    c = infra_config.load(env)

    def account(name: str) -> str:
        return f"{c.name(name)}@{c.project_id}.iam.gserviceaccount.com"

    return {
        "RECLOOP_PROFILE": env,
        "RECLOOP__ARTIFACTS_DIR": f"gs://{c.name('artifacts')}",
        "RECLOOP__CLOUD__PROJECT_ID": c.project_id,
        "RECLOOP__CLOUD__REGION": c.region,
        "RECLOOP__CLOUD__PIPELINES_SERVICE_ACCOUNT": account("pipelines"),
        "RECLOOP__CLOUD__PREDICTOR_SERVICE_ACCOUNT": account("predictor"),
        "RECLOOP__CLOUD__PREDICTOR_MACHINE_TYPE": c.predictor_machine_type,
        "RECLOOP__CLOUD__PREDICTOR_MIN_REPLICAS": str(c.predictor_min_replicas),
        "RECLOOP__CLOUD__PREDICTOR_MAX_REPLICAS": str(c.predictor_max_replicas),
        "RECLOOP__CLOUD__SERVING_IMAGE": SERVING,
        "RECLOOP__CLOUD__TRAINER_IMAGE": TRAINER,
        "RECLOOP__CLOUD__RELEASE": RELEASE,
        "RECLOOP__WAREHOUSE__DATASET": c.dataset_id,
        "RECLOOP__WAREHOUSE__LOCATION": c.bigquery_location,
        "RECLOOP__PUBSUB__PROJECT_ID": c.project_id,
        "RECLOOP__PUBSUB__PREDICTION_LOGS_TOPIC": "recloop-prediction-logs",
        "RECLOOP__LOOP__VERTEX_ENDPOINT": endpoint,
        "RECLOOP__LOOP__PIPELINE_ROOT": f"gs://{c.name('artifacts')}/pipeline-root",
        "RECLOOP__LOOP__RETRAINING_TEMPLATE": (
            f"gs://{c.name('artifacts')}/pipelines/{RELEASE}/recloop-retraining.yaml"
        ),
    }


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("RECLOOP"):
            monkeypatch.delenv(name)


@pytest.fixture
def fake() -> FakeVertex:
    return FakeVertex(project="recloop-prod")


def deployer_settings(fake: FakeVertex, env: str = "prod"):
    """The Deployer step's settings: Trigger settings → pipeline parameters → step."""
    trigger = load_settings(environ=trigger_environment(env, fake.add_endpoint("77", ("old-1",))))
    return PipelineParameters.from_settings(trigger).settings()


def test_deploy_sends_a_cloud_predictor_that_publishes_as_the_predictor_account(fake):
    settings = deployer_settings(fake)
    fake.add_model("recloop-policy")
    with fake.install():
        vertex.deploy("gs://recloop-prod-artifacts/policies/v20261122T1", "v20261122T1", settings)

    (upload,) = fake.sent("ModelService/UploadModel")
    model = upload.model
    assert model.artifact_uri == "gs://recloop-prod-artifacts/policies/v20261122T1"
    container = model.container_spec
    assert container.image_uri == SERVING
    assert (container.predict_route, container.health_route) == ("/predict", "/health")
    assert [p.container_port for p in container.ports] == [8080]
    served = {e.name: e.value for e in container.env}
    predictor = wiring.require(load_settings(environ=served), wiring.PREDICTOR)
    assert predictor.profile == "prod"
    assert predictor.pubsub.project_id == "recloop-prod"
    assert predictor.pubsub.prediction_logs_topic == "recloop-prediction-logs"
    assert predictor.pubsub.publish_predictions is True
    assert upload.parent_model.endswith("/models/1")  # a new version of the one model
    assert "v20261122t1" in model.version_aliases

    (deploy,) = fake.sent("EndpointService/DeployModel")
    assert deploy.endpoint.endswith("/endpoints/77")
    deployed = deploy.deployed_model
    assert deployed.service_account == "recloop-prod-predictor@recloop-prod.iam.gserviceaccount.com"
    resources = deployed.dedicated_resources
    assert resources.machine_spec.machine_type == "n1-standard-4"  # infra/environments/prod.toml
    assert (resources.min_replica_count, resources.max_replica_count) == (2, 6)
    assert dict(deploy.traffic_split) == {"0": 100}  # all traffic to the model being deployed

    (undeploy,) = fake.sent("EndpointService/UndeployModel")
    assert undeploy.deployed_model_id == "old-1"
    assert not fake.sent("EndpointService/CreateEndpoint")  # never a new endpoint


def test_first_deploy_registers_the_model(fake):
    settings = deployer_settings(fake, "dev")
    with fake.install():
        vertex.deploy("gs://recloop-dev-artifacts/policies/v1", "v1", settings)
    (upload,) = fake.sent("ModelService/UploadModel")
    assert upload.parent_model == ""
    (deploy,) = fake.sent("EndpointService/DeployModel")
    assert deploy.deployed_model.dedicated_resources.machine_spec.machine_type == "n1-standard-2"


def test_a_repeated_deploy_of_one_version_deploys_once(fake):
    """A publish restarted after its Vertex deploy (issue 8, defect 3) uploads and deploys
    nothing again; it only retires what the first attempt left deployed."""
    settings = deployer_settings(fake, "dev")
    with fake.install():
        vertex.deploy("gs://recloop-dev-artifacts/policies/v1", "v1", settings)
        vertex.deploy("gs://recloop-dev-artifacts/policies/v1", "v1", settings)
    assert len(fake.sent("ModelService/UploadModel")) == 1
    assert len(fake.sent("EndpointService/DeployModel")) == 1
    assert [u.deployed_model_id for u in fake.sent("EndpointService/UndeployModel")] == ["old-1"]


def test_deploy_refuses_local_settings_before_sending_anything(fake):
    with fake.install(), pytest.raises(wiring.WiringError, match=r"cloud\.serving_image"):
        vertex.deploy("gs://a/p/v1", "v1", load_settings("dev", environ={}))
    assert fake.requests == []


@pytest.fixture(scope="module")
def retraining_template(tmp_path_factory) -> Path:
    from pipelines.compile import compile_all

    paths = compile_all(tmp_path_factory.mktemp("templates"), TRAINER)
    return next(p for p in paths if p.stem == RETRAINING)


def test_the_trigger_submits_a_job_vertex_accepts(fake, retraining_template):
    """The real SDK checks the parameters against the compiled template, then sends them."""
    settings = load_settings(environ=trigger_environment("prod", "projects/1/x/endpoints/77"))
    with fake.install():
        launcher = VertexLauncher(settings, str(retraining_template))
        assert launcher.running() is False
        launcher.start()

    (create,) = fake.sent("PipelineService/CreatePipelineJob")
    job = create.pipeline_job
    assert create.parent == "projects/recloop-prod/locations/us-central1"
    assert job.service_account == "recloop-prod-pipelines@recloop-prod.iam.gserviceaccount.com"
    assert job.runtime_config.gcs_output_directory == "gs://recloop-prod-artifacts/pipeline-root"
    assert dict(job.labels)["release"] == RELEASE
    values = dict(job.runtime_config.parameter_values)
    assert values["serving_image"] == SERVING
    assert values["profile"] == "prod"
    assert values["endpoint"] == "projects/1/x/endpoints/77"
    assert values["predictor_machine_type"] == "n1-standard-4"
    assert (values["predictor_min_replicas"], values["predictor_max_replicas"]) == (2, 6)
    assert values["predictor_service_account"].startswith("recloop-prod-predictor@")
    # Where `recloop tune` leaves its winner: the Trainer step trains with it when it exists
    # (tests/test_tuning.py::test_the_trainer_step_trains_with_the_tuned_values).
    assert values["best_hyperparameters"] == "gs://recloop-prod-artifacts/best_hyperparameters.json"
    executors = job.pipeline_spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {TRAINER}


def test_submission_needs_the_cloud_settings(fake, retraining_template):
    environ = trigger_environment("dev", "projects/1/x/endpoints/77")
    del environ["RECLOOP__CLOUD__SERVING_IMAGE"]
    with fake.install(), pytest.raises(wiring.WiringError, match="RECLOOP__CLOUD__SERVING_IMAGE"):
        VertexLauncher(load_settings(environ=environ), str(retraining_template)).start()
    assert not fake.sent("PipelineService/CreatePipelineJob")


def test_submission_refuses_the_local_pipeline_root(fake, retraining_template):
    """The smoke test and `recloop pipeline run --env` submit through the same call; a cloud
    profile without RECLOOP__LOOP__PIPELINE_ROOT kept the local `.recloop/pipeline-root`,
    which Vertex rejects (before: the request was sent)."""
    from app.loop.pipeline_jobs import submit_vertex, vertex_parameters

    environ = trigger_environment("dev", "projects/1/x/endpoints/77")
    del environ[env_name(("loop", "pipeline_root"))]
    settings = load_settings(environ=environ)
    with fake.install(), pytest.raises(wiring.WiringError, match=r"loop\.pipeline_root .*gs://"):
        submit_vertex(
            RETRAINING, settings, str(retraining_template), vertex_parameters(RETRAINING, settings)
        )
    assert not fake.sent("PipelineService/CreatePipelineJob")


def test_cli_submits_the_compiled_pipeline_to_vertex(fake, monkeypatch):
    from typer.testing import CliRunner

    from app.cli import app

    for name, value in trigger_environment("dev", "projects/1/x/endpoints/77").items():
        if name != "RECLOOP_PROFILE":
            monkeypatch.setenv(name, value)
    with fake.install():
        result = CliRunner().invoke(app, ["pipeline", "run", "retraining", "--env", "dev"])
    assert result.exit_code == 0, result.output
    (create,) = fake.sent("PipelineService/CreatePipelineJob")
    assert f"submitted {fake.pipeline_jobs[0].name}" in result.output
    assert create.pipeline_job.display_name == RETRAINING
    values = dict(create.pipeline_job.runtime_config.parameter_values)
    assert values["project_id"] == "recloop-dev"
    assert values["training_artifacts_dir"] == "gs://recloop-dev-artifacts"
    assert values["bigquery_dataset_id"] == "recloop_dev"
    assert values["agent"] == "linucb"


def test_cli_submits_the_retraining_pipeline_with_the_actor_critic(fake, monkeypatch):
    """`--agent actor_critic` reaches the Vertex job as the pipeline parameter `agent`."""
    from typer.testing import CliRunner

    from app.cli import app

    for name, value in trigger_environment("dev", "projects/1/x/endpoints/77").items():
        if name != "RECLOOP_PROFILE":
            monkeypatch.setenv(name, value)
    command = ["pipeline", "run", "retraining", "--env", "dev", "--agent", "actor_critic"]
    with fake.install():
        result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    (create,) = fake.sent("PipelineService/CreatePipelineJob")
    values = dict(create.pipeline_job.runtime_config.parameter_values)
    assert (values["agent"], values["training_loops"]) == ("actor_critic", 300)
    refused = CliRunner().invoke(app, [*command[:-1], "neural_linucb"])
    assert refused.exit_code != 0 and "choose one of linucb, lints, actor_critic" in refused.output


def test_cli_without_a_template_refuses_to_compile_the_local_trainer_image(fake, monkeypatch):
    """Compiling bakes the trainer image into every step: without cloud.trainer_image a cloud
    run compiled `recloop-trainer:local`, which Vertex cannot pull (before: it was sent)."""
    from typer.testing import CliRunner

    from app.cli import app

    for name, value in trigger_environment("dev", "projects/1/x/endpoints/77").items():
        if name not in ("RECLOOP_PROFILE", env_name(("cloud", "trainer_image"))):
            monkeypatch.setenv(name, value)
    with fake.install():
        result = CliRunner().invoke(app, ["pipeline", "run", "retraining", "--env", "dev"])
    assert result.exit_code != 0
    assert isinstance(result.exception, wiring.WiringError)
    (message,) = str(result.exception).splitlines()
    assert "cloud.trainer_image (RECLOOP__CLOUD__TRAINER_IMAGE)" in message
    assert not fake.sent("PipelineService/CreatePipelineJob")


def test_a_submitted_run_holds_off_the_next_and_a_wrong_filter_is_caught(
    fake, retraining_template, monkeypatch
):
    """Vertex answers the Trigger's list with the jobs its filter selects: the run just
    submitted (PENDING) keeps a second one from starting. The fake used to answer RUNNING
    jobs whatever the filter said, so a filter that missed PENDING passed."""
    from app.functions import trigger

    settings = load_settings(environ=trigger_environment("prod", "projects/1/x/endpoints/77"))
    with fake.install():
        launcher = VertexLauncher(settings, str(retraining_template))
        assert launcher.start() is True
        assert launcher.start() is False
        assert len(fake.sent("PipelineService/CreatePipelineJob")) == 1
        monkeypatch.setattr(
            trigger,
            "UNDER_WAY_FILTER",
            f'display_name="{RETRAINING}" AND state="PIPELINE_STATE_RUNNING"',
        )
        assert launcher.running() is False  # this filter would start a second run
