"""`<env>-data`: everything that holds state. Never torn down casually."""

from __future__ import annotations

from cdktf import TerraformOutput, TerraformStack
from cdktf_cdktf_provider_google.artifact_registry_repository import ArtifactRegistryRepository
from cdktf_cdktf_provider_google.service_account import ServiceAccount
from cdktf_cdktf_provider_google.storage_bucket import StorageBucket
from constructs import Construct

from app import wiring
from infra.checks import GOOGLE_MANAGED, skip
from infra.components.apis import Apis
from infra.components.bucket import SecureBucket
from infra.components.messaging import Messaging
from infra.components.warehouse import Warehouse
from infra.config import EnvironmentConfig
from infra.stacks.common import provider, remote_state

SERVICES = [
    "aiplatform.googleapis.com",
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com",
    "eventarc.googleapis.com",
    "iam.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "storage.googleapis.com",
]
# One identity per workload (declared in app/wiring.py); the app stack grants each only
# what it needs.
ACCOUNTS = wiring.ACCOUNTS


class DataStack(TerraformStack):
    def __init__(self, scope: Construct, config: EnvironmentConfig):
        super().__init__(scope, f"{config.env}-data")
        self.config = config
        remote_state(self, config, "data")
        provider(self, config)
        self.apis = Apis(self, "apis", config.project_id, SERVICES)
        self.warehouse = Warehouse(self, "warehouse", config)
        self.artifacts = self._bucket("artifacts", config.name("artifacts"))
        self.sources = self._bucket("sources", config.name("function-sources"))
        self.messaging = Messaging(self, "messaging", config)
        self.registry = ArtifactRegistryRepository(
            self,
            "registry",
            project=config.project_id,
            location=config.region,
            repository_id="recloop",
            format="DOCKER",
            description="recloop trainer and predictor images",
            labels=config.all_labels,
        )
        skip(self.registry, CKV_GCP_84=GOOGLE_MANAGED)
        self.accounts = {
            name: ServiceAccount(
                self,
                f"sa_{name}",
                project=config.project_id,
                account_id=config.name(name),
                display_name=f"recloop {config.env} {name}",
            )
            for name in ACCOUNTS
        }
        self._outputs()

    def _bucket(self, id: str, name: str) -> StorageBucket:
        c = self.config
        return SecureBucket(
            self, id, project=c.project_id, name=name, location=c.region, labels=c.all_labels
        ).bucket

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
        }.items():
            TerraformOutput(self, f"{key}_output", value=value)
