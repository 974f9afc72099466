"""`<env>-bootstrap`: applied once per project by an operator, with local state.

Creates what the deployer must not be able to change: the remote-state bucket, GitHub
Workload Identity (a pool whose provider admits only this repository, by its numeric ids,
and for prod only its main branch and named workflows), the workload identities and who may
act as whom, the identity Cloud Build builds the functions as, and the environment's
deployer account with exactly what deploying the data and app stacks needs.
Proved by tests/infra/test_bootstrap.py.
"""

from __future__ import annotations

from cdktf import LocalBackend, TerraformOutput, TerraformStack
from cdktf_cdktf_provider_google.iam_workload_identity_pool import IamWorkloadIdentityPool
from cdktf_cdktf_provider_google.iam_workload_identity_pool_provider import (
    IamWorkloadIdentityPoolProvider,
    IamWorkloadIdentityPoolProviderOidc,
)
from cdktf_cdktf_provider_google.project_iam_member import (
    ProjectIamMember,
    ProjectIamMemberCondition,
)
from cdktf_cdktf_provider_google.service_account import ServiceAccount
from cdktf_cdktf_provider_google.service_account_iam_member import ServiceAccountIamMember
from constructs import Construct

from infra.checks import skip
from infra.components.apis import Apis
from infra.components.bucket import SecureBucket
from infra.config import EnvironmentConfig
from infra.lifecycle import keep
from infra.stacks.common import provider
from infra.stacks.data import ACCOUNTS, BUILDER_SOURCE_ROLE

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
# Project-level roles the app stack grants workloads: the only roles the deployer may grant.
WORKLOAD_PROJECT_ROLES = ("roles/aiplatform.user", "roles/bigquery.jobUser")
# Cloud Build builds the functions as this account (the project's default build account may
# lack the permissions since Cloud Build's July 2024 change). Google's "Custom Service
# Account for Cloud Build" (cloud.google.com/functions/docs/securing/build-custom-sa) and
# Cloud Run's "Set build service account" list exactly three roles: roles/logging.logWriter
# (build logs), roles/artifactregistry.writer (the image; granted on the functions' own
# repository in the data stack) and roles/storage.objectAdmin (reading the function source).
# Cloud Functions copies the source into its own gcf-v2-sources-PROJECT_NUMBER-REGION bucket
# ("Build process overview", cloud.google.com/functions/docs/building), which the builder
# reads: objectAdmin is granted on the project, conditioned to those buckets, and (data
# stack) on the sources bucket. (tests/infra/test_bootstrap.py::
# test_functions_build_as_the_builder_into_their_own_repository)
BUILDER = "builder"
BUILDER_PROJECT_ROLES = ("roles/logging.logWriter",)
FUNCTION_SOURCE_BUCKETS = "projects/_/buckets/gcf-v2-sources-"
# Workload → the account it starts work as (the Trigger submits pipeline runs as the
# pipelines account; the pipelines deploy the predictor as the predictor account).
ACTS_AS = {"trigger": "pipelines", "pipelines": "predictor"}
# Deploying the data and app stacks, role by role: (role, why an admin role where it is one).
DEPLOYER_ROLES: dict[str, str | None] = {
    "roles/aiplatform.user": None,  # the endpoint; the delivery smoke test's prediction and run
    "roles/bigquery.dataOwner": None,  # the dataset, its tables and dataset IAM
    "roles/cloudfunctions.developer": None,  # the functions
    "roles/artifactregistry.admin": (
        "creates the image repository and grants the next environment read access: "
        "repositories.create and setIamPolicy are only in artifactregistry.admin"
    ),
    "roles/cloudscheduler.admin": "creates the ticks: Cloud Scheduler has no narrower editor role",
    "roles/pubsub.admin": (
        "creates topics and subscriptions and grants publishers/subscribers on them: "
        "topics.setIamPolicy is only in pubsub.admin"
    ),
    "roles/run.admin": (
        "grants each function's account run.invoker on its own service: "
        "services.setIamPolicy is only in run.admin"
    ),
    "roles/serviceusage.serviceUsageAdmin": (
        "enables the APIs the data stack lists: services.enable is only in serviceUsageAdmin"
    ),
    "roles/storage.admin": (
        "creates the buckets and grants workloads on them; reads and writes Terraform state: "
        "buckets.setIamPolicy is only in storage.admin"
    ),
}


def delegated_grants(roles: tuple[str, ...]) -> str:
    """IAM condition: a setIamPolicy call may add or remove grants of these roles only
    (Google's documented pattern for delegating role grants)."""
    listed = ", ".join(f"'{r}'" for r in roles)
    return f"api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', []).hasOnly([{listed}])"


def attribute_condition(config: EnvironmentConfig) -> str:
    """Which GitHub OIDC tokens the provider accepts: this repository by its never-reused
    numeric ids, jobs in the GitHub environment named like this one, and where configured
    (prod) only the given ref and workflow files."""
    repo = config.github_repository
    clauses = [
        f'assertion.repository_id == "{config.github_repository_id}"',
        f'assertion.repository_owner_id == "{config.github_repository_owner_id}"',
        f'assertion.sub == "repo:{repo}:environment:{config.env}"',
    ]
    if config.github_ref:
        clauses.append(f'assertion.ref == "{config.github_ref}"')
        if config.github_workflows:
            refs = ", ".join(
                f'"{repo}/.github/workflows/{w}@{config.github_ref}"'
                for w in config.github_workflows
            )
            clauses.append(f"assertion.job_workflow_ref in [{refs}]")
    return " && ".join(clauses)


class BootstrapStack(TerraformStack):
    def __init__(self, scope: Construct, config: EnvironmentConfig):
        super().__init__(scope, f"{config.env}-bootstrap")
        LocalBackend(self, path=f"{config.env}-bootstrap.tfstate")
        provider(self, config)
        project = config.project_id
        apis = Apis(
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
        self.pool = keep(
            IamWorkloadIdentityPool(
                self,
                "github_pool",
                project=project,
                workload_identity_pool_id="github",
                display_name="GitHub Actions",
            )
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
                "attribute.repository_id": "assertion.repository_id",
                "attribute.repository_owner_id": "assertion.repository_owner_id",
                "attribute.environment": "assertion.environment",
                "attribute.ref": "assertion.ref",
                "attribute.job_workflow_ref": "assertion.job_workflow_ref",
            },
            attribute_condition=attribute_condition(config),
            oidc=IamWorkloadIdentityPoolProviderOidc(issuer_uri=GITHUB_ISSUER),
        )
        self.workloads = {
            name: keep(
                ServiceAccount(
                    self,
                    f"sa_{name}",
                    project=project,
                    account_id=config.name(name),
                    display_name=f"recloop {config.env} {name}",
                )
            )
            for name in ACCOUNTS
        }
        self.builder = keep(
            ServiceAccount(
                self,
                "sa_builder",
                project=project,
                account_id=config.name(BUILDER),
                display_name=f"recloop {config.env} function builds",
            )
        )
        for role in BUILDER_PROJECT_ROLES:
            ProjectIamMember(
                self,
                f"builder_{role.split('/')[1].replace('.', '_')}",
                project=project,
                role=role,
                member=self.builder.member,
            )
        sources = ProjectIamMember(
            self,
            "builder_reads_function_sources",
            project=project,
            role=BUILDER_SOURCE_ROLE,
            member=self.builder.member,
            condition=ProjectIamMemberCondition(
                title="function source buckets only",
                expression=f'resource.name.startsWith("{FUNCTION_SOURCE_BUCKETS}")',
            ),
        )
        skip(
            sources,
            CKV_GCP_42=(
                "storage.objectAdmin is the role Google's custom build account guide lists for "
                "reading the function source; conditioned to the gcf-v2-sources-* buckets"
            ),
        )
        for actor, target in ACTS_AS.items():
            ServiceAccountIamMember(
                self,
                f"{actor}_acts_as_{target}",
                service_account_id=self.workloads[target].name,
                role="roles/iam.serviceAccountUser",
                member=self.workloads[actor].member,
            )
        self.deployer = keep(
            ServiceAccount(
                self,
                "deployer",
                project=project,
                account_id=config.deployer_account_id,
                display_name=f"recloop {config.env} deployer (GitHub Actions)",
            )
        )
        ServiceAccountIamMember(
            self,
            "deployer_from_github_environment",
            service_account_id=self.deployer.name,
            role="roles/iam.workloadIdentityUser",
            member=f"principalSet://iam.googleapis.com/{self.pool.name}/attribute.environment/{config.env}",
        )
        self._deployer_roles(config)
        apis.precede(self)
        TerraformOutput(self, "workload_identity_provider", value=self.provider.name)
        TerraformOutput(self, "deployer_service_account", value=self.deployer.email)
        TerraformOutput(self, "state_bucket", value=self.state_bucket.name)

    def _deployer_roles(self, config: EnvironmentConfig) -> None:
        member = self.deployer.member
        for role, why_admin in DEPLOYER_ROLES.items():
            binding = ProjectIamMember(
                self,
                f"deployer_{role.split('/')[1].replace('.', '_')}",
                project=config.project_id,
                role=role,
                member=member,
            )
            if why_admin:
                skip(binding, CKV_GCP_42=why_admin)
        iam_admin = ProjectIamMember(
            self,
            "deployer_grants_workload_roles",
            project=config.project_id,
            role="roles/resourcemanager.projectIamAdmin",
            member=member,
            condition=ProjectIamMemberCondition(
                title="workload roles only",
                description="The deployer may grant and revoke only the workloads' roles.",
                expression=delegated_grants(WORKLOAD_PROJECT_ROLES),
            ),
        )
        skip(
            iam_admin,
            CKV_GCP_42="conditioned: may grant or revoke only WORKLOAD_PROJECT_ROLES",
        )
        # Deploying functions (built as the builder; run, and pushed to, as the workload
        # accounts) and push subscriptions' tokens.
        for name, account in {**self.workloads, BUILDER: self.builder}.items():
            ServiceAccountIamMember(
                self,
                f"deployer_acts_as_{name}",
                service_account_id=account.name,
                role="roles/iam.serviceAccountUser",
                member=member,
            )
