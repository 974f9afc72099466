"""Every Pub/Sub consumer retries a bounded number of times and then dead-letters; nothing
that holds messages expires; the Pub/Sub service agent can do what dead-lettering needs."""

from __future__ import annotations

import re

import pytest

from tests.infra.helpers import one, resources

ENVS = ("dev", "prod")
AGENT = re.compile(
    r"serviceAccount:service-\$\{[^}]*google_project[^}]*number\}@gcp-sa-pubsub\.iam\.gserviceaccount\.com"
)
CONSUMED = {"simulate", "prediction_logs", "feedback", "retrain"}


def ref(address: str) -> re.Pattern[str]:
    """A reference to `address` directly or through the data stack's remote state."""
    return re.compile(
        r"\$\{("
        + re.escape(address)
        + r"|data\.terraform_remote_state\.[^}]*"
        + re.escape(address.replace(".", ""))
        + r")[^}]*\}"
    )


@pytest.mark.parametrize("env", ENVS)
def test_every_function_consumes_through_a_dead_lettered_push_subscription(stacks, env):
    app = stacks[f"{env}-app"]
    functions = resources(app, "google_cloudfunctions2_function")
    subscriptions = resources(app, "google_pubsub_subscription")
    assert len(subscriptions) == len(functions) == 4
    consumed = set()
    for key, function in functions.items():
        assert "event_trigger" not in function  # Eventarc's subscriptions take no DLQ policy
        (subscription,) = [
            s
            for s in subscriptions.values()
            if s["push_config"]["push_endpoint"]
            == f"${{google_cloudfunctions2_function.{key}.service_config[0].uri}}"
        ]
        assert subscription["name"] == function["name"]
        token = subscription["push_config"]["oidc_token"]
        assert token["service_account_email"] == function["service_config"]["service_account_email"]
        policy = subscription["dead_letter_policy"]
        assert 5 <= policy["max_delivery_attempts"] <= 20
        assert ref("google_pubsub_topic.messaging_dead_letter").fullmatch(
            policy["dead_letter_topic"]
        )
        assert subscription["expiration_policy"] == {"ttl": ""}
        assert subscription["ack_deadline_seconds"] > function["service_config"]["timeout_seconds"]
        assert subscription["retry_policy"] == {"minimum_backoff": "10s", "maximum_backoff": "600s"}
        consumed.add(
            re.search(r"messaging_([a-z_]+?)_[0-9A-F]{8}id", subscription["topic"]).group(1)
        )
    assert consumed == CONSUMED


@pytest.mark.parametrize("env", ENVS)
def test_the_dead_letter_subscription_never_expires_and_keeps_a_week(stacks, env):
    data = stacks[f"{env}-data"]
    (subscription,) = resources(data, "google_pubsub_subscription").values()
    assert subscription["name"] == "recloop-dead-letter"
    assert subscription["topic"] == "${google_pubsub_topic.messaging_dead_letter_F2C9F63D.id}"
    assert subscription["expiration_policy"] == {"ttl": ""}
    assert subscription["message_retention_duration"] == "604800s"
    assert "dead_letter_policy" not in subscription  # the end of the line


@pytest.mark.parametrize("env", ENVS)
def test_the_pubsub_agent_may_dead_letter(stacks, env):
    data, app = stacks[f"{env}-data"], stacks[f"{env}-app"]
    publisher = one(data, "google_pubsub_topic_iam_member", role="roles/pubsub.publisher")
    assert AGENT.fullmatch(publisher["member"])
    assert publisher["topic"] == "${google_pubsub_topic.messaging_dead_letter_F2C9F63D.name}"
    subscribers = resources(app, "google_pubsub_subscription_iam_member")
    assert {s["subscription"] for s in subscribers.values()} == {
        f"${{google_pubsub_subscription.{key}.name}}"
        for key in resources(app, "google_pubsub_subscription")
    }
    for binding in subscribers.values():
        assert binding["role"] == "roles/pubsub.subscriber"
        assert AGENT.fullmatch(binding["member"])
