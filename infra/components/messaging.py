"""Pub/Sub topics of the loop, and the dead-letter topic with a subscription that keeps
what lands there for a week."""

from __future__ import annotations

from cdktf_cdktf_provider_google.pubsub_subscription import (
    PubsubSubscription,
    PubsubSubscriptionRetryPolicy,
)
from cdktf_cdktf_provider_google.pubsub_topic import PubsubTopic
from constructs import Construct

from app.config import PubSubConfig
from infra.checks import GOOGLE_MANAGED, skip
from infra.config import EnvironmentConfig

WEEK = "604800s"


class Messaging(Construct):
    def __init__(self, scope: Construct, id: str, config: EnvironmentConfig):
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
            skip(resource, CKV_GCP_83=GOOGLE_MANAGED)
            return resource

        self.prediction_logs = topic("prediction_logs", names.prediction_logs_topic)
        self.feedback = topic("feedback", names.feedback_topic)
        self.simulate = topic("simulate", names.simulate_topic)
        self.retrain = topic("retrain", names.retrain_topic)
        self.dead_letter = topic("dead_letter", f"{names.prediction_logs_topic}-dead-letter")
        self.dead_letter_subscription = PubsubSubscription(
            self,
            "dead_letter_subscription",
            project=config.project_id,
            name=f"{names.prediction_logs_topic}-dead-letter",
            topic=self.dead_letter.id,
            message_retention_duration=WEEK,
            ack_deadline_seconds=60,
            retry_policy=PubsubSubscriptionRetryPolicy(
                minimum_backoff="10s", maximum_backoff="600s"
            ),
            labels=config.all_labels,
        )
