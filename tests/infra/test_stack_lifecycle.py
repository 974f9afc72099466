"""Teardown and rebuild as an operator runs them: which stacks each make target hands cdktf,
checked against the dependency graph cdktf itself synthesised (manifest.json), and what
refuses to be destroyed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from app.config import env_name
from tests.infra.helpers import one, resources

ROOT = Path(__file__).resolve().parents[2]
ENVS = ("dev", "prod")
# The app stack's release inputs (contract 1): Terraform needs them even to destroy it.
RELEASE = (
    "TRAINER_IMAGE=r/trainer@sha256:" + "a" * 64,
    "SERVING_IMAGE=r/predictor@sha256:" + "b" * 64,
    "RELEASE=" + "c" * 40,
)
# Resources that hold data or identity: losing one loses data or breaks what refers to it.
STATEFUL = {
    "google_artifact_registry_repository",
    "google_bigquery_dataset",
    "google_bigquery_table",
    "google_iam_workload_identity_pool",
    "google_pubsub_topic",
    "google_service_account",
    "google_storage_bucket",
    "google_vertex_ai_endpoint",
}


def dependencies(stacks_dir: Path) -> dict[str, list[str]]:
    manifest = json.loads((stacks_dir.parent / "manifest.json").read_text())
    return {name: stack["dependencies"] for name, stack in manifest["stacks"].items()}


def cdktf_commands(*args: str) -> tuple[int, list[tuple[str, list[str]]], str]:
    """`make -n` of a target: its exit code, the cdktf (verb, stacks) it would run, stderr."""
    run = subprocess.run(
        ["make", "-n", "-o", ".venv/.installed", "-o", "infra/node_modules", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    commands = []
    for line in run.stdout.splitlines():
        if m := re.search(r"\bcdktf (deploy|destroy|apply)\b(.*)", line):
            stacks = [t for t in m.group(2).split() if not t.startswith("-")]
            commands.append((m.group(1), stacks))
    return run.returncode, commands, run.stderr


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("target", ["rebuild", "destroy"])
def test_make_targets_hand_cdktf_every_stack_it_requires(stacks_dir, env, target):
    """cdktf refuses to deploy a stack without its dependencies and to destroy one without
    its dependants (checkIfAllDependenciesAreIncluded / ...DependantsAreIncluded)."""
    graph = dependencies(stacks_dir)
    code, commands, stderr = cdktf_commands(target, f"ENV={env}", *RELEASE)
    assert code == 0, stderr
    assert commands
    for verb, stacks in commands:
        assert set(stacks) <= set(graph), stacks
        if verb == "deploy":
            missing = {d for s in stacks for d in graph[s]} - set(stacks)
        else:
            missing = {s for s, deps in graph.items() for d in deps if d in stacks} - set(stacks)
        assert not missing, f"make {target} ENV={env}: cdktf {verb} {stacks} lacks {missing}"
        if verb == "destroy":
            assert stacks == [f"{env}-app"]  # never data, never bootstrap
    if target == "rebuild":
        assert commands[0] == ("destroy", [f"{env}-app"])
        assert commands[-1][0] == "deploy" and f"{env}-app" in commands[-1][1]


@pytest.mark.parametrize("env", ENVS)
def test_no_make_target_destroys_a_data_stack(env):
    for stack in ("data", "bootstrap"):
        for confirm in ("", f"CONFIRM={env}-{stack}"):
            args = ["destroy", f"ENV={env}", f"STACK={stack}", *RELEASE]
            args += [confirm] if confirm else []
            code, commands, stderr = cdktf_commands(*args)
            assert code != 0 and not commands
            assert "refusing" in stderr and "Deleting data" in stderr


@pytest.mark.parametrize("target", ["rebuild", "destroy"])
def test_destroy_and_rebuild_refuse_without_the_live_release(target):
    for missing in range(len(RELEASE)):
        given = [r for i, r in enumerate(RELEASE) if i != missing]
        code, commands, stderr = cdktf_commands(target, "ENV=dev", *given)
        name = RELEASE[missing].split("=")[0]
        assert code != 0 and not commands
        assert f"need {name}=" in stderr


@pytest.mark.parametrize("env", ENVS)
def test_deploy_refuses_prod_and_a_missing_release(env):
    """`make deploy` applies an unreviewed plan: prod goes through make plan/apply; without
    the release inputs Terraform has no value for the app stack's variables (before: prod
    was deployed, and a missing input reached Terraform)."""
    code, commands, stderr = cdktf_commands("deploy", f"ENV={env}", *RELEASE)
    if env == "prod":
        assert code != 0 and not commands
        assert "refusing" in stderr and "make plan ENV=prod" in stderr
    else:
        assert code == 0 and commands == [("deploy", ["dev-data", "dev-app"])], stderr
    for missing in range(len(RELEASE)):
        given = [r for i, r in enumerate(RELEASE) if i != missing]
        code, commands, stderr = cdktf_commands("deploy", "ENV=dev", *given)
        assert code != 0 and not commands
        assert f"needs {RELEASE[missing].split('=')[0]}=" in stderr


def test_no_workflow_destroys_anything_but_an_app_stack():
    for path in (ROOT / ".github" / "workflows").glob("*.yml"):
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            for step in job.get("steps", []):
                script = step.get("run", "")
                assert not re.search(r"\b(cdktf|terraform)\b[^\n]*\bdestroy\b", script), path
                assert "STACK=" not in script, path


@pytest.mark.parametrize("env", ENVS)
def test_every_stateful_resource_refuses_destruction(stacks, env):
    found = set()
    for layer in ("data", "bootstrap"):
        for kind, items in stacks[f"{env}-{layer}"]["resource"].items():
            for name, body in items.items():
                if kind in STATEFUL or (kind == "google_pubsub_subscription" and layer == "data"):
                    found.add(kind)
                    assert body.get("lifecycle") == {"prevent_destroy": True}, (layer, kind, name)
    assert found == STATEFUL | {"google_pubsub_subscription"}
    app = stacks[f"{env}-app"]["resource"]
    assert not STATEFUL & set(app)
    assert not any("lifecycle" in body for items in app.values() for body in items.values())


@pytest.mark.parametrize("env", ENVS)
def test_the_endpoint_lives_with_the_data_and_the_app_refers_to_it(stacks, env):
    endpoint = one(
        stacks[f"{env}-data"], "google_vertex_ai_endpoint", display_name=f"recloop-{env}-endpoint"
    )
    assert endpoint["name"].isdigit() and len(endpoint["name"]) == 10
    assert endpoint["lifecycle"] == {"prevent_destroy": True}
    assert "endpoint_id_output" in stacks[f"{env}-data"]["output"]
    assert not resources(stacks[f"{env}-app"], "google_vertex_ai_endpoint")
    functions = resources(stacks[f"{env}-app"], "google_cloudfunctions2_function").values()
    given = [
        f["service_config"]["environment_variables"]["RECLOOP__LOOP__VERTEX_ENDPOINT"]
        for f in functions
        if "RECLOOP__LOOP__VERTEX_ENDPOINT" in f["service_config"]["environment_variables"]
    ]
    assert given  # the Simulator asks the endpoint
    for value in given:
        assert re.fullmatch(
            r"\$\{data\.terraform_remote_state\.[^}]*google_vertex_ai_endpoint[^}]*\}", value
        )


def github_shell(step: dict, workflow: dict) -> list[str]:
    """The command GitHub runs a `run:` step with on Linux: the step's shell, else the
    workflow's `defaults.run.shell`; unspecified is `bash -e` (no pipefail), `shell: bash` is
    `bash --noprofile --norc -eo pipefail` (GitHub's workflow syntax, jobs.<id>.steps[*].shell)."""
    shells = {None: ["bash", "-e"], "bash": ["bash", "--noprofile", "--norc", "-eo", "pipefail"]}
    shell = step.get("shell") or workflow.get("defaults", {}).get("run", {}).get("shell")
    return [*shells[shell], "-c", step["run"]]


def live_release_environment() -> dict[str, str]:
    """A deployed Trigger's release variables, named as app/config.py names them."""
    live = dict(r.split("=", 1) for r in RELEASE)
    return {
        env_name(("cloud", "trainer_image")): live["TRAINER_IMAGE"],
        env_name(("cloud", "serving_image")): live["SERVING_IMAGE"],
        env_name(("cloud", "release")): live["RELEASE"],
        env_name(("profile",)): "dev",
    }


def read_live_release(tmp_path: Path, gcloud: str) -> subprocess.CompletedProcess[str]:
    """Runs teardown.yml's "Read the release" step as GitHub would, against a fake gcloud."""
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "teardown.yml").read_text())
    steps = {s.get("name"): s for s in workflow["jobs"]["teardown"]["steps"]}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "gcloud").write_text("#!/bin/sh\n" + gcloud)
    (bin_dir / "gcloud").chmod(0o755)
    return subprocess.run(
        github_shell(steps["Read the release the app stack runs"], workflow),
        env={
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "GITHUB_OUTPUT": str(tmp_path / "outputs"),
            "TRIGGER": "recloop-dev-trigger",
            "REGION": "us-central1",
            "PROJECT": "recloop-dev",
        },
        capture_output=True,
        text=True,
    )


def test_reading_the_live_release_fails_when_the_trigger_cannot_tell_it(tmp_path):
    """Before: under GitHub's default `bash -e` a failed describe fed jq nothing and a missing
    variable became "null"; both steps passed and the destroy ran with no release."""
    failed = read_live_release(tmp_path, "echo 'NOT_FOUND: function' >&2; exit 1\n")
    assert failed.returncode != 0
    environment = live_release_environment()
    del environment[env_name(("cloud", "serving_image"))]
    describe = json.dumps({"serviceConfig": {"environmentVariables": environment}})
    missing = read_live_release(tmp_path, f"echo '{describe}'\n")
    assert missing.returncode != 0
    assert env_name(("cloud", "serving_image")) in missing.stderr


def test_the_teardown_workflow_destroys_and_rebuilds_the_live_release(tmp_path):
    """Runs the workflow's own scripts: `gcloud` answers with a deployed Trigger's
    environment, `make` runs dry (-n); every cdktf command gets the live release."""
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "teardown.yml").read_text())
    steps = {s.get("name"): s for s in workflow["jobs"]["teardown"]["steps"]}
    live = dict(r.split("=", 1) for r in RELEASE)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    environment = live_release_environment()
    (bin_dir / "gcloud").write_text(
        "#!/bin/sh\n"
        'test "$1 $2 $3 $4" = "functions describe recloop-dev-trigger --gen2" || exit 9\n'
        f"echo '{json.dumps({'serviceConfig': {'environmentVariables': environment}})}'\n"
    )
    (bin_dir / "make").write_text(
        f"#!/bin/sh\nexec {shutil.which('make')} -n -o .venv/.installed -o infra/node_modules"
        ' "$@"\n'
    )
    for tool in ("gcloud", "make"):
        (bin_dir / tool).chmod(0o755)
    path = f"{bin_dir}:{os.environ['PATH']}"
    outputs = tmp_path / "outputs"
    read = steps["Read the release the app stack runs"]
    run = subprocess.run(
        github_shell(read, workflow),
        env={
            "PATH": path,
            "GITHUB_OUTPUT": str(outputs),
            "TRIGGER": "recloop-dev-trigger",
            "REGION": "us-central1",
            "PROJECT": "recloop-dev",
        },
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    given = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    assert given == {
        "trainer_image": live["TRAINER_IMAGE"],
        "serving_image": live["SERVING_IMAGE"],
        "release": live["RELEASE"],
    }
    env = {
        "PATH": path,
        "TARGET": "dev",
        "TRAINER": given["trainer_image"],
        "PREDICTOR": given["serving_image"],
        "RELEASE_SHA": given["release"],
    }
    verbs = []
    for name in ("Destroy the app stack", "Rebuild the app stack"):
        step = steps[name]
        assert set(step["env"]) == {"TARGET", "TRAINER", "PREDICTOR", "RELEASE_SHA"}
        run = subprocess.run(
            github_shell(step, workflow), cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert run.returncode == 0, run.stderr
        verbs += re.findall(r"cdktf (destroy)|terraform -chdir=\S+ (plan|apply)", run.stdout)
    # Rebuilding goes through a saved plan, which prod requires (`make deploy` refuses prod).
    assert ["".join(v) for v in verbs] == ["destroy", "plan", "apply"]


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("kind", ["bootstrap", "data"])
def test_every_resource_waits_for_the_apis_its_stack_enables(stacks, env, kind):
    """On a new project the first apply enables the APIs; Terraform creates what has no
    dependency in parallel, so an endpoint, a registry or the Pub/Sub agent's grants would
    meet a disabled API (before: no depends_on, the first apply failed). Terraform's JSON
    syntax takes bare references in depends_on."""
    stack = stacks[f"{env}-{kind}"]
    apis = {f"google_project_service.{name}" for name in resources(stack, "google_project_service")}
    assert apis
    for resource_type, entries in stack["resource"].items():
        if resource_type == "google_project_service":
            continue
        for name, body in entries.items():
            assert apis <= set(body.get("depends_on", [])), f"{resource_type}.{name}"


@pytest.mark.parametrize("env", ENVS)
def test_the_project_data_source_waits_for_the_resource_manager_api(stacks, env):
    """data.google_project reads the project through Cloud Resource Manager: the data stack
    enables that API and the read waits for it (before: no stack enabled it, and a new
    project's first plan failed reading the project number)."""
    stack = stacks[f"{env}-data"]
    (api,) = [
        name
        for name, body in resources(stack, "google_project_service").items()
        if body["service"] == "cloudresourcemanager.googleapis.com"
    ]
    (project,) = stack["data"]["google_project"].values()
    assert project["depends_on"] == [f"google_project_service.{api}"]
