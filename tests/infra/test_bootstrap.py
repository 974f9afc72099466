"""The deployer can deploy recloop and nothing more; only this repository (by its numeric
ids), in the matching GitHub environment, and for prod only main's deploy and teardown
workflows, can become it."""

from __future__ import annotations

import pytest

from infra import config
from infra.stacks.bootstrap import WORKLOAD_PROJECT_ROLES
from infra.stacks.data import ACCOUNTS
from tests.infra.helpers import one, resources

ENVS = ("dev", "prod")
DEPLOYER = "${google_service_account.deployer.member}"
UNCONDITIONED = {
    "roles/aiplatform.user",
    "roles/artifactregistry.admin",
    "roles/bigquery.dataOwner",
    "roles/cloudfunctions.developer",
    "roles/cloudscheduler.admin",
    "roles/pubsub.admin",
    "roles/run.admin",
    "roles/serviceusage.serviceUsageAdmin",
    "roles/storage.admin",
}
# Roles that let a holder become, or mint keys for, any account of the project.
OWNER_EQUIVALENT = {
    "roles/owner",
    "roles/editor",
    "roles/iam.serviceAccountAdmin",
    "roles/iam.serviceAccountUser",
    "roles/iam.serviceAccountTokenCreator",
    "roles/iam.serviceAccountKeyAdmin",
    "roles/iam.securityAdmin",
}


@pytest.mark.parametrize("env", ENVS)
def test_deployer_project_roles_are_exact_and_iam_admin_is_conditioned(stacks, env):
    bindings = [
        b
        for b in resources(stacks[f"{env}-bootstrap"], "google_project_iam_member").values()
        if b["member"] == DEPLOYER
    ]
    assert {b["role"] for b in bindings if "condition" not in b} == UNCONDITIONED
    (conditioned,) = [b for b in bindings if "condition" in b]
    assert conditioned["role"] == "roles/resourcemanager.projectIamAdmin"
    assert conditioned["condition"]["expression"] == (
        "api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', [])"
        ".hasOnly(['roles/aiplatform.user', 'roles/bigquery.jobUser'])"
    )


@pytest.mark.parametrize("env", ENVS)
def test_the_deployer_may_grant_exactly_the_roles_the_app_stack_grants(stacks, env):
    granted = {
        b["role"]
        for layer in ("data", "app")
        for b in resources(stacks[f"{env}-{layer}"], "google_project_iam_member").values()
    }
    assert granted == set(WORKLOAD_PROJECT_ROLES)


@pytest.mark.parametrize("env", ENVS)
def test_no_project_wide_role_can_impersonate_or_own(stacks, env):
    for layer in ("bootstrap", "data", "app"):
        for binding in resources(stacks[f"{env}-{layer}"], "google_project_iam_member").values():
            assert binding["role"] not in OWNER_EQUIVALENT, (layer, binding)


@pytest.mark.parametrize("env", ENVS)
def test_actas_only_on_named_workload_accounts(stacks, env):
    bootstrap = stacks[f"{env}-bootstrap"]
    accounts = {
        key: body["account_id"]
        for key, body in resources(bootstrap, "google_service_account").items()
    }
    assert set(accounts.values()) == {f"recloop-{env}-{a}" for a in ACCOUNTS} | {
        f"recloop-{env}-deployer",
        f"recloop-{env}-builder",
    }
    act_as: dict[str, set[str]] = {}
    for binding in resources(bootstrap, "google_service_account_iam_member").values():
        target = binding["service_account_id"].split(".")[1]
        if binding["role"] == "roles/iam.workloadIdentityUser":
            assert target == "deployer"
            continue
        assert binding["role"] == "roles/iam.serviceAccountUser"
        actor = binding["member"].split(".")[1]
        act_as.setdefault(actor, set()).add(accounts[target].removeprefix(f"recloop-{env}-"))
    assert act_as == {
        "deployer": set(ACCOUNTS) | {"builder"},
        "sa_trigger": {"pipelines"},
        "sa_pipelines": {"predictor"},
    }
    for layer in ("data", "app"):  # the deployer cannot change who acts as whom
        assert not resources(stacks[f"{env}-{layer}"], "google_service_account_iam_member")
        assert not resources(stacks[f"{env}-{layer}"], "google_service_account")


@pytest.mark.parametrize("env", ENVS)
def test_workload_identity_binds_repository_ids_and_for_prod_ref_and_workflow(stacks, env):
    provider = one(
        stacks[f"{env}-bootstrap"],
        "google_iam_workload_identity_pool_provider",
        workload_identity_pool_provider_id="github-actions",
    )
    expected = (
        'assertion.repository_id == "812345678" && '
        'assertion.repository_owner_id == "151234567" && '
        f'assertion.sub == "repo:recloop/recloop:environment:{env}"'
    )
    if env == "prod":
        expected += (
            ' && assertion.ref == "refs/heads/main" && assertion.job_workflow_ref in ['
            '"recloop/recloop/.github/workflows/deploy.yml@refs/heads/main", '
            '"recloop/recloop/.github/workflows/teardown.yml@refs/heads/main"]'
        )
    assert provider["attribute_condition"] == expected


def test_repository_ids_are_typed(tmp_path, monkeypatch):
    source = (config.FOLDER / "dev.toml").read_text()
    (tmp_path / "dev.toml").write_text(
        source.replace("github_repository_id = 812345678", 'github_repository_id = "812345678"')
    )
    monkeypatch.setattr(config, "FOLDER", tmp_path)
    with pytest.raises(ValueError, match=r"github_repository_id: expected int"):
        config.load("dev")


def test_prod_deployer_reads_the_dev_registry_only(stacks):
    grant = one(
        stacks["dev-data"],
        "google_artifact_registry_repository_iam_member",
        role="roles/artifactregistry.reader",
    )
    assert grant["role"] == "roles/artifactregistry.reader"
    assert grant["member"] == (
        "serviceAccount:recloop-prod-deployer@recloop-prod.iam.gserviceaccount.com"
    )
    assert grant["repository"] == "${google_artifact_registry_repository.registry.name}"
    readers = resources(stacks["prod-data"], "google_artifact_registry_repository_iam_member")
    assert all(r["role"] != "roles/artifactregistry.reader" for r in readers.values())
    # The name granted is the name bootstrap gives prod's deployer.
    prod = config.load("prod")
    deployer = one(
        stacks["prod-bootstrap"], "google_service_account", account_id=prod.deployer_account_id
    )
    assert (
        grant["member"]
        == f"serviceAccount:{deployer['account_id']}@{deployer['project']}.iam.gserviceaccount.com"
    )


@pytest.mark.parametrize("env", ENVS)
def test_functions_build_as_the_builder_into_their_own_repository(stacks, env):
    data, app = stacks[f"{env}-data"], stacks[f"{env}-app"]
    repository = one(data, "google_artifact_registry_repository", repository_id="recloop-functions")
    assert repository["lifecycle"] == {"prevent_destroy": True}
    writer = one(
        data, "google_artifact_registry_repository_iam_member", role="roles/artifactregistry.writer"
    )
    assert writer["repository"] == "${google_artifact_registry_repository.function_images.name}"
    assert writer["member"] == "${data.google_service_account.sa_builder.member}"
    # Google's "Custom Service Account for Cloud Build": logWriter, artifactregistry.writer and
    # storage.objectAdmin (reading the source); objectViewer alone cannot run a build.
    reader = one(data, "google_storage_bucket_iam_member", role="roles/storage.objectAdmin")
    assert reader["member"] == writer["member"] and "sources" in reader["bucket"]
    for function in resources(app, "google_cloudfunctions2_function").values():
        build = function["build_config"]
        assert "sa_buildername" in build["service_account"]
        assert "function_imagesid" in build["docker_repository"]
    grants = {
        b["role"]: b.get("condition")
        for b in resources(stacks[f"{env}-bootstrap"], "google_project_iam_member").values()
        if b["member"] == "${google_service_account.sa_builder.member}"
    }
    assert grants.keys() == {"roles/logging.logWriter", "roles/storage.objectAdmin"}
    assert grants["roles/logging.logWriter"] is None
    # Cloud Functions copies the source into gcf-v2-sources-PROJECT_NUMBER-REGION; the
    # builder's objectAdmin on the project reaches those buckets only.
    assert grants["roles/storage.objectAdmin"]["expression"] == (
        'resource.name.startsWith("projects/_/buckets/gcf-v2-sources-")'
    )
