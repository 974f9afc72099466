"""Each cloud component, loaded from exactly the environment infra gives it, has everything
app/wiring.py says it needs — and so does the predictor, from the environment the Deployer
sends. References are resolved as a plan would (infra/resolve.py)."""

import re

import pytest

from app import wiring
from app.config import load_settings
from app.loop.parameters import PipelineParameters
from infra.resolve import resolve
from tests.infra.helpers import one, resources

ENVS = ("dev", "prod")
RELEASE = {
    "trainer_image": "us-central1-docker.pkg.dev/recloop-dev/recloop/trainer@sha256:" + "a" * 64,
    "serving_image": "us-central1-docker.pkg.dev/recloop-dev/recloop/predictor@sha256:" + "b" * 64,
    "release": "c" * 40,
}
BY_NAME = {c.name: c for c in wiring.FUNCTIONS}


@pytest.fixture(autouse=True)
def _no_recloop_environment(monkeypatch):
    """Steps read the process environment under their parameters: keep this one clean."""
    import os

    for name in list(os.environ):
        if name.startswith("RECLOOP"):
            monkeypatch.delenv(name)


def function_environments(stacks, env):
    """{function name: (component, environment as deployed, references resolved)}."""
    app = stacks[f"{env}-app"]
    found = {}
    for function in resources(app, "google_cloudfunctions2_function").values():
        component = BY_NAME[function["build_config"]["entry_point"]]
        variables = function["service_config"]["environment_variables"]
        environ = {k: resolve(v, f"{env}-app", stacks, RELEASE) for k, v in variables.items()}
        found[function["name"]] = (component, environ, function)
    return found


@pytest.mark.parametrize("env", ENVS)
def test_every_function_loads_what_its_component_needs_from_its_environment(stacks, env):
    functions = function_environments(stacks, env)
    assert {name for c in wiring.FUNCTIONS for name, _ in c.triggers} == {
        name.removeprefix(f"recloop-{env}-") for name in functions
    }
    for name, (component, environ, function) in functions.items():
        settings = wiring.require(load_settings(environ=environ), component)  # raises, naming
        assert settings.profile == env, name
        # Runs as its own identity, on the topic its component declares.
        account = resolve(
            function["service_config"]["service_account_email"], f"{env}-app", stacks, RELEASE
        )
        assert account == f"recloop-{env}-{component.account}@recloop-{env}.iam.gserviceaccount.com"
        topic_setting = dict(component.triggers)[name.removeprefix(f"recloop-{env}-")]
        # Fed by its push subscription (infra/components/messaging.py).
        feed = one(stacks[f"{env}-app"], "google_pubsub_subscription", name=function["name"])
        topic = resolve(feed["topic"], f"{env}-app", stacks, RELEASE)
        assert topic == f"projects/recloop-{env}/topics/" + getattr(
            settings.pubsub, topic_setting[1]
        )


@pytest.mark.parametrize("env", ENVS)
def test_the_trigger_carries_the_release_and_a_cloud_pipeline_root(stacks, env):
    (_, environ, _) = function_environments(stacks, env)[f"recloop-{env}-trigger"]
    cloud = load_settings(environ=environ)
    assert cloud.cloud.serving_image == RELEASE["serving_image"]
    assert cloud.cloud.trainer_image == RELEASE["trainer_image"]
    assert cloud.loop.retraining_template == (
        f"gs://recloop-{env}-artifacts/pipelines/{RELEASE['release']}/recloop-retraining.yaml"
    )
    assert cloud.loop.pipeline_root.startswith(f"gs://recloop-{env}-artifacts/")
    expected = {"dev": ("n1-standard-2", 1, 1), "prod": ("n1-standard-4", 2, 6)}[env]
    assert (
        cloud.cloud.predictor_machine_type,
        cloud.cloud.predictor_min_replicas,
        cloud.cloud.predictor_max_replicas,
    ) == expected


@pytest.mark.parametrize("env", ENVS)
def test_the_predictor_env_the_deployer_sends_is_the_cloud_profile_on_infras_topic(stacks, env):
    """Trigger settings → pipeline parameters → the Deployer step's settings → the model's
    environment → the predictor's settings, each loaded the way that component loads them."""
    (_, environ, _) = function_environments(stacks, env)[f"recloop-{env}-trigger"]
    parameters = PipelineParameters.from_settings(load_settings(environ=environ))
    deployer = wiring.require(parameters.settings(), wiring.PIPELINES)
    predictor = wiring.require(
        load_settings(environ=wiring.predictor_environment(deployer)), wiring.PREDICTOR
    )
    data = stacks[f"{env}-data"]
    topic = one(data, "google_pubsub_topic", name=predictor.pubsub.prediction_logs_topic)
    assert predictor.profile == env
    assert predictor.pubsub.project_id == topic["project"] == f"recloop-{env}"
    assert predictor.pubsub.publish_predictions is True
    assert deployer.cloud.predictor_service_account == (
        f"recloop-{env}-predictor@recloop-{env}.iam.gserviceaccount.com"
    )


@pytest.mark.parametrize("env", ENVS)
def test_a_missing_setting_is_named(stacks, env):
    (_, environ, _) = function_environments(stacks, env)[f"recloop-{env}-trigger"]
    del environ["RECLOOP__CLOUD__SERVING_IMAGE"]
    with pytest.raises(wiring.WiringError, match=r"cloud\.serving_image \(RECLOOP__CLOUD__SERV"):
        wiring.require(load_settings(environ=environ), wiring.TRIGGER)


@pytest.mark.parametrize("env", ENVS)
def test_release_variables_accept_digests_and_commits_only(stacks, env):
    variables = stacks[f"{env}-app"]["variable"]
    assert set(variables) == set(RELEASE)
    for name, good in RELEASE.items():
        condition = variables[name]["validation"][0]["condition"]
        pattern = re.search(r'regex\("(.+)", var\.' + name, condition).group(1)
        assert re.search(pattern, good)
        assert not re.search(pattern, "registry/image:latest")


@pytest.mark.parametrize("env", ENVS)
def test_accounts_are_the_declared_identities(stacks, env):
    """Bootstrap creates them (the deployer cannot); the data stack looks each one up."""
    declared = {f"recloop-{env}-{name}" for name in wiring.ACCOUNTS}
    created = resources(stacks[f"{env}-bootstrap"], "google_service_account").values()
    assert {a["account_id"] for a in created} >= declared
    looked_up = stacks[f"{env}-data"]["data"]["google_service_account"].values()
    assert {a["account_id"] for a in looked_up} >= declared


@pytest.mark.parametrize("env", ENVS)
def test_vertex_tuning_gets_its_staging_bucket_and_trainer_image_from_the_app_stack(stacks, env):
    """`recloop tune --vertex` runs with the environment the app stack outputs."""
    output = stacks[f"{env}-app"]["output"]["trainer_environment"]["value"]
    environ = {k: resolve(v, f"{env}-app", stacks, RELEASE) for k, v in output.items()}
    settings = wiring.require(load_settings(env, environ=environ), wiring.TRAINER)
    assert settings.cloud.staging_bucket == f"gs://recloop-{env}-artifacts/staging"
    assert settings.cloud.trainer_image == RELEASE["trainer_image"]


@pytest.mark.parametrize("env", ENVS)
def test_the_deployer_may_act_as_the_predictor_account_and_no_other(stacks, env):
    """Vertex deploys a model as a custom account only for a caller with actAs on it; the
    grant may live in any of the environment's stacks."""
    grants = [
        resolve(g["service_account_id"], name, stacks, RELEASE)
        for name in stacks
        if name.startswith(f"{env}-")
        for g in resources(stacks[name], "google_service_account_iam_member").values()
        if g["role"] == "roles/iam.serviceAccountUser" and "sa_pipelines" in g["member"]
    ]
    assert grants == [
        f"projects/recloop-{env}/serviceAccounts/"
        f"recloop-{env}-predictor@recloop-{env}.iam.gserviceaccount.com"
    ]


@pytest.mark.parametrize("env", ENVS)
def test_the_cloud_profiles_name_what_the_stacks_create(stacks, env):
    """app/profiles/<env>.toml names the artifacts bucket, the dataset and the region for the
    runs that get no generated environment (`recloop tune --vertex`, `pipeline run --env`):
    the names infra derives from infra/environments/<env>.toml (name_prefix, region) are the
    one source, and the profile must name exactly what the synthesized stacks create."""
    from infra import config as environments

    profile = load_settings(env, environ={})
    data = stacks[f"{env}-data"]
    buckets = {b["name"] for b in resources(data, "google_storage_bucket").values()}
    assert profile.artifacts_dir.removeprefix("gs://") in buckets
    assert profile.artifacts_dir == f"gs://{environments.load(env).name('artifacts')}"
    assert profile.warehouse.dataset == one(data, "google_bigquery_dataset")["dataset_id"]
    assert profile.cloud.region == environments.load(env).region
