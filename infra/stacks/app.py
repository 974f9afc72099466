"""`<env>-app`: everything stateless. Safe to destroy and rebuild; holds no data.

The functions, their push subscriptions, the schedules and the workloads' IAM. The Vertex
endpoint (which holds deployed models) lives in `<env>-data`; who may act as which account
is bootstrap's (infra/stacks/bootstrap.py), since the deployer cannot change it.
"""

from __future__ import annotations

import base64
from pathlib import Path

from cdktf import (
    AssetType,
    TerraformAsset,
    TerraformOutput,
    TerraformStack,
    TerraformVariable,
    TerraformVariableValidationConfig,
)
from cdktf_cdktf_provider_google.bigquery_dataset_iam_member import BigqueryDatasetIamMember
from cdktf_cdktf_provider_google.bigquery_table_iam_member import BigqueryTableIamMember
from cdktf_cdktf_provider_google.cloud_scheduler_job import (
    CloudSchedulerJob,
    CloudSchedulerJobPubsubTarget,
)
from cdktf_cdktf_provider_google.project_iam_member import ProjectIamMember
from cdktf_cdktf_provider_google.pubsub_topic import PubsubTopic
from cdktf_cdktf_provider_google.pubsub_topic_iam_member import PubsubTopicIamMember
from cdktf_cdktf_provider_google.storage_bucket_iam_member import (
    StorageBucketIamMember,
    StorageBucketIamMemberCondition,
)
from cdktf_cdktf_provider_google.storage_bucket_object import StorageBucketObject
from constructs import Construct

from app import wiring
from app.config import SettingPath
from app.loop.parameters import RETRAINING
from infra.components.function import PubSubFunction
from infra.config import EnvironmentConfig
from infra.stacks.bootstrap import WORKLOAD_PROJECT_ROLES
from infra.stacks.common import provider, remote_state
from infra.stacks.data import DataStack

# Contract 1: the release inputs of the app stack (TF_VAR_trainer_image, …).
IMAGE_PATTERN = "@sha256:[0-9a-f]{64}$"
RELEASE_PATTERN = "^[0-9a-f]{40}$"


def release_template(artifacts: str, release: str, pipeline: str) -> str:
    """Where a release's compiled pipeline lives (written once per release, never overwritten)."""
    return f"{artifacts}/pipelines/{release}/{pipeline}.yaml"


class AppStack(TerraformStack):
    def __init__(
        self, scope: Construct, config: EnvironmentConfig, data: DataStack, function_source: Path
    ):
        super().__init__(scope, f"{config.env}-app")
        remote_state(self, config, "app")
        provider(self, config)
        project = config.project_id
        accounts = {name: account.email for name, account in data.accounts.items()}
        messaging = data.messaging
        artifacts = f"gs://{data.artifacts.name}"

        asset = TerraformAsset(
            self, "function_source", path=str(function_source), type=AssetType.ARCHIVE
        )
        source = StorageBucketObject(
            self,
            "function_source_object",
            bucket=data.sources.name,
            name=f"functions/{asset.asset_hash}.zip",
            source=asset.path,
        )
        release = self._release_variables()
        topics: dict[SettingPath, PubsubTopic] = {
            ("pubsub", "prediction_logs_topic"): messaging.prediction_logs,
            ("pubsub", "feedback_topic"): messaging.feedback,
            ("pubsub", "simulate_topic"): messaging.simulate,
            ("pubsub", "retrain_topic"): messaging.retrain,
        }
        # What infra knows, by setting; each function gets what its component needs
        # (app/wiring.py), under the variable names app/config.py reads.
        values: dict[SettingPath, str] = {
            ("profile",): config.env,
            ("artifacts_dir",): artifacts,
            ("cloud", "project_id"): project,
            ("cloud", "region"): config.region,
            ("cloud", "pipelines_service_account"): accounts["pipelines"],
            ("cloud", "staging_bucket"): f"{artifacts}/staging",
            ("cloud", "predictor_service_account"): accounts["predictor"],
            ("cloud", "predictor_machine_type"): config.predictor_machine_type,
            ("cloud", "predictor_min_replicas"): str(config.predictor_min_replicas),
            ("cloud", "predictor_max_replicas"): str(config.predictor_max_replicas),
            ("cloud", "serving_image"): release["serving_image"],
            ("cloud", "trainer_image"): release["trainer_image"],
            ("cloud", "release"): release["release"],
            ("warehouse", "dataset"): data.warehouse.dataset.dataset_id,
            ("warehouse", "location"): config.bigquery_location,
            ("pubsub", "project_id"): project,
            ("pubsub", "dead_letter_topic"): messaging.dead_letter.name,
            **{path: topic.name for path, topic in topics.items()},
            ("loop", "vertex_endpoint"): data.endpoint.id,
            ("loop", "pipeline_root"): f"{artifacts}/pipeline-root",
            ("loop", "retraining_template"): release_template(
                artifacts, release["release"], RETRAINING
            ),
        }
        self.functions = {
            name: PubSubFunction(
                self,
                name.replace("-", "_"),
                config=config,
                name=config.name(name),
                entry_point=component.name,
                topic_id=topics[topic].id,
                service_account=accounts[component.account],
                source_bucket=data.sources.name,
                source_object=source.name,
                environment=wiring.environment(component, values),
                dead_letter_topic=messaging.dead_letter.id,
                pubsub_agent=data.pubsub_agent,
                builder=data.builder.name,
                image_repository=data.function_images.id,
                memory="1G" if component is wiring.SIMULATOR else "512M",
            ).function
            for component in wiring.FUNCTIONS
            for name, topic in component.triggers
        }

        # IAM: each workload gets exactly the roles its code uses.
        def project_role(key: str, account: str, role: str) -> None:
            if role not in WORKLOAD_PROJECT_ROLES:  # the deployer may grant no other
                raise ValueError(f"{role} is not in bootstrap.WORKLOAD_PROJECT_ROLES")
            ProjectIamMember(
                self, key, project=project, role=role, member=f"serviceAccount:{accounts[account]}"
            )

        def dataset_role(key: str, account: str, role: str) -> None:
            BigqueryDatasetIamMember(
                self,
                key,
                project=project,
                dataset_id=data.warehouse.dataset.dataset_id,
                role=role,
                member=f"serviceAccount:{accounts[account]}",
            )

        def topic_role(key: str, account: str, topic: str) -> None:
            PubsubTopicIamMember(
                self,
                key,
                project=project,
                topic=topic,
                role="roles/pubsub.publisher",
                member=f"serviceAccount:{accounts[account]}",
            )

        def bucket_role(key: str, account: str, role: str) -> None:
            StorageBucketIamMember(
                self,
                key,
                bucket=data.artifacts.name,
                role=role,
                member=f"serviceAccount:{accounts[account]}",
            )

        # Logger: writes rows; forwards malformed messages to the dead-letter topic.
        dataset_role("logger_data_editor", "logger", "roles/bigquery.dataEditor")
        topic_role("logger_dead_letter", "logger", messaging.dead_letter.name)
        # Simulator: asks the endpoint, publishes feedback.
        project_role("simulator_predict", "simulator", "roles/aiplatform.user")
        topic_role("simulator_feedback", "simulator", messaging.feedback.name)
        # Trigger: counts examples, starts the pipeline as the pipelines account (bootstrap).
        dataset_role("trigger_data_viewer", "trigger", "roles/bigquery.dataViewer")
        project_role("trigger_jobs", "trigger", "roles/bigquery.jobUser")
        project_role("trigger_pipelines", "trigger", "roles/aiplatform.user")
        bucket_role("trigger_template", "trigger", "roles/storage.objectViewer")
        # Submitting, the SDK reads the pipeline root's bucket (google-cloud-aiplatform's
        # gcs_utils.create_gcs_bucket_for_pipeline_artifacts_if_it_does_not_exist:
        # Bucket.exists() and an ownership check, storage.buckets.get, which objectViewer
        # lacks; without it every submission logs a Forbidden traceback). legacyBucketReader
        # is the least predefined role with it (buckets.get, objects.list).
        bucket_role("trigger_pipeline_root", "trigger", "roles/storage.legacyBucketReader")
        # It decides canaries too (app/deployer/canary.py), so it may write exactly what a
        # decision writes (wiring.CANARY_DECISION): those tables, and those objects by name.
        for component in wiring.COMPONENTS:
            self._grant_writes(component, accounts[component.account], data)
        # Predictor: reads the policy, logs predictions.
        bucket_role("predictor_policies", "predictor", "roles/storage.objectViewer")
        topic_role("predictor_logs", "predictor", messaging.prediction_logs.name)
        # Pipelines: read and write examples, artifacts, models, the endpoint.
        dataset_role("pipelines_data_editor", "pipelines", "roles/bigquery.dataEditor")
        project_role("pipelines_jobs", "pipelines", "roles/bigquery.jobUser")
        project_role("pipelines_vertex", "pipelines", "roles/aiplatform.user")
        bucket_role("pipelines_artifacts", "pipelines", "roles/storage.objectAdmin")
        tick = base64.b64encode(b"{}").decode()
        for key, topic, schedule in (
            ("simulate", messaging.simulate.id, config.simulate_schedule),
            ("retrain", messaging.retrain.id, config.retrain_schedule),
        ):
            CloudSchedulerJob(
                self,
                f"{key}_schedule",
                project=project,
                region=config.region,
                name=config.name(f"{key}-tick"),
                schedule=schedule,
                time_zone="Etc/UTC",
                pubsub_target=CloudSchedulerJobPubsubTarget(topic_name=topic, data=tick),
            )

        # What `recloop tune --vertex` needs, for the operator's shell (docs/operations.md).
        TerraformOutput(
            self, "trainer_environment", value=wiring.environment(wiring.TRAINER, values)
        )
        for name, function in self.functions.items():
            TerraformOutput(self, f"function_{name.replace('-', '_')}", value=function.name)

    def _grant_writes(self, component: wiring.Component, email: str, data: DataStack) -> None:
        """Table-level dataEditor on each table `component` writes, and objectUser on its
        objects only (an IAM condition on the object names; the bucket has uniform access)."""
        writes, member = component.writes, f"serviceAccount:{email}"
        for name in writes.tables:
            table = data.warehouse.tables[name]
            BigqueryTableIamMember(
                self,
                f"{component.account}_writes_{name}",
                project=table.project,
                dataset_id=table.dataset_id,
                table_id=table.table_id,
                role="roles/bigquery.dataEditor",
                member=member,
            )
        if writes.artifacts:
            bucket = data.artifacts.name
            StorageBucketIamMember(
                self,
                f"{component.account}_writes_artifacts",
                bucket=bucket,
                role="roles/storage.objectUser",
                member=member,
                condition=StorageBucketIamMemberCondition(
                    title=f"{component.account} writes {', '.join(writes.artifacts)}",
                    expression=" || ".join(
                        f'resource.name == "projects/_/buckets/{bucket}/objects/{path}"'
                        for path in writes.artifacts
                    ),
                ),
            )

    def _release_variables(self) -> dict[str, str]:
        """`trainer_image`, `serving_image` (by digest) and `release` (the commit SHA)."""

        def variable(name: str, pattern: str, what: str) -> str:
            return TerraformVariable(
                self,
                name,
                type="string",
                description=what,
                validation=[
                    TerraformVariableValidationConfig(
                        condition=f'${{can(regex("{pattern}", var.{name}))}}',
                        error_message=f"{name} must be {what}.",
                    )
                ],
            ).string_value

        digest = "an image reference by digest (…@sha256:<64 hex>)"
        return {
            "trainer_image": variable("trainer_image", IMAGE_PATTERN, digest),
            "serving_image": variable("serving_image", IMAGE_PATTERN, digest),
            "release": variable("release", RELEASE_PATTERN, "the git commit SHA (40 hex)"),
        }
