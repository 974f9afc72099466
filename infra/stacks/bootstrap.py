"""`<env>-bootstrap`: applied once per project by an operator, with local state.

Creates the remote-state bucket the other stacks use, and GitHub Workload Identity: a pool
whose provider admits only this repository, and the environment's deployer account, which
only jobs of the matching GitHub environment (the OIDC `environment` claim) can impersonate.
"""

from __future__ import annotations

from cdktf import LocalBackend, TerraformOutput, TerraformStack
from cdktf_cdktf_provider_google.iam_workload_identity_pool import IamWorkloadIdentityPool
from cdktf_cdktf_provider_google.iam_workload_identity_pool_provider import (
    IamWorkloadIdentityPoolProvider,
    IamWorkloadIdentityPoolProviderOidc,
)
from cdktf_cdktf_provider_google.project_iam_member import ProjectIamMember
from cdktf_cdktf_provider_google.service_account import ServiceAccount
from cdktf_cdktf_provider_google.service_account_iam_member import ServiceAccountIamMember
from constructs import Construct

from infra.checks import skip
from infra.components.apis import Apis
from infra.components.bucket import SecureBucket
from infra.config import EnvironmentConfig
from infra.stacks.common import provider

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
# What `cdktf deploy` of the data and app stacks needs, and no project ownership.
DEPLOYER_ROLES = (
    "roles/aiplatform.admin",
    "roles/artifactregistry.admin",
    "roles/bigquery.admin",
    "roles/cloudfunctions.admin",
    "roles/cloudscheduler.admin",
    "roles/eventarc.admin",
    "roles/iam.serviceAccountAdmin",
    "roles/iam.serviceAccountUser",
    "roles/pubsub.admin",
    "roles/resourcemanager.projectIamAdmin",
    "roles/run.admin",
    "roles/serviceusage.serviceUsageAdmin",
    "roles/storage.admin",
)


class BootstrapStack(TerraformStack):
    def __init__(self, scope: Construct, config: EnvironmentConfig):
        super().__init__(scope, f"{config.env}-bootstrap")
        LocalBackend(self, path=f"{config.env}-bootstrap.tfstate")
        provider(self, config)
        project = config.project_id
        Apis(
            self,
            "apis",
            project,
            ["iam.googleapis.com", "iamcredentials.googleapis.com", "sts.googleapis.com"],
        )
        self.state_bucket = SecureBucket(
            self,
            "state",
            project=project,
            name=config.state_bucket,
            location=config.region,
            labels=config.all_labels,
        ).bucket
        self.pool = IamWorkloadIdentityPool(
            self,
            "github_pool",
            project=project,
            workload_identity_pool_id="github",
            display_name="GitHub Actions",
        )
        self.provider = IamWorkloadIdentityPoolProvider(
            self,
            "github_provider",
            project=project,
            workload_identity_pool_id=self.pool.workload_identity_pool_id,
            workload_identity_pool_provider_id="github-actions",
            display_name="GitHub Actions OIDC",
            attribute_mapping={
                "google.subject": "assertion.sub",
                "attribute.repository": "assertion.repository",
                "attribute.environment": "assertion.environment",
            },
            # Only this repository, and only its jobs in the GitHub environment named like this one.
            attribute_condition=(
                f'assertion.repository == "{config.github_repository}" && '
                f'assertion.sub == "repo:{config.github_repository}:environment:{config.env}"'
            ),
            oidc=IamWorkloadIdentityPoolProviderOidc(issuer_uri=GITHUB_ISSUER),
        )
        self.deployer = ServiceAccount(
            self,
            "deployer",
            project=project,
            account_id=config.name("deployer"),
            display_name=f"recloop {config.env} deployer (GitHub Actions)",
        )
        ServiceAccountIamMember(
            self,
            "deployer_from_github_environment",
            service_account_id=self.deployer.name,
            role="roles/iam.workloadIdentityUser",
            member=f"principalSet://iam.googleapis.com/{self.pool.name}/attribute.environment/{config.env}",
        )
        for role in DEPLOYER_ROLES:
            binding = ProjectIamMember(
                self,
                f"deployer_{role.split('/')[1].replace('.', '_')}",
                project=project,
                role=role,
                member=f"serviceAccount:{self.deployer.email}",
            )
            if role in ("roles/iam.serviceAccountAdmin", "roles/iam.serviceAccountUser"):
                skip(
                    binding,
                    CKV_GCP_41="the deployer creates workload accounts and attaches them",
                    CKV_GCP_49="only GitHub jobs of this environment can impersonate the deployer",
                )
        TerraformOutput(self, "workload_identity_provider", value=self.provider.name)
        TerraformOutput(self, "deployer_service_account", value=self.deployer.email)
        TerraformOutput(self, "state_bucket", value=self.state_bucket.name)
