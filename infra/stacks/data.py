"""`<env>-data`: everything that holds state, each stateful resource with prevent_destroy.

Never torn down by a make target or workflow (docs/operations.md). It also holds the Vertex
AI endpoint: the pipelines deploy models to it outside Terraform, so destroying it would be
an outage (and fails while models are deployed); the stateless app stack only refers to it.
The workload accounts are created by `<env>-bootstrap` (the deployer cannot create or delete
identities); this stack looks them up, so a missing one fails the plan.
Proved by tests/infra/test_stack_lifecycle.py.
"""

from __future__ import annotations

import hashlib

from cdktf import TerraformOutput, TerraformStack
from cdktf_cdktf_provider_google.artifact_registry_repository import ArtifactRegistryRepository
from cdktf_cdktf_provider_google.artifact_registry_repository_iam_member import (
    ArtifactRegistryRepositoryIamMember,
)
from cdktf_cdktf_provider_google.data_google_project import DataGoogleProject
from cdktf_cdktf_provider_google.data_google_service_account import DataGoogleServiceAccount
from cdktf_cdktf_provider_google.storage_bucket import StorageBucket
from cdktf_cdktf_provider_google.storage_bucket_iam_member import StorageBucketIamMember
from cdktf_cdktf_provider_google.vertex_ai_endpoint import VertexAiEndpoint
from constructs import Construct

from app import wiring
from infra import config as environments
from infra.checks import GOOGLE_MANAGED, skip
from infra.components.apis import Apis
from infra.components.bucket import SecureBucket
from infra.components.messaging import Messaging, pubsub_agent
from infra.components.warehouse import Warehouse
from infra.config import EnvironmentConfig
from infra.lifecycle import keep
from infra.stacks.common import provider, remote_state

SERVICES = [
    "aiplatform.googleapis.com",
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "cloudbuild.googleapis.com",
    # data.google_project (the project number: Pub/Sub's service agent) reads it.
    "cloudresourcemanager.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com",
    "iam.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "storage.googleapis.com",
]
# One identity per workload (declared in app/wiring.py); the app stack grants each only
# what it needs.
ACCOUNTS = wiring.ACCOUNTS
BUILDER = "builder"  # Cloud Build's identity for the functions (infra/stacks/bootstrap.py)
# What reading the function source needs (Google's "Custom Service Account for Cloud Build";
# the full list is in infra/stacks/bootstrap.py beside BUILDER_PROJECT_ROLES).
BUILDER_SOURCE_ROLE = "roles/storage.objectAdmin"


def endpoint_number(name: str) -> str:
    """Vertex endpoint ids are numeric; derive a stable one from the name."""
    return str(int(hashlib.sha256(name.encode()).hexdigest(), 16) % 9_000_000_000 + 1_000_000_000)


class DataStack(TerraformStack):
    def __init__(self, scope: Construct, config: EnvironmentConfig):
        super().__init__(scope, f"{config.env}-data")
        self.config = config
        remote_state(self, config, "data")
        provider(self, config)
        self.apis = Apis(self, "apis", config.project_id, SERVICES)
        project = DataGoogleProject(self, "project", project_id=config.project_id)
        # Read once the Cloud Resource Manager API is on (deferred to apply on a new project).
        project.add_override(
            "depends_on", [self.apis.reference("cloudresourcemanager.googleapis.com")]
        )
        self.pubsub_agent = pubsub_agent(project.number)
        self.warehouse = Warehouse(self, "warehouse", config)
        self.artifacts = self._bucket("artifacts", config.name("artifacts"))
        self.sources = self._bucket("sources", config.name("function-sources"))
        self.messaging = Messaging(self, "messaging", config, self.pubsub_agent)
        self.registry = self._repository(
            "registry", "recloop", "recloop trainer and predictor images"
        )
        # Promotion copies the tested images by digest: the next environment's deployer reads.
        for target in config.promotes_to:
            ArtifactRegistryRepositoryIamMember(
                self,
                f"registry_reader_{target}_deployer",
                project=config.project_id,
                location=config.region,
                repository=self.registry.name,
                role="roles/artifactregistry.reader",
                member=f"serviceAccount:{environments.load(target).deployer_email}",
            )
        self.endpoint = keep(
            VertexAiEndpoint(
                self,
                "endpoint",
                project=config.project_id,
                location=config.region,
                region=config.region,
                name=endpoint_number(config.name("endpoint")),
                display_name=config.name("endpoint"),
                labels=config.all_labels,
            )
        )
        skip(
            self.endpoint,
            CKV2_GCP_33=(
                "a public endpoint only in network terms: predicting needs IAM "
                "(aiplatform.endpoints.predict); a private one needs a VPC peering recloop lacks"
            ),
            CKV2_GCP_24=GOOGLE_MANAGED,
        )
        self._function_builds(config)
        self.accounts = {
            name: DataGoogleServiceAccount(
                self, f"sa_{name}", project=config.project_id, account_id=config.name(name)
            )
            for name in ACCOUNTS
        }
        self._outputs()
        self.apis.precede(self)

    def _function_builds(self, config: EnvironmentConfig) -> None:
        """The builder reads the function sources and writes the functions' images to their
        own repository: it cannot touch the trainer and predictor images."""
        self.builder = DataGoogleServiceAccount(
            self, "sa_builder", project=config.project_id, account_id=config.name(BUILDER)
        )
        self.function_images = self._repository(
            "function_images",
            "recloop-functions",
            "recloop Cloud Functions images (built by Cloud Build)",
        )
        ArtifactRegistryRepositoryIamMember(
            self,
            "builder_writes_function_images",
            project=config.project_id,
            location=config.region,
            repository=self.function_images.name,
            role="roles/artifactregistry.writer",
            member=self.builder.member,
        )
        StorageBucketIamMember(
            self,
            "builder_reads_sources",
            bucket=self.sources.name,
            role=BUILDER_SOURCE_ROLE,
            member=self.builder.member,
        )

    def _bucket(self, id: str, name: str) -> StorageBucket:
        c = self.config
        return SecureBucket(
            self, id, project=c.project_id, name=name, location=c.region, labels=c.all_labels
        ).bucket

    def _repository(
        self, id: str, repository_id: str, description: str
    ) -> ArtifactRegistryRepository:
        """A Docker repository that refuses destruction, encrypted with Google's keys."""
        c = self.config
        repository = keep(
            ArtifactRegistryRepository(
                self,
                id,
                project=c.project_id,
                location=c.region,
                repository_id=repository_id,
                format="DOCKER",
                description=description,
                labels=c.all_labels,
            )
        )
        skip(repository, CKV_GCP_84=GOOGLE_MANAGED)
        return repository

    def _outputs(self) -> None:
        for key, value in {
            "dataset": self.warehouse.dataset.dataset_id,
            "artifacts_bucket": self.artifacts.name,
            "sources_bucket": self.sources.name,
            "registry": self.registry.name,
            "prediction_logs_topic": self.messaging.prediction_logs.name,
            "feedback_topic": self.messaging.feedback.name,
            "simulate_topic": self.messaging.simulate.name,
            "retrain_topic": self.messaging.retrain.name,
            "dead_letter_topic": self.messaging.dead_letter.name,
            "endpoint_id": self.endpoint.id,
            "endpoint_name": self.endpoint.name,
        }.items():
            TerraformOutput(self, f"{key}_output", value=value)
