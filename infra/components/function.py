"""A Cloud Function (gen2) fed by one Pub/Sub topic: internal ingress only, its own service
account, invoked by that account alone (no public invoker)."""

from __future__ import annotations

from cdktf_cdktf_provider_google.cloud_run_v2_service_iam_member import CloudRunV2ServiceIamMember
from cdktf_cdktf_provider_google.cloudfunctions2_function import (
    Cloudfunctions2Function,
    Cloudfunctions2FunctionBuildConfig,
    Cloudfunctions2FunctionBuildConfigSource,
    Cloudfunctions2FunctionBuildConfigSourceStorageSource,
    Cloudfunctions2FunctionEventTrigger,
    Cloudfunctions2FunctionServiceConfig,
)
from constructs import Construct

from infra.config import EnvironmentConfig

RUNTIME = "python311"
PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"


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
            event_trigger=Cloudfunctions2FunctionEventTrigger(
                trigger_region=config.region,
                event_type=PUBLISHED,
                pubsub_topic=topic_id,
                retry_policy="RETRY_POLICY_RETRY",
                service_account_email=service_account,
            ),
        )
        # Eventarc calls the function as its own service account, which alone may invoke it.
        CloudRunV2ServiceIamMember(
            self,
            "invoker",
            project=config.project_id,
            location=config.region,
            name=self.function.name,
            role="roles/run.invoker",
            member=f"serviceAccount:{service_account}",
        )
