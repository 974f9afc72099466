"""The checkov gate (infra/checkov_gate.py) on small synthesised fixtures: what it must not
let through."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.checkov_gate import main as checkov_gate
from infra.checkov_gate import resolved_copy

CHECKOV = Path(__file__).resolve().parents[2] / ".venv-checkov" / "bin" / "checkov"
pytestmark = pytest.mark.skipif(
    not CHECKOV.exists(), reason="checkov is installed by `make test` into .venv-checkov"
)
BUCKET = {
    "name": "fixture-bucket",
    "location": "US",
    "uniform_bucket_level_access": True,
    "public_access_prevention": "enforced",
    "versioning": {"enabled": True},
}
CMK = "checkov:skip=CKV_GCP_83:Google-managed keys in this fixture"


def write(root: Path, stacks: dict[str, Any]) -> Path:
    for name, document in stacks.items():
        (root / name).mkdir(parents=True)
        text = document if isinstance(document, str) else json.dumps(document, indent=2)
        (root / name / "cdk.tf.json").write_text(text)
    return root


def run(stacks: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = checkov_gate(str(CHECKOV), str(stacks))
    return code, capsys.readouterr().out.splitlines()


def test_a_stack_checkov_cannot_parse_fails_the_gate(tmp_path, capsys):
    stacks = write(
        tmp_path,
        {
            "fine": {"resource": {"google_pubsub_topic": {"t": {"name": "t", "//": {"0": CMK}}}}},
            # Valid JSON, but no Terraform: checkov cannot parse the file and checks nothing.
            "broken": {
                "resource": {"google_pubsub_topic": {"u": {"name": "u", "//": {"0": CMK}}}},
                "output": {"o": None},
            },
        },
    )
    code, lines = run(stacks, capsys)
    assert code == 1
    assert any(line.startswith("PARSING") and "broken" in line for line in lines), lines


def test_skips_are_keyed_by_type_and_references_are_resolved(tmp_path, capsys):
    stacks = write(
        tmp_path,
        {
            # A topic's skip must not hide the same-named bucket's failure.
            "names": {
                "resource": {
                    "google_storage_bucket": {"shared": BUCKET},
                    "google_pubsub_topic": {
                        "shared": {
                            "name": "t",
                            "//": {"0": CMK, "1": "checkov:skip=CKV_GCP_62:wrong resource"},
                        }
                    },
                }
            },
            # An admin role granted to a service account through a reference.
            "references": {
                "resource": {
                    "google_service_account": {
                        "robot": {"project": "fixture", "account_id": "robot"}
                    },
                    "google_project_iam_member": {
                        "robot_admin": {
                            "project": "fixture",
                            "role": "roles/storage.admin",
                            "member": "serviceAccount:${google_service_account.robot.email}",
                        }
                    },
                }
            },
        },
    )
    code, lines = run(stacks, capsys)
    assert code == 1
    failed = {line.split(":")[0] for line in lines if line.startswith(("FAILED", "STALE"))}
    assert failed == {
        "FAILED  CKV_GCP_62 on names/google_storage_bucket.shared",
        "STALE   CKV_GCP_62 on names/google_pubsub_topic.shared",
        "FAILED  CKV_GCP_42 on references/google_project_iam_member.robot_admin",
    }


def test_the_scanned_copy_of_the_real_stacks_resolves_references_across_stacks(
    stacks_dir, tmp_path
):
    resolved_copy(stacks_dir, tmp_path)
    copies = {p.parent.name: json.loads(p.read_text()) for p in tmp_path.glob("*/cdk.tf.json")}
    for name, document in copies.items():
        text = json.dumps(document["resource"])
        assert "${" not in text, name  # resolved, or marked as known only after apply
    for env in ("dev", "prod"):
        members = {
            body["member"]
            for layer in ("app", "bootstrap")
            for body in copies[f"{env}-{layer}"]["resource"]["google_project_iam_member"].values()
        }
        assert members == {
            f"serviceAccount:recloop-{env}-{account}@recloop-{env}.iam.gserviceaccount.com"
            for account in ("simulator", "trigger", "pipelines", "deployer", "builder")
        }
