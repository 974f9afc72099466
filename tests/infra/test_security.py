import re
import subprocess
import sys
from pathlib import Path

import pytest

from infra import function_source
from infra.checkov_gate import main as checkov_gate
from infra.golden import GOLDEN
from tests.infra.helpers import one, resources, walk

ROOT = Path(__file__).resolve().parents[2]
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
IAM_KINDS = (
    "google_project_iam_member",
    "google_bigquery_dataset_iam_member",
    "google_bigquery_table_iam_member",
    "google_pubsub_topic_iam_member",
    "google_storage_bucket_iam_member",
    "google_service_account_iam_member",
    "google_cloud_run_v2_service_iam_member",
)
EXPECTED_ROLES = {
    "logger": {
        "roles/bigquery.dataEditor",
        "roles/pubsub.publisher",
        "roles/run.invoker",
    },
    "simulator": {
        "roles/aiplatform.user",
        "roles/pubsub.publisher",
        "roles/run.invoker",
    },
    "trigger": {
        "roles/bigquery.dataViewer",
        "roles/bigquery.jobUser",
        "roles/aiplatform.user",
        "roles/storage.objectViewer",
        "roles/storage.legacyBucketReader",  # the SDK's bucket check when submitting
        "roles/run.invoker",
        # Deciding canaries: on a few tables and two objects only (the test below).
        "roles/bigquery.dataEditor",
        "roles/storage.objectUser",
    },
    "predictor": {"roles/storage.objectViewer", "roles/pubsub.publisher"},
    "pipelines": {
        "roles/bigquery.dataEditor",
        "roles/bigquery.jobUser",
        "roles/aiplatform.user",
        "roles/storage.objectAdmin",
    },
}


def test_nothing_is_public(stacks):
    for name, stack in stacks.items():
        for value in walk(stack):
            assert "allUsers" not in value and "allAuthenticatedUsers" not in value, name


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_each_workload_account_has_exactly_its_roles(stacks, env):
    granted: dict[str, set[str]] = {}
    for kind in IAM_KINDS:
        for binding in resources(stacks[f"{env}-app"], kind).values():
            account = re.search(r"sa_([a-z]+)email", binding["member"]).group(1)
            granted.setdefault(account, set()).add(binding["role"])
    assert granted == EXPECTED_ROLES


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_app_stack_holds_no_data(stacks, env):
    app = stacks[f"{env}-app"]["resource"]
    for kind in (
        "google_bigquery_dataset",
        "google_bigquery_table",
        "google_storage_bucket",
        "google_pubsub_topic",
    ):
        assert kind not in app


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_only_this_repository_and_environment_can_deploy(stacks, env):
    """The attribute condition itself: tests/infra/test_bootstrap.py."""
    bootstrap = stacks[f"{env}-bootstrap"]
    provider = one(
        bootstrap,
        "google_iam_workload_identity_pool_provider",
        workload_identity_pool_provider_id="github-actions",
    )
    assert (
        f'assertion.sub == "repo:recloop/recloop:environment:{env}"'
        in (provider["attribute_condition"])
    )
    assert provider["oidc"]["issuer_uri"] == "https://token.actions.githubusercontent.com"
    impersonation = one(
        bootstrap, "google_service_account_iam_member", role="roles/iam.workloadIdentityUser"
    )
    assert impersonation["member"].endswith(f"/attribute.environment/{env}")
    assert not resources(bootstrap, "google_service_account_key")  # no long-lived keys


def test_function_archive_holds_entry_points_and_requirements_only(tmp_path):
    source = function_source.build(tmp_path / "source")
    files = {str(p.relative_to(source)) for p in source.rglob("*") if p.is_file()}
    assert {
        "main.py",
        "requirements.txt",
        "app/functions/main.py",
        "app/functions/logger.py",
        "app/functions/simulator.py",
        "app/functions/trigger.py",
        "app/profiles/dev.toml",
    } <= files
    assert not any(
        f.startswith(("tests/", ".venv", "app/predictor", "app/trainer", "pipelines/"))
        for f in files
    )
    assert not any("__pycache__" in f for f in files)
    requirements = (source / "requirements.txt").read_text().split()
    assert all("==" in r for r in requirements) and any(
        r.startswith("functions-framework==") for r in requirements
    )
    # The archive's code imports and exposes the three entry points.
    probe = subprocess.run(
        [sys.executable, "-c", "import main; print(sorted(main.__all__))"],
        cwd=source,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "['logger', 'simulator', 'trigger']"


def test_synthesis_matches_the_reviewed_golden_files(stacks):
    import json

    for name, document in stacks.items():
        golden = json.loads((GOLDEN / f"{name}.json").read_text())
        assert document == golden, (
            f"{name} differs from infra/golden/{name}.json: review and run `make golden`"
        )
    assert {p.stem for p in GOLDEN.glob("*.json")} == set(stacks)


@pytest.mark.skipif(
    not CHECKOV.exists(), reason="checkov is installed by `make test` into .venv-checkov"
)
def test_checkov_passes_with_only_reasoned_skips(stacks_dir, capsys):
    assert checkov_gate(str(CHECKOV), str(stacks_dir)) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"checkov: \d+ passed, 0 failed, \d+ skipped with a reason", summary)


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_trigger_may_read_the_pipeline_roots_bucket(stacks, env):
    """aiplatform's PipelineJob.submit calls Bucket.exists() and reloads the pipeline root's
    bucket (storage.buckets.get); storage.objectViewer has no bucket permission (before:
    every submission logged a Forbidden traceback)."""
    app = stacks[f"{env}-app"]
    grants = {
        b["role"]: b["bucket"]
        for b in resources(app, "google_storage_bucket_iam_member").values()
        if "sa_triggeremail" in b["member"]
    }
    assert grants["roles/storage.legacyBucketReader"] == grants["roles/storage.objectViewer"]
    assert "artifacts" in grants["roles/storage.legacyBucketReader"]


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_trigger_may_write_what_a_canary_decision_writes(stacks, env):
    """The Trigger decides canaries (app/deployer/canary.py::step): it records the decision,
    commits a winner's run in the ledger, moves the pointer and clears the canary state. It
    may edit exactly those tables (not the dataset) and write exactly those two objects (not
    the bucket)."""
    from app import wiring
    from app.warehouse import ledger

    app = stacks[f"{env}-app"]
    trigger = [
        b
        for kind in IAM_KINDS
        for b in resources(app, kind).values()
        if "sa_triggeremail" in b["member"]
    ]
    tables = {
        re.search(r"bigquery_tablewarehouse_([a-z_]+)_[0-9A-F]{8}table_id", b["table_id"]).group(1)
        for b in trigger
        if b["role"] == "roles/bigquery.dataEditor"
    }
    assert all("table_id" in b for b in trigger if b["role"] == "roles/bigquery.dataEditor")
    # What a commit's statements write (app/warehouse/ledger.py), and the decision's table.
    d = ledger.bigquery("p", "d")
    statements = ledger.head_statements(d) + ledger.commit_statements(d)
    committed = {
        m for s in statements for m in re.findall(r"(?:INSERT INTO|UPDATE) `p\.d\.(\w+)`", s)
    }
    assert tables == committed | {"promotions"} == set(wiring.TRIGGER.writes.tables)
    (objects,) = [b for b in trigger if b["role"] == "roles/storage.objectUser"]
    named = re.findall(
        r'resource\.name == "projects/_/buckets/\$\{[^}]+artifacts[^}]+\}/objects/([^"]+)"',
        objects["condition"]["expression"],
    )
    assert sorted(named) == ["policies/CANARY", "policies/CURRENT"]
    assert objects["condition"]["expression"].count("||") == 1  # nothing else
