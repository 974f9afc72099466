import pytest

from tests.infra.helpers import one, resources, walk

ENVS = ("dev", "prod")
FUNCTIONS = {
    "simulator": ("simulator", "simulate"),
    "logger-predictions": ("logger", "prediction_logs"),
    "logger-feedback": ("logger", "feedback"),
    "trigger": ("trigger", "retrain"),
}


@pytest.mark.parametrize("env", ENVS)
def test_functions_are_pubsub_fed_internal_and_built_from_the_archive(stacks, env):
    app = stacks[f"{env}-app"]
    functions = {f["name"]: f for f in resources(app, "google_cloudfunctions2_function").values()}
    assert set(functions) == {f"recloop-{env}-{name}" for name in FUNCTIONS}
    for name, (entry_point, topic) in FUNCTIONS.items():
        function = functions[f"recloop-{env}-{name}"]
        build = function["build_config"]
        assert (build["runtime"], build["entry_point"]) == ("python311", entry_point)
        assert build["source"]["storage_source"]["object"].startswith(
            "${google_storage_bucket_object."
        )
        service = function["service_config"]
        assert service["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
        assert service["environment_variables"]["RECLOOP_PROFILE"] == env
        assert f"sa_{entry_point}" in service["service_account_email"]  # the data stack's account
        key = next(
            k for k, f in resources(app, "google_cloudfunctions2_function").items() if f is function
        )
        subscription = one(app, "google_pubsub_subscription", name=function["name"])
        assert subscription["push_config"]["push_endpoint"] == (
            f"${{google_cloudfunctions2_function.{key}.service_config[0].uri}}"
        )
        assert f"messaging_{topic}" in subscription["topic"]  # the data stack's topic
    source = one(app, "google_storage_bucket_object", name="functions/<archive-hash>.zip")
    assert source["source"] == "assets/function_source/<archive-hash>/archive.zip"


@pytest.mark.parametrize("env", ENVS)
def test_each_function_is_invoked_only_by_its_own_account(stacks, env):
    app = stacks[f"{env}-app"]
    invokers = resources(app, "google_cloud_run_v2_service_iam_member")
    assert len(invokers) == len(FUNCTIONS)
    for invoker in invokers.values():
        assert invoker["role"] == "roles/run.invoker"
        assert invoker["member"].startswith("serviceAccount:")


@pytest.mark.parametrize("env", ENVS)
def test_schedules_publish_ticks(stacks, env):
    app = stacks[f"{env}-app"]
    jobs = {j["name"]: j for j in resources(app, "google_cloud_scheduler_job").values()}
    assert set(jobs) == {f"recloop-{env}-simulate-tick", f"recloop-{env}-retrain-tick"}
    expected = {"dev": ("*/10 * * * *", "0 * * * *"), "prod": ("*/5 * * * *", "0 */6 * * *")}[env]
    assert (
        jobs[f"recloop-{env}-simulate-tick"]["schedule"],
        jobs[f"recloop-{env}-retrain-tick"]["schedule"],
    ) == expected
    for job in jobs.values():
        assert job["pubsub_target"]["data"] == "e30="  # {}


def test_app_stack_refers_to_data_stack_names_not_copies(stacks):
    """The app stack reads bucket and topic names from the data stack's state."""
    app = stacks["dev-app"]
    assert "terraform_remote_state" in app.get("data", {})
    values = list(walk(app["resource"]))
    assert not any(v == "recloop-dev-function-sources" for v in values)
    assert any("terraform_remote_state" in v for v in values)


def test_dev_and_prod_differ_only_where_their_config_does(stacks):
    def sizes(env):
        app = stacks[f"{env}-app"]
        return {kind: len(items) for kind, items in app["resource"].items()}

    assert sizes("dev") == sizes("prod")
    dev = one(stacks["dev-app"], "google_cloudfunctions2_function", name="recloop-dev-simulator")
    prod = one(stacks["prod-app"], "google_cloudfunctions2_function", name="recloop-prod-simulator")
    assert dev["service_config"]["max_instance_count"] == 3
    assert prod["service_config"]["max_instance_count"] == 10
