"""`make rehearse` (`python -m app.rehearsal`): the cloud loop, rehearsed on this machine.

1. Synthesizes the stacks (or takes `--stacks`) and resolves each Cloud Function's
   environment (stacks.py); compiles the release's pipelines (its templates go where a
   release puts them, `gs://<artifacts>/pipelines/<release>/`); trains a small policy (what
   the start-up pipeline leaves) — in parallel with the Pub/Sub emulator and the fakes.
2. Creates the topics the data stack declares and the app stack's push subscriptions (with
   their dead-letter policies), each pushing to its function; starts every function from the
   source archive infra uploads, under functions-framework, as its account, with exactly its
   stack environment.
3. Runs the Deployer (deploy_step.py) as the pipelines account with the parameters the
   Trigger's code computes from its environment; starts the predictor the way Vertex would
   run the uploaded model: the container environment of the `models:upload` request plus the
   `AIP_*` variables, as the account of the `deployModel` request.
4. Ticks the Simulator (as Cloud Scheduler does) until the Trigger has enough examples, then
   ticks the Trigger, and checks each seam from the receiving side — including that the app
   stack grants each account a role for every Google API request it made.

Substitutions, each because the cloud service cannot run here: emulator/fake endpoints
(`PUBSUB_EMULATOR_HOST`, `BIGQUERY_EMULATOR_HOST`, `STORAGE_EMULATOR_HOST`,
`GCE_METADATA_HOST`/`GCE_METADATA_IP`, the Storage Write API's
`RECLOOP__WAREHOUSE__WRITE_API_EMULATOR_HOST`, the Vertex SDK's endpoint via host.py),
`MOVIELENS_DIR` (the functions download MovieLens in the cloud), a free port for
`AIP_HTTP_PORT`, and a local copy of the policy for `AIP_STORAGE_URI` (Vertex copies the
artifact to storage of its own). Nothing else is added to a component's environment.

Prints one line per component (ok, or BROKEN: what and where); exits 1 when a seam is
broken, 2 when the rehearsal itself could not run. Proved by tests/infra/test_rehearse.py
(the loop closes) and tests/test_rehearse.py (the fakes and checks can fail).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from app.evaluation.gate import PROMOTED
from app.local import pubsub_emulator
from app.local.processes import PYTHON, free_port, port_open, wait_ready
from app.policy_store import CANARY_FILE, DEPLOYED_DIR
from app.rehearsal import apis as fakes
from app.rehearsal import stacks as stack_view

ROOT = Path(__file__).resolve().parents[2]
HOST = Path(__file__).resolve().parent / "host.py"
COMPONENTS = ("stacks", "deployer", "predictor", "simulator", "logger", "trigger")
RETRAINING = "recloop-retraining"
# What the container images set (containers/*/Dockerfile), and what every process needs.
IMAGE_ENV = {"PYTHONUNBUFFERED": "1", "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
# infra/main.py's build for one environment; the function archive goes to <out>/../build.
SYNTHESIZE = (
    "import sys; from pathlib import Path; from infra.main import build; "
    "build(Path(sys.argv[1]), (sys.argv[2],)).synth()"
)
VERTEX_SERVICE_AGENT = "service-{number}@gcp-sa-aiplatform-cc.iam.gserviceaccount.com"
# Outputs of upstream pipeline steps the deploy step takes, as a passing run produces them.
UPSTREAM_OUTPUTS: dict[tuple[str, str], Any] = {("evaluate", "Output"): PROMOTED}


class Broken(Exception):
    """A seam is broken; the message says what and where."""


class NotRun(Exception):
    """The rehearsal itself could not run (a missing tool, a timeout of its own)."""


@dataclass
class Report:
    lines: dict[str, str] = field(default_factory=dict)

    def ok(self, component: str, what: str) -> None:
        self.lines[component] = f"ok: {what}"

    def broken(self, component: str, what: str) -> None:
        self.lines[component] = f"BROKEN: {what}"

    @property
    def passed(self) -> bool:
        return all(self.lines.get(c, "").startswith("ok") for c in COMPONENTS)

    def print(self) -> None:
        for component in COMPONENTS:
            line = self.lines.get(component, "BROKEN: not reached (an earlier seam is broken)")
            print(f"{component:<10} {line}", flush=True)


class Progress:
    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.start:5.1f}s] {message}", file=sys.stderr, flush=True)


class Processes:
    """Every process the rehearsal starts, each in a process group of its own, run with
    exactly the environment given (nothing inherited but PATH, HOME and LANG). `stop` ends
    them all at once — SIGTERM, then SIGKILL after a grace period — also on Ctrl-C."""

    def __init__(self) -> None:
        self.children: list[tuple[subprocess.Popen[bytes], Any]] = []

    def start(
        self,
        command: list[str],
        env: Mapping[str, str],
        log_path: Path,
        ready: Callable[[], bool] | None = None,
        cwd: Path | None = None,
        timeout: float = 60,
    ) -> subprocess.Popen[bytes]:
        base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
        log = open(log_path, "w+b")  # noqa: SIM115
        child = subprocess.Popen(
            command,
            env={**base, **env},
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.children.append((child, log))
        if ready is not None:
            wait_ready(child, ready, timeout, log)
        return child

    def stop(self, grace: float = 5) -> None:
        for child, _ in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child, log in self.children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait()
            log.close()


def last_error(log_path: Path) -> str:
    """The last line of a component's log that reads like an error, for the report."""
    if not log_path.exists():
        return ""
    lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines()]
    errors = [
        line
        for line in lines
        if any(word in line for word in ("Error", "error", "Exception", "cannot", "rejected"))
        and not line.startswith(("File ", "Traceback", "warnings.warn"))
    ]
    return errors[-1][:400] if errors else ""


def until(check: Callable[[], Any], timeout: float, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        if result := check():
            return result
        if time.monotonic() > deadline:
            return result
        time.sleep(interval)


def git_release() -> str:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    return "0" * 40


class Rehearsal:
    def __init__(
        self,
        env: str,
        work: Path,
        movielens_dir: str | None,
        say: Progress,
        stacks_dir: Path | None = None,
    ):
        self.env, self.work, self.movielens_dir, self.say = env, work, movielens_dir, say
        self.stacks_dir = stacks_dir  # already synthesized from this checkout, or None
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.report = Report()
        self.apis = fakes.GoogleApis()
        self.processes = Processes()
        self.release = git_release()

    def write_requests(self) -> None:
        """Every request the fakes received, one JSON object a line, for whoever debugs."""
        with open(self.work / "requests.jsonl", "w") as out:
            for r in list(self.apis.requests):
                out.write(json.dumps(dataclasses.asdict(r), default=str) + "\n")

    # -- environment of a process -------------------------------------------------------------
    def substitutions(self, account: str) -> dict[str, str]:
        """Endpoint overrides every process gets (module docstring), running as `account`."""
        from app.config import env_name

        metadata = self.apis.metadata_host(account)
        env = {
            "PUBSUB_EMULATOR_HOST": self.pubsub_host,
            "BIGQUERY_EMULATOR_HOST": self.apis.url,
            # The Storage Write API client has no emulator variable: a typed setting points it.
            env_name(("warehouse", "write_api_emulator_host")): self.apis.write_host,
            "STORAGE_EMULATOR_HOST": self.apis.url,
            "GCE_METADATA_HOST": metadata,
            "GCE_METADATA_IP": metadata,
            "CLOUDSDK_CONFIG": str(self.work / "gcloud"),  # no developer credentials
        }
        return env

    # -- the run ------------------------------------------------------------------------------
    def run(self, stack: contextlib.ExitStack) -> Report:
        from infra import config as infra_config

        stack.callback(self.processes.stop)
        cloud = infra_config.load(self.env)
        variables = stack_view.rehearsal_variables(cloud.project_id, cloud.region, self.release)
        self.say(f"{self.env}: release {self.release[:12]}; compiling pipelines, training a policy")
        compiled = self.work / "pipelines"
        compiling = self.processes.start(
            [
                PYTHON,
                "-m",
                "pipelines.compile",
                "--image",
                variables["trainer_image"],
                "--output-dir",
                str(compiled),
            ],
            {**IMAGE_ENV, "PYTHONPATH": str(ROOT)},
            self.logs / "compile.log",
        )
        policy_artifacts = self.work / "trained"
        training = self.processes.start(
            [
                PYTHON,
                "-m",
                "app.trainer",
                "--no-progress",
                "--training-loops",
                "3",
                "--artifacts-dir",
                str(policy_artifacts),
                "--policy-version",
                "v-rehearsal-1",
            ],
            {**IMAGE_ENV, "PYTHONPATH": str(ROOT), **self.data_env()},
            self.logs / "trainer.log",
        )
        stacks_dir = self.stacks_dir or self.work / "cdktf.out" / "stacks"
        synthesizing = None
        if self.stacks_dir is None:
            synthesizing = self.processes.start(
                [PYTHON, "-c", SYNTHESIZE, str(stacks_dir.parent), self.env],
                {"PYTHONPATH": str(ROOT)},
                self.logs / "synth.log",
            )
        if not pubsub_emulator.available():
            raise NotRun("the Pub/Sub emulator is not installed (gcloud beta emulators pubsub)")
        self.say("starting the Pub/Sub emulator and the Google API fakes; synthesizing the stacks")
        stack.enter_context(self.apis.serving())
        self.pubsub_host = stack.enter_context(
            pubsub_emulator.emulator(
                cloud.project_id, self.work / "pubsub", self.logs / "pubsub-emulator.log"
            )
        )
        os.environ["PUBSUB_EMULATOR_HOST"] = self.pubsub_host  # this process's own clients
        if synthesizing is not None and synthesizing.wait(timeout=180) != 0:
            raise NotRun(f"synthesizing the stacks failed: see {self.logs / 'synth.log'}")
        from infra.golden import synthesized

        archive = stacks_dir.parent.parent / "build" / "function-source"  # infra/main.py's
        try:
            resolved = stack_view.environment(synthesized(stacks_dir), self.env, variables)
        except stack_view.UnresolvedReference as err:
            self.report.broken("stacks", str(err))
            return self.report
        for (project, dataset, table), fields in resolved.tables.items():
            self.apis.tables.create(project, dataset, table, fields)
        self.report.ok(
            "stacks",
            f"{len(resolved.functions)} functions, {len(resolved.topics)} topics, "
            f"{len(resolved.tables)} tables; references resolved"
            + (f" (variables: {', '.join(resolved.variables)})" if resolved.variables else ""),
        )
        self.pubsub_setup(resolved)
        starting = self.start_functions(resolved, archive)
        if compiling.wait(timeout=120) != 0:
            raise NotRun(f"compiling the pipelines failed: see {self.logs / 'compile.log'}")
        template = compiled / f"{RETRAINING}.yaml"
        self.publish_templates(compiled, resolved)
        if training.wait(timeout=180) != 0:
            raise NotRun(f"training the policy failed: see {self.logs / 'trainer.log'}")
        trigger_env = self.function(resolved, "trigger").environment
        deployment = self.deploy(resolved, trigger_env, template, policy_artifacts / "policy")
        for child, port, log in starting:  # booting meanwhile
            with open(log, "rb") as output:
                wait_ready(child, functools.partial(port_open, port), 60, output)
        self.say("functions up on ports " + ", ".join(str(port) for _, port, _ in starting))
        if deployment is None:
            return self.report
        if not self.start_predictor(resolved, deployment, policy_artifacts / "policy"):
            return self.report
        self.loop(resolved, template)
        self.check_permissions(resolved)
        return self.report

    def check_permissions(self, resolved: stack_view.Environment) -> None:
        """Every Google API request a component made, against the roles the app stack grants
        the account it ran as (Pub/Sub is not checked: the emulator ignores credentials)."""
        accounts = {
            "deployer": "pipelines",
            "simulator": "simulator",
            "logger": "logger",
            "trigger": "trigger",
        }
        for component, account in accounts.items():
            if not self.report.lines.get(component, "").startswith("ok"):
                continue
            email = self.account(resolved, account)
            missing = sorted(
                {
                    f"{what} needs {' or '.join(roles)}"
                    for request in list(self.apis.requests)
                    if request.caller == email and (need := required_role(request)) is not None
                    for roles, scope, on, what in [need]
                    if not resolved.granted(email, roles, scope, on)
                }
            )
            if missing:
                self.report.broken(
                    component, f"{email} lacks grants in the app stack: " + "; ".join(missing)
                )

    def data_env(self) -> dict[str, str]:
        return {"MOVIELENS_DIR": self.movielens_dir} if self.movielens_dir else {}

    def function(self, resolved: stack_view.Environment, entry_point: str) -> stack_view.Function:
        return next(f for f in resolved.functions.values() if f.entry_point == entry_point)

    def account(self, resolved: stack_view.Environment, name: str) -> str:
        """The email of infra's workload identity `name` (recloop-dev-predictor@…)."""
        emails = resolved.accounts.values()
        return next(e for e in emails if e.split("@", 1)[0].endswith(f"-{name}"))

    def pubsub_setup(self, resolved: stack_view.Environment) -> None:
        from google.cloud import pubsub_v1  # type: ignore[attr-defined]

        publisher = pubsub_v1.PublisherClient()
        for topic in resolved.topics:
            publisher.create_topic(name=topic)
        self.subscriber = pubsub_v1.SubscriberClient()
        self.taps: dict[str, str] = {}
        for topic in resolved.topics:
            tap = topic.replace("/topics/", "/subscriptions/") + "-rehearsal-tap"
            self.subscriber.create_subscription(name=tap, topic=topic)
            self.taps[topic] = tap
        self.publisher = publisher

    def start_functions(
        self, resolved: stack_view.Environment, archive: Path
    ) -> list[tuple[subprocess.Popen[bytes], int, Path]]:
        """Every function from the source archive, with its stack environment, fed by its
        push subscription."""
        starting: list[tuple[subprocess.Popen[bytes], int, Path]] = []
        self.say(f"starting {len(resolved.functions)} functions from {archive}")
        for function in resolved.functions.values():
            port = free_port()
            env = {
                **function.environment,
                **self.substitutions(function.service_account),
                **self.data_env(),
                "PYTHONPATH": str(archive),
            }
            command = [PYTHON, str(HOST), self.apis.url, "-m", "functions_framework"]
            command += [f"--target={function.entry_point}", f"--source={archive / 'main.py'}"]
            command += ["--signature-type=cloudevent", "--host=127.0.0.1", f"--port={port}"]
            log = self.logs / f"{function.name}.log"
            child = self.processes.start(command, env, log, cwd=archive)
            starting.append((child, port, log))
            self.subscribe(function.subscription, f"http://127.0.0.1:{port}/")
        return starting

    def subscribe(self, subscription: stack_view.Subscription, endpoint: str) -> None:
        """The stack's push subscription, pushing to the function's local URL."""
        dead_letter = (
            {
                "dead_letter_topic": subscription.dead_letter_topic,
                "max_delivery_attempts": subscription.max_delivery_attempts,
            }
            if subscription.dead_letter_topic
            else None
        )
        self.subscriber.create_subscription(
            request={
                "name": subscription.name,
                "topic": subscription.topic,
                "push_config": {"push_endpoint": endpoint},
                "ack_deadline_seconds": subscription.ack_deadline_seconds,
                "dead_letter_policy": dead_letter,
            }
        )

    def publish_templates(self, compiled: Path, resolved: stack_view.Environment) -> None:
        """What a release puts in the artifacts bucket (CONTRACTS.md 1)."""
        for path in compiled.glob("*.yaml"):
            key = (resolved.artifacts_bucket, f"pipelines/{self.release}/{path.name}")
            self.apis.objects[key] = path.read_bytes()

    # -- the Deployer and the predictor -------------------------------------------------------
    def deploy_inputs(self, trigger_env: Mapping[str, str], template: Path) -> dict[str, Any]:
        """The deploy task's parameter inputs as Vertex resolves them: each binds a pipeline
        parameter of the job (what the Trigger's code computes from its environment, over the
        template's defaults)."""
        import inspect

        from app.config import load_settings
        from app.loop import pipeline_jobs

        settings = load_settings(environ=trigger_env)
        compute: Callable[..., dict[str, Any]] = pipeline_jobs.vertex_parameters
        takes_pipeline = len(inspect.signature(compute).parameters) > 1
        given = compute(RETRAINING, settings) if takes_pipeline else compute(settings)
        job = {**template_defaults(template), **given}
        task = yaml.safe_load(template.read_text())["root"]["dag"]["tasks"]["deploy"]
        bindings = task["inputs"]["parameters"]
        values: dict[str, Any] = {}
        unbound = []
        for name, binding in bindings.items():
            if (upstream := binding.get("taskOutputParameter")) is not None:
                # An upstream step's output: the rehearsal deploys a candidate the gate passed.
                key = (upstream["producerTask"], upstream["outputParameterKey"])
                if key not in UPSTREAM_OUTPUTS:
                    unbound.append(f"{name} (from {key[0]}.{key[1]})")
                else:
                    values[name] = UPSTREAM_OUTPUTS[key]
            elif binding.get("componentInputParameter") in job:
                values[name] = job[binding["componentInputParameter"]]
            else:
                unbound.append(name)
        if unbound:
            raise KeyError(f"the deploy step's inputs {', '.join(unbound)} get no job value")
        return values

    def deploy(
        self,
        resolved: stack_view.Environment,
        trigger_env: Mapping[str, str],
        template: Path,
        policy_dir: Path,
    ) -> fakes.Deployment | None:
        self.say("running the pipelines' deploy step (the Deployer) as the pipelines account")
        try:
            parameters = self.deploy_inputs(trigger_env, template)
        except (ValueError, KeyError) as err:
            self.report.broken(
                "deployer", f"no job parameters from the Trigger's environment: {err}"
            )
            return None
        path = self.work / "deploy-inputs.json"
        path.write_text(json.dumps(parameters))
        account = self.account(resolved, "pipelines")
        env = {**IMAGE_ENV, "PYTHONPATH": str(ROOT), **self.substitutions(account)}
        log = self.logs / "deployer.log"
        command = [PYTHON, str(HOST), self.apis.url, "-m", "app.rehearsal.deploy_step"]
        child = self.processes.start([*command, str(policy_dir), str(path)], env, log)
        try:
            code: int | None = child.wait(timeout=120)
        except subprocess.TimeoutExpired:
            code = None
        uploads = self.apis.received("vertex", "POST", "models:upload")
        deploys = self.apis.received("vertex", "POST", ":deployModel")
        endpoint = next(iter(self.apis.deployments), None)
        if code != 0 or not uploads or not deploys or endpoint is None:
            reason = last_error(log) or ("timed out" if code is None else f"exit {code}")
            self.report.broken("deployer", f"the deploy step sent no deployment: {reason} [{log}]")
            return None
        deployment = self.apis.deployments[endpoint]
        problems = self.check_deployment(resolved, deployment)
        spec = deployment.model.get("containerSpec", {})
        if problems:
            self.report.broken("deployer", "; ".join(problems) + f" [{log}]")
        else:
            deployed = deployment.deployed_model
            self.report.ok(
                "deployer",
                f"Model.upload of {spec.get('imageUri')} with {len(spec.get('env', []))} "
                f"environment variables; deployed to {endpoint} "
                f"as {deployed.get('serviceAccount')}",
            )
        return deployment

    def check_deployment(
        self,
        resolved: stack_view.Environment,
        deployment: fakes.Deployment,
    ) -> list[str]:
        """What Vertex needs from the Deployer's requests to serve the loop's predictor."""
        from infra import config as infra_config

        problems = []
        model, deployed = deployment.model, deployment.deployed_model
        spec = model.get("containerSpec", {})
        image = spec.get("imageUri", "")
        wanted = resolved.variables.get("serving_image")
        if not image or (wanted and image != wanted):
            problems.append(
                f"Model.upload has serving image {image!r}, "
                f"not the release's {wanted or '(by digest)'}"
            )
        if not str(model.get("artifactUri", "")).startswith("gs://"):
            problems.append(f"models:upload artifactUri {model.get('artifactUri')!r} is not gs://")
        env = {e["name"]: e.get("value", "") for e in spec.get("env", [])}
        problems += [f"Model.upload {p}" for p in self.predictor_problems(resolved, env)]
        predictor = self.account(resolved, "predictor")
        if deployed.get("serviceAccount") != predictor:
            problems.append(
                "deployModel runs the model as "
                f"{deployed.get('serviceAccount') or 'the Vertex service agent'}, "
                f"not infra's {predictor}"
            )
        cloud = infra_config.load(self.env)
        resources = deployed.get("dedicatedResources", {})
        machine = resources.get("machineSpec", {}).get("machineType")
        replicas = (resources.get("minReplicaCount"), resources.get("maxReplicaCount"))
        wanted_replicas = (cloud.predictor_min_replicas, cloud.predictor_max_replicas)
        if machine != cloud.predictor_machine_type or replicas != wanted_replicas:
            problems.append(
                f"deployModel asks for {machine} x {replicas[0]}-{replicas[1]} replicas, "
                f"infra's environment config says {cloud.predictor_machine_type} "
                f"x {wanted_replicas[0]}-{wanted_replicas[1]}"
            )
        return problems

    def predictor_problems(
        self, resolved: stack_view.Environment, env: Mapping[str, str]
    ) -> list[str]:
        """Whether the predictor, loading `env`, would publish to infra's prediction-log topic."""
        from app.config import ConfigError, load_settings

        if not env:
            return ["gives the predictor no environment, so it runs the local profile"]
        try:
            settings = load_settings(environ=env)
        except ConfigError as err:
            return [f"gives the predictor an environment that does not load: {err}"]
        p = settings.pubsub
        topic = f"projects/{p.project_id}/topics/{p.prediction_logs_topic}"
        found = []
        if settings.profile == "local":
            found.append("leaves the predictor on the local profile")
        if not p.publish_predictions:
            found.append("leaves the predictor's pubsub.publish_predictions off")
        if topic != resolved.prediction_logs_topic:
            found.append(
                f"has the predictor publish to {topic}, not {resolved.prediction_logs_topic}"
            )
        return found

    def start_predictor(
        self,
        resolved: stack_view.Environment,
        deployment: fakes.Deployment,
        policy_dir: Path,
    ) -> bool:
        """The uploaded model's container as Vertex runs it: its declared environment, the
        AIP_* variables, and the identity of the deployment."""
        spec = deployment.model.get("containerSpec", {})
        deployed = deployment.deployed_model
        port = free_port()
        self.predictor_env = {e["name"]: e.get("value", "") for e in spec.get("env", [])}
        aip = {
            "AIP_MODE": "PREDICTION",
            "AIP_HTTP_PORT": str(port),  # Vertex: the declared container port
            "AIP_HEALTH_ROUTE": spec.get("healthRoute", ""),
            "AIP_PREDICT_ROUTE": spec.get("predictRoute", ""),
            "AIP_STORAGE_URI": str(policy_dir),  # Vertex: its copy of artifactUri
            "AIP_DEPLOYED_MODEL_ID": deployed.get("id", ""),
            "AIP_PROJECT_NUMBER": fakes.PROJECT_NUMBER,
        }
        account = deployed.get("serviceAccount") or VERTEX_SERVICE_AGENT.format(
            number=fakes.PROJECT_NUMBER
        )
        env = {
            **IMAGE_ENV,
            "PYTHONPATH": str(ROOT),
            **self.predictor_env,
            **aip,
            **self.substitutions(account),
        }
        log = self.logs / "predictor.log"
        self.say(f"starting the predictor as Vertex would run {deployment.model['name']}")
        health = f"http://127.0.0.1:{port}{aip['AIP_HEALTH_ROUTE']}"
        try:
            self.processes.start(
                [PYTHON, "-m", "app.predictor"], env, log, lambda: _answers(health), timeout=90
            )
        except (RuntimeError, TimeoutError) as err:
            self.report.broken("predictor", f"never became healthy at {health}: {err} [{log}]")
            return False
        self.apis.predictor_url = f"http://127.0.0.1:{port}"
        return True

    # -- the loop -----------------------------------------------------------------------------
    def pull(self, topic: str) -> list[dict[str, Any]]:
        """Messages that reached `topic`, seen through the rehearsal's own subscription."""
        from google.api_core import exceptions

        messages: list[dict[str, Any]] = []
        with contextlib.suppress(exceptions.DeadlineExceeded):
            response = self.subscriber.pull(
                subscription=self.taps[topic], max_messages=1000, timeout=2
            )
            if response.received_messages:
                self.subscriber.acknowledge(
                    subscription=self.taps[topic],
                    ack_ids=[m.ack_id for m in response.received_messages],
                )
            for received in response.received_messages:
                with contextlib.suppress(ValueError):
                    messages.append(json.loads(received.message.data))
        return messages

    def fed_back(self, topic: str, log: Path, failures: int) -> list[dict[str, Any]] | bool:
        """Feedback on `topic`, or True once the Simulator has failed (a new traceback)."""
        return self.pull(topic) or failures_in(log) > failures

    def loop(self, resolved: stack_view.Environment, template: Path) -> None:
        from app.config import ConfigError, load_settings

        simulator = self.function(resolved, "simulator")
        trigger = self.function(resolved, "trigger")
        try:
            users = load_settings(environ=simulator.environment).loop.simulated_users
            needed = load_settings(environ=trigger.environment).loop.min_new_examples
        except ConfigError as err:
            self.report.broken("simulator", f"its stack environment does not load: {err}")
            return
        feedback_topic = next(t for t in resolved.topics if t.endswith("-feedback"))
        logs: list[dict[str, Any]] = []
        feedback: list[dict[str, Any]] = []
        ticks = min(4, max(1, math.ceil(needed / max(users, 1))))
        sim_log = self.logs / f"{simulator.name}.log"
        for tick in range(1, ticks + 1):
            self.say(f"simulator tick {tick}/{ticks} on {simulator.topic}")
            failures = failures_in(sim_log)
            self.publisher.publish(simulator.topic, b"{}").result(timeout=30)
            got = until(functools.partial(self.fed_back, feedback_topic, sim_log, failures), 60)
            feedback += got if isinstance(got, list) else []
            logs += until(lambda: self.pull(resolved.prediction_logs_topic), timeout=5) or []
            if not isinstance(got, list):
                break
        while batch := until(
            lambda: self.pull(feedback_topic) + self.pull(resolved.prediction_logs_topic), timeout=2
        ):  # whatever is still on its way
            feedback += [m for m in batch if "rewards" in m]
            logs += [m for m in batch if "predictions" in m]
        predict = self.apis.received("vertex", "POST", ":predict")
        endpoint = simulator.environment.get("RECLOOP__LOOP__VERTEX_ENDPOINT", "")
        if feedback and predict:
            rows = sum(len(m.get("rewards", [])) for m in feedback)
            self.report.ok(
                "simulator",
                f"asked {endpoint} for predictions ({len(predict)} requests, as "
                f"{predict[-1].caller}); published {rows} rewards to {feedback_topic}",
            )
        else:
            self.report.broken(
                "simulator",
                f"{len(predict)} predict requests, no feedback on {feedback_topic}: "
                f"{last_error(sim_log) or 'no error logged'} [{sim_log}]",
            )
        served = sum(len(m.get("predictions", [])) for m in logs)
        if logs:
            self.report.ok(
                "predictor",
                f"published {len(logs)} prediction logs ({served} rows) "
                f"to {resolved.prediction_logs_topic}",
            )
        else:
            why = self.predictor_problems(resolved, self.predictor_env)
            self.report.broken(
                "predictor",
                f"published no prediction log to {resolved.prediction_logs_topic}"
                + (f": the Deployer's Model.upload {'; '.join(why)}" if why else "")
                + f" [{self.logs / 'predictor.log'}]",
            )
        self.check_logger(resolved, served, sum(len(m.get("rewards", [])) for m in feedback))
        self.check_trigger(resolved, trigger, template, needed)

    def examples(self, resolved: stack_view.Environment) -> int:
        """Training examples in the warehouse: predictions ⋈ feedback (what the Trigger counts)."""
        tables = {key[2]: ".".join(key) for key in resolved.tables}
        sql = (
            f"SELECT count(*) FROM `{tables['predictions']}` p JOIN `{tables['feedback']}` f "
            "USING (request_id, instance_index)"
        )
        return int(self.apis.tables.query(sql, [])[1][0][0])

    def check_logger(self, resolved: stack_view.Environment, served: int, rewarded: int) -> None:
        tables = {key[2]: key for key in resolved.tables}
        counts: dict[str, int] = {}

        def written() -> bool:
            counts.update(
                {name: self.apis.tables.count(tables[name]) for name in ("predictions", "feedback")}
            )
            return counts["predictions"] >= served and counts["feedback"] >= rewarded

        until(written, timeout=30)
        if not served:
            self.report.broken(
                "logger",
                f"no prediction log reached it, so {where_of(tables, 'predictions')} stays empty "
                f"({counts['feedback']} rows written to {where_of(tables, 'feedback')})",
            )
            return
        appends = [
            r
            for name in ("predictions", "feedback")
            for r in self.apis.received("bigquery-write", "AppendRows", f"/{name}/streams/_default")
        ]
        callers = sorted({r.caller or "anonymous" for r in appends})
        where = {n: ".".join(tables[n]) for n in ("predictions", "feedback")}
        logger_logs = [
            self.logs / f"{f.name}.log"
            for f in resolved.functions.values()
            if f.entry_point == "logger"
        ]
        # Every ledger query filters on the warehouse's clock: a row without it is never read.
        unclocked = {
            n: self.apis.tables.query(
                f"SELECT count(*) FROM `{where[n]}` WHERE ingested_at IS NULL", []
            )[1][0][0]
            for n in where
        }
        if any(unclocked.values()):
            self.report.broken(
                "logger",
                "rows stored without ingested_at (the appends did not ask for the column's "
                f"default): {', '.join(f'{v} in {where[n]}' for n, v in unclocked.items() if v)}",
            )
            return
        if counts["predictions"] and counts["feedback"] and counts["predictions"] >= served:
            self.report.ok(
                "logger",
                f"{len(appends)} AppendRows (Storage Write API, default streams) of "
                f"{counts['predictions']} rows to {where['predictions']} and "
                f"{counts['feedback']} to {where['feedback']} as {', '.join(callers)}",
            )
            return
        error = next(filter(None, (last_error(p) for p in logger_logs)), "")
        self.report.broken(
            "logger",
            f"{counts['predictions']} rows in {where['predictions']} (of {served} served), "
            f"{counts['feedback']} in {where['feedback']} (of {rewarded} rewarded)"
            + (f": {error}" if error else "")
            + f" [{', '.join(map(str, logger_logs))}]",
        )

    def check_trigger(
        self,
        resolved: stack_view.Environment,
        trigger: stack_view.Function,
        template: Path,
        needed: int,
    ) -> None:
        self.say(f"trigger tick on {trigger.topic}")
        log = self.logs / f"{trigger.name}.log"
        failures = failures_in(log)
        examples = self.examples(resolved)
        self.publisher.publish(trigger.topic, b"{}").result(timeout=30)

        def decided() -> Any:
            """A job, a failure, or — too few examples — its two warehouse queries."""
            jobs = self.apis.received("vertex", "POST", "/pipelineJobs")
            counted = [
                r
                for r in self.apis.received("bigquery", "POST", "/jobs")
                if r.caller == trigger.service_account
            ]
            waits = examples < needed and len(counted) >= 2
            return jobs or failures_in(log) > failures or waits

        until(decided, timeout=60)
        jobs = until(lambda: self.apis.received("vertex", "POST", "/pipelineJobs"), timeout=1)
        if not jobs:
            said = last_error(log) if failures_in(log) > failures else ""
            self.report.broken(
                "trigger",
                f"submitted no re-training job with {examples} training examples in the "
                f"warehouse (it needs {needed})" + (f": {said}" if said else "") + f" [{log}]",
            )
            return
        job = jobs[-1]
        problems = check_job(job.body, template)
        bucket = resolved.artifacts_bucket
        release_template = f"gs://{bucket}/pipelines/{self.release}/{RETRAINING}.yaml"
        read = [
            r.path
            for r in self.apis.received("storage", "GET", "")
            if r.caller == trigger.service_account
        ]
        if not any(p.endswith(f"{self.release}%2F{RETRAINING}.yaml") for p in read):
            problems.append(f"the template it submitted is not the release's {release_template}")
        # It judges an open canary before it starts anything (app/functions/trigger.py). Its
        # own storage client sends no credentials to an emulator host (google-cloud-storage
        # under STORAGE_EMULATOR_HOST), so this read is found by its object, not its caller.
        canary_state = f"gs://{bucket}/{DEPLOYED_DIR}/{CANARY_FILE}"
        looked = [r.path for r in self.apis.received("storage", "GET", "") if r.caller is None]
        if not any(p.endswith(f"/{DEPLOYED_DIR}%2F{CANARY_FILE}") for p in looked):
            problems.append(f"it did not look for an open canary ({canary_state})")
        pipelines = self.account(resolved, "pipelines")
        if job.body.get("serviceAccount") != pipelines:
            problems.append(
                "the job runs as "
                f"{job.body.get('serviceAccount') or 'the Compute Engine default account'}, "
                f"not infra's {pipelines}"
            )
        serving = job.body.get("runtimeConfig", {}).get("parameterValues", {}).get("serving_image")
        wanted = resolved.variables.get("serving_image")
        if not serving or (wanted and serving != wanted):
            problems.append(f"serving_image is {serving!r}, not the release's {wanted or 'image'}")
        if problems:
            self.report.broken("trigger", "; ".join(problems) + f" [{log}]")
        else:
            self.report.ok(
                "trigger",
                f"no canary open ({canary_state}); CreatePipelineJob of {release_template} as "
                f"{job.caller}, running as {pipelines}, root "
                f"{job.body['runtimeConfig']['gcsOutputDirectory']}",
            )


def required_role(request: fakes.Request) -> tuple[tuple[str, ...], str, str, str] | None:
    """(roles any of which allows `request`, scope, what it is on, what was asked)."""
    if request.api == "vertex" and "/operations/" not in request.path:
        return (
            ("roles/aiplatform.user",),
            "project",
            "",
            f"Vertex AI {request.path.rsplit('/', 1)[-1]}",
        )
    if request.api == "bigquery-write" and (m := fakes.WRITE_STREAM.match(request.path)):
        # AppendRows needs bigquery.tables.updateData on the table, which dataEditor holds.
        return (
            ("roles/bigquery.dataEditor",),
            "dataset",
            m.group(2),
            f"AppendRows into {m.group(2)}.{m.group(3)}",
        )
    if request.api == "bigquery" and request.method == "POST":
        return ("roles/bigquery.jobUser",), "project", "", "a BigQuery query job"
    if request.api == "storage" and (m := fakes.GCS_OBJECT.match(request.path)):
        readers = ("roles/storage.objectViewer", "roles/storage.objectAdmin")
        return readers, "bucket", m.group(1), f"reading gs://{m.group(1)}"
    return None


def _answers(url: str) -> bool:
    from app.local.processes import answers

    return answers(url)


def where_of(tables: Mapping[str, tuple[str, str, str]], name: str) -> str:
    return ".".join(tables[name])


def failures_in(log_path: Path) -> int:
    """Tracebacks a component has logged so far (a failed invocation logs one)."""
    if not log_path.exists():
        return 0
    return log_path.read_text(errors="replace").count("Traceback (most recent call last)")


def template_defaults(template: Path) -> dict[str, Any]:
    spec = yaml.safe_load(template.read_text())
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    return {name: p["defaultValue"] for name, p in inputs.items() if "defaultValue" in p}


def check_job(body: Mapping[str, Any], template: Path) -> list[str]:
    """What Vertex AI Pipelines needs of a CreatePipelineJob request for the release's template."""
    spec = yaml.safe_load(template.read_text())
    problems = []
    sent = body.get("pipelineSpec", {})
    same = (
        sent.get("pipelineInfo") == spec["pipelineInfo"]
        and sent.get("root", {}).get("inputDefinitions") == spec["root"]["inputDefinitions"]
        and set(sent.get("root", {}).get("dag", {}).get("tasks", {}))
        == set(spec["root"]["dag"]["tasks"])
    )  # the SDK sets each task's cachingOptions
    if not same:
        problems.append("the job's pipelineSpec is not the release's compiled re-training pipeline")
    runtime = body.get("runtimeConfig", {})
    root = runtime.get("gcsOutputDirectory", "")
    if not root.startswith("gs://"):
        problems.append(f"pipeline root {root!r} is not a gs:// path")
    declared = spec["root"]["inputDefinitions"]["parameters"]
    given = runtime.get("parameterValues", {})
    unknown = sorted(set(given) - set(declared))
    required = sorted(
        n for n, p in declared.items() if "defaultValue" not in p and not p.get("isOptional")
    )
    missing = [n for n in required if n not in given]
    if unknown:
        problems.append(f"parameters the pipeline does not declare: {', '.join(unknown)}")
    if missing:
        problems.append(f"required parameters missing: {', '.join(missing)}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app.rehearsal", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--env", choices=("dev", "prod"), default="dev")
    parser.add_argument("--work-dir", type=Path, default=Path(".recloop/rehearse"))
    parser.add_argument(
        "--stacks",
        type=Path,
        help="a cdktf.out/stacks folder already synthesized from this checkout "
        "(default: synthesize now); the function archive is read from ../../build",
    )
    args = parser.parse_args(argv)
    say = Progress()
    say(f"rehearse {args.env}: every cloud component as deployed, on this machine")
    from app.config import load_settings

    movielens = load_settings("local").data.movielens_dir
    signal.signal(signal.SIGTERM, _interrupt)
    work = args.work_dir.resolve()
    if work.exists():
        import shutil

        shutil.rmtree(work)
    work.mkdir(parents=True)
    stacks = args.stacks.resolve() if args.stacks else None
    rehearsal = Rehearsal(args.env, work, movielens, say, stacks)
    try:
        with contextlib.ExitStack() as stack:
            stack.callback(rehearsal.write_requests)
            report = rehearsal.run(stack)
            say("stopping every process it started")
    except NotRun as err:
        print(f"rehearse: cannot run: {err}", flush=True)
        return 2
    except KeyboardInterrupt:
        print("rehearse: interrupted; every process it started is stopped", flush=True)
        return 130
    report.print()
    print(f"logs: {rehearsal.logs}", flush=True)
    return 0 if report.passed else 1


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
