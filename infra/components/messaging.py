"""Pub/Sub: the loop's topics, the dead-letter topic, and the consumers' push subscriptions.

Every consumer is a `PushSubscription` (one per function, in the app stack): Pub/Sub pushes
each message to the function's HTTPS endpoint with an OIDC token of the function's own
account, retries with backoff, and after MAX_DELIVERY_ATTEMPTS forwards the message to the
dead-letter topic, whose subscription keeps it for a week and never expires. Gen2 event
triggers cannot carry a dead-letter policy (Eventarc owns their subscriptions), hence push
subscriptions. Topics retain a week of messages, so a subscription re-created by a rebuild
can seek back to when it was destroyed (docs/operations.md).
Proved by tests/infra/test_messaging.py.
"""

from __future__ import annotations

from cdktf_cdktf_provider_google.pubsub_subscription import (
    PubsubSubscription,
    PubsubSubscriptionDeadLetterPolicy,
    PubsubSubscriptionExpirationPolicy,
    PubsubSubscriptionPushConfig,
    PubsubSubscriptionPushConfigOidcToken,
    PubsubSubscriptionRetryPolicy,
)
from cdktf_cdktf_provider_google.pubsub_subscription_iam_member import (
    PubsubSubscriptionIamMember,
)
from cdktf_cdktf_provider_google.pubsub_topic import PubsubTopic
from cdktf_cdktf_provider_google.pubsub_topic_iam_member import PubsubTopicIamMember
from constructs import Construct

from app.config import PubSubConfig
from infra.checks import GOOGLE_MANAGED, skip
from infra.config import EnvironmentConfig
from infra.lifecycle import keep

WEEK = "604800s"
NEVER_EXPIRES = ""  # expiration_policy.ttl: an idle subscription is never deleted
DEAD_LETTER_TOPIC = "recloop-dead-letter"
MAX_DELIVERY_ATTEMPTS = 10
# Longer than a function's timeout (540 s): a slow run is not redelivered while it works.
PUSH_ACK_DEADLINE_SECONDS = 600


def _retry() -> PubsubSubscriptionRetryPolicy:
    return PubsubSubscriptionRetryPolicy(minimum_backoff="10s", maximum_backoff="600s")


def pubsub_agent(project_number: str) -> str:
    """The Pub/Sub service agent: it forwards undeliverable messages to the dead-letter topic."""
    return f"serviceAccount:service-{project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"


class Messaging(Construct):
    def __init__(self, scope: Construct, id: str, config: EnvironmentConfig, agent: str):
        super().__init__(scope, id)
        names = PubSubConfig()

        def topic(key: str, name: str) -> PubsubTopic:
            resource = PubsubTopic(
                self,
                key,
                project=config.project_id,
                name=name,
                labels=config.all_labels,
                message_retention_duration=WEEK,
            )
            keep(resource)
            skip(resource, CKV_GCP_83=GOOGLE_MANAGED)
            return resource

        self.prediction_logs = topic("prediction_logs", names.prediction_logs_topic)
        self.feedback = topic("feedback", names.feedback_topic)
        self.simulate = topic("simulate", names.simulate_topic)
        self.retrain = topic("retrain", names.retrain_topic)
        self.dead_letter = topic("dead_letter", DEAD_LETTER_TOPIC)
        self.dead_letter_subscription = keep(
            PubsubSubscription(
                self,
                "dead_letter_subscription",
                project=config.project_id,
                name=DEAD_LETTER_TOPIC,
                topic=self.dead_letter.id,
                message_retention_duration=WEEK,
                expiration_policy=PubsubSubscriptionExpirationPolicy(ttl=NEVER_EXPIRES),
                ack_deadline_seconds=60,
                retry_policy=_retry(),
                labels=config.all_labels,
            )
        )
        PubsubTopicIamMember(
            self,
            "agent_publishes_dead_letters",
            project=config.project_id,
            topic=self.dead_letter.name,
            role="roles/pubsub.publisher",
            member=agent,
        )


class PushSubscription(Construct):
    """One consumer: `topic` pushed to `endpoint` as `identity`, dead-lettered when it fails."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: EnvironmentConfig,
        name: str,
        topic: str,
        endpoint: str,
        identity: str,
        dead_letter_topic: str,
        agent: str,
    ):
        super().__init__(scope, id)
        self.subscription = PubsubSubscription(
            self,
            "subscription",
            project=config.project_id,
            name=name,
            topic=topic,
            ack_deadline_seconds=PUSH_ACK_DEADLINE_SECONDS,
            message_retention_duration=WEEK,
            expiration_policy=PubsubSubscriptionExpirationPolicy(ttl=NEVER_EXPIRES),
            retry_policy=_retry(),
            dead_letter_policy=PubsubSubscriptionDeadLetterPolicy(
                dead_letter_topic=dead_letter_topic,
                max_delivery_attempts=MAX_DELIVERY_ATTEMPTS,
            ),
            push_config=PubsubSubscriptionPushConfig(
                push_endpoint=endpoint,
                oidc_token=PubsubSubscriptionPushConfigOidcToken(service_account_email=identity),
            ),
            labels=config.all_labels,
        )
        # Dead-lettering acknowledges the message on the source subscription as the agent.
        PubsubSubscriptionIamMember(
            self,
            "agent_subscribes",
            project=config.project_id,
            subscription=self.subscription.name,
            role="roles/pubsub.subscriber",
            member=agent,
        )
