"""The wiring declaration itself: every need is a real setting, failures name the setting and
its variable, and the local profile still runs on its defaults."""

import dataclasses

import pytest

from app import wiring
from app.config import Settings, load_settings, lookup


def test_every_declared_need_is_a_setting():
    for component in wiring.COMPONENTS:
        for need in component.needs:
            lookup(Settings(), need.path)  # a ConfigError names a path that is no setting
            assert need.variable.startswith("RECLOOP_"), need


@pytest.mark.parametrize("component", wiring.COMPONENTS, ids=lambda c: c.name)
def test_local_defaults_are_refused_in_the_cloud_and_accepted_locally(component):
    local = load_settings("local", environ={})
    with pytest.raises(wiring.WiringError, match=f"^{component.name} cannot run in the cloud: "):
        wiring.require(local, component)
    assert wiring.require_in_cloud(local, component) is local
    message = "; ".join(wiring.problems(load_settings("dev", environ={}), component))
    assert "RECLOOP__CLOUD__PROJECT_ID" in message or "RECLOOP__PUBSUB__PROJECT_ID" in message


def test_a_dev_profile_without_its_environment_fails_at_start():
    """What a function deployed with the old, incomplete environment would now say."""
    with pytest.raises(wiring.WiringError) as raised:
        wiring.require_in_cloud(load_settings("dev", environ={}), wiring.TRIGGER)
    for variable in (
        "RECLOOP__CLOUD__SERVING_IMAGE",
        "RECLOOP__LOOP__RETRAINING_TEMPLATE",
        "RECLOOP__LOOP__PIPELINE_ROOT",
    ):
        assert variable in str(raised.value)


def test_the_predictor_environment_is_refused_when_it_would_not_publish():
    settings = load_settings(
        "dev",
        environ={"RECLOOP__PUBSUB__PROJECT_ID": "recloop-dev"},
    )
    assert wiring.predictor_environment(settings)["RECLOOP__PUBSUB__PUBLISH_PREDICTIONS"] == (
        "true"
    )
    quiet = dataclasses.replace(
        settings, pubsub=dataclasses.replace(settings.pubsub, publish_predictions=False)
    )
    with pytest.raises(wiring.WiringError, match=r"pubsub\.publish_predictions"):
        wiring.predictor_environment(quiet)


def test_function_environments_carry_only_what_the_component_needs():
    values = {("cloud", "project_id"): "p", ("loop", "retraining_template"): "gs://t"}
    assert wiring.environment(wiring.SIMULATOR, values) == {"RECLOOP__CLOUD__PROJECT_ID": "p"}


def test_accounts_are_the_five_workload_identities():
    assert wiring.ACCOUNTS == ("simulator", "logger", "trigger", "predictor", "pipelines")
