"""A Cloud Function (gen2) fed by one Pub/Sub topic through its own push subscription:
internal ingress only, its own service account, invoked by that account alone (no public
invoker), poison messages dead-lettered after bounded retries (infra/components/messaging.py),
built by Cloud Build as the builder account into the functions' own image repository.

The function has no Eventarc trigger: Pub/Sub pushes to its service URL, and the
functions-framework turns a push request into the same `messagePublished` CloudEvent
(tests/test_function_entry_points.py)."""

from __future__ import annotations

from cdktf_cdktf_provider_google.cloud_run_v2_service_iam_member import CloudRunV2ServiceIamMember
from cdktf_cdktf_provider_google.cloudfunctions2_function import (
    Cloudfunctions2Function,
    Cloudfunctions2FunctionBuildConfig,
    Cloudfunctions2FunctionBuildConfigSource,
    Cloudfunctions2FunctionBuildConfigSourceStorageSource,
    Cloudfunctions2FunctionServiceConfig,
)
from constructs import Construct

from infra.components.messaging import PushSubscription
from infra.config import EnvironmentConfig

RUNTIME = "python311"


class PubSubFunction(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: EnvironmentConfig,
        name: str,
        entry_point: str,
        topic_id: str,
        service_account: str,
        source_bucket: str,
        source_object: str,
        environment: dict[str, str],
        dead_letter_topic: str,
        pubsub_agent: str,
        builder: str,
        image_repository: str,
        memory: str = "512M",
    ):
        super().__init__(scope, id)
        self.function = Cloudfunctions2Function(
            self,
            "function",
            project=config.project_id,
            location=config.region,
            name=name,
            labels=config.all_labels,
            build_config=Cloudfunctions2FunctionBuildConfig(
                runtime=RUNTIME,
                entry_point=entry_point,
                service_account=builder,
                docker_repository=image_repository,
                source=Cloudfunctions2FunctionBuildConfigSource(
                    storage_source=Cloudfunctions2FunctionBuildConfigSourceStorageSource(
                        bucket=source_bucket, object=source_object
                    )
                ),
            ),
            service_config=Cloudfunctions2FunctionServiceConfig(
                service_account_email=service_account,
                ingress_settings="ALLOW_INTERNAL_ONLY",
                all_traffic_on_latest_revision=True,
                available_memory=memory,
                timeout_seconds=540,
                max_instance_count=config.function_max_instances,
                environment_variables=environment,
            ),
        )
        # Pub/Sub presents a token of the function's own account, which alone may invoke it.
        CloudRunV2ServiceIamMember(
            self,
            "invoker",
            project=config.project_id,
            location=config.region,
            name=self.function.name,
            role="roles/run.invoker",
            member=f"serviceAccount:{service_account}",
        )
        self.subscription = PushSubscription(
            self,
            "consumer",
            config=config,
            name=name,
            topic=topic_id,
            endpoint=self.function.service_config.uri,
            identity=service_account,
            dead_letter_topic=dead_letter_topic,
            agent=pubsub_agent,
        ).subscription
