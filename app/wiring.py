"""The wiring contract: what each cloud component needs to run, declared once.

For every component — the Simulator, Logger and Trigger functions, the predictor, the
pipeline steps and the Vertex tuning trainer — this declares its workload identity (the
service account infra creates for it), the Pub/Sub topics that trigger it, and the settings
it reads, each as a path into app.config.Settings with the rule its cloud value must meet.

From this one declaration:
- infra/stacks/data.py creates one service account per identity (ACCOUNTS);
- infra/stacks/app.py generates every function's environment (`environment`);
- the Deployer generates the deployed model's environment (`predictor_environment`);
- each component calls `require` at start-up, so a missing or still-local setting is one
  clear error naming the component, the setting and its variable;
- infra/stacks/app.py grants a component that `writes` a few tables or objects write access
  to exactly those (the Trigger, which decides canaries), not to the dataset or the bucket.

Proved by tests/test_wiring.py (the synthesized stacks' environments and the Deployer's
request load into settings that pass `require`) and tests/test_vertex_requests.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from app.config import (
    CLOUD_PROFILES,
    ConfigError,
    SettingPath,
    Settings,
    env_name,
    env_value,
    load_settings,
    lookup,
)
from app.policy_store import CANARY_FILE, DEPLOYED_DIR, POINTER
from app.schemas import LEDGER_HEAD, PROMOTIONS, TRAINED_EXAMPLES, TRAINING_RUNS

DIGEST = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")


class WiringError(ConfigError):
    """A component is missing a setting it needs in the cloud, or still has a local default."""


@dataclass(frozen=True)
class Rule:
    """What a cloud value must be; `description` completes "must be …"."""

    description: str
    holds: Callable[[Any, Any], bool]  # (value, the local profile's value)


SET = Rule("set", lambda v, _: v not in (None, ""))
NOT_LOCAL = Rule("set, and not the local default", lambda v, local: v not in (None, "", local))
GCS = Rule("a gs:// path", lambda v, _: isinstance(v, str) and v.startswith("gs://"))
IMAGE = Rule(
    "an image by digest (…@sha256:<64 hex>)",
    lambda v, _: isinstance(v, str) and bool(DIGEST.match(v)),
)
ON = Rule("on (true)", lambda v, _: v is True)
CLOUD_PROFILE = Rule(
    f"a cloud profile ({', '.join(CLOUD_PROFILES)})", lambda v, _: v in CLOUD_PROFILES
)
BIGQUERY = Rule("bigquery", lambda v, _: v == "bigquery")


@dataclass(frozen=True)
class Need:
    path: SettingPath
    rule: Rule = SET

    @property
    def variable(self) -> str:
        return env_name(self.path)


@dataclass(frozen=True)
class Writes:
    """What a component writes beyond its own rows: warehouse tables (by name) and objects
    (paths under `artifacts_dir`)."""

    tables: tuple[str, ...] = ()
    artifacts: tuple[str, ...] = ()


# Deciding a canary (app/deployer/canary.py::step): the decision, the ledger commit of a
# winner (app/warehouse/ledger.py: head, trained examples, run), the pointer, the canary state.
# tests/infra/test_security.py::test_the_trigger_may_write_what_a_canary_decision_writes.
CANARY_DECISION = Writes(
    tables=tuple(t.name for t in (PROMOTIONS, LEDGER_HEAD, TRAINED_EXAMPLES, TRAINING_RUNS)),
    artifacts=(f"{DEPLOYED_DIR}/{POINTER}", f"{DEPLOYED_DIR}/{CANARY_FILE}"),
)


@dataclass(frozen=True)
class Component:
    name: str
    account: str  # workload identity: infra creates `<env prefix>-<account>`
    needs: tuple[Need, ...]
    # Functions only: (function name, the topic whose messages start it).
    triggers: tuple[tuple[str, SettingPath], ...] = ()
    writes: Writes = Writes()

    @property
    def paths(self) -> tuple[SettingPath, ...]:
        return tuple(n.path for n in self.needs)


PROFILE = Need(("profile",), CLOUD_PROFILE)
PROJECT = Need(("cloud", "project_id"), NOT_LOCAL)
REGION = Need(("cloud", "region"))
PUBSUB_PROJECT = Need(("pubsub", "project_id"), NOT_LOCAL)
WAREHOUSE = (
    Need(("warehouse", "backend"), BIGQUERY),
    Need(("warehouse", "dataset"), NOT_LOCAL),
    Need(("warehouse", "location")),
)
ENDPOINT = Need(("loop", "vertex_endpoint"))
# What the Deployer needs to put a policy in front of traffic (it runs as a pipeline step).
DEPLOYMENT = (
    Need(("cloud", "serving_image"), IMAGE),
    Need(("cloud", "predictor_service_account")),
    Need(("cloud", "predictor_machine_type")),
    Need(("cloud", "predictor_min_replicas")),
    Need(("cloud", "predictor_max_replicas")),
    Need(("pubsub", "prediction_logs_topic")),
)

SIMULATOR = Component(
    "simulator",
    "simulator",
    (PROFILE, PROJECT, REGION, ENDPOINT, PUBSUB_PROJECT, Need(("pubsub", "feedback_topic"))),
    triggers=(("simulator", ("pubsub", "simulate_topic")),),
)
LOGGER = Component(
    "logger",
    "logger",
    (PROFILE, PROJECT, *WAREHOUSE, PUBSUB_PROJECT, Need(("pubsub", "dead_letter_topic"))),
    triggers=(
        ("logger-predictions", ("pubsub", "prediction_logs_topic")),
        ("logger-feedback", ("pubsub", "feedback_topic")),
    ),
)
PIPELINES = Component(
    "pipelines",
    "pipelines",
    (
        PROFILE,
        PROJECT,
        REGION,
        *WAREHOUSE,
        Need(("artifacts_dir",), GCS),
        ENDPOINT,
        PUBSUB_PROJECT,
        *DEPLOYMENT,
    ),
)
# Submitting a pipeline run to Vertex AI (the Trigger, the smoke test, `recloop pipeline run
# --env dev|prod`): the steps' settings, the account the run executes as, a gs:// root.
SUBMISSION = Component(
    "pipeline submission",
    "pipelines",
    (
        *PIPELINES.needs,
        Need(("cloud", "pipelines_service_account")),
        Need(("loop", "pipeline_root"), GCS),
    ),
)
# Compiling a pipeline for the cloud (`recloop pipeline run --env dev|prod` without
# --template) bakes the trainer image into every step: the released image, never a local one.
PIPELINE_COMPILATION = Component(
    "pipeline run without --template",
    "pipelines",
    (Need(("cloud", "trainer_image"), IMAGE),),
)
# `recloop rollback --env dev|prod` by hand moves Vertex traffic and may deploy the previous
# version again, so it needs what the Deployer needs (app/deployer/rollback.py); run by an
# operator, with the Trigger's environment (docs/operations.md, "Roll back").
ROLLBACK = Component("rollback", "pipelines", PIPELINES.needs)
TRIGGER = Component(
    "trigger",
    "trigger",
    (
        *SUBMISSION.needs,
        Need(("cloud", "trainer_image"), IMAGE),
        Need(("cloud", "release")),
        Need(("loop", "retraining_template"), GCS),
    ),
    triggers=(("trigger", ("pubsub", "retrain_topic")),),
    writes=CANARY_DECISION,
)
PREDICTOR = Component(
    "predictor",
    "predictor",
    (
        PROFILE,
        PUBSUB_PROJECT,
        Need(("pubsub", "prediction_logs_topic")),
        Need(("pubsub", "publish_predictions"), ON),
    ),
)
TRAINER = Component(
    "trainer",
    "pipelines",
    (
        PROJECT,
        REGION,
        Need(("cloud", "staging_bucket"), GCS),
        Need(("cloud", "trainer_image")),
        Need(("cloud", "pipelines_service_account")),
    ),
)
COMPONENTS = (SIMULATOR, LOGGER, TRIGGER, PREDICTOR, PIPELINES, TRAINER)
FUNCTIONS = (SIMULATOR, LOGGER, TRIGGER)
# Workload identities, in the order infra creates them.
ACCOUNTS = tuple(dict.fromkeys(c.account for c in COMPONENTS))


def problems(settings: Settings, component: Component) -> list[str]:
    """Every setting `component` needs that is missing or not a cloud value, one line each."""
    local = load_settings("local", environ={})
    found = []
    for need in component.needs:
        value = lookup(settings, need.path)
        if not need.rule.holds(value, lookup(local, need.path)):
            found.append(
                f"{'.'.join(need.path)} ({need.variable}) must be {need.rule.description}, "
                f"got {value!r}"
            )
    return found


def require(settings: Settings, component: Component) -> Settings:
    """Fails with one message naming every unmet need; returns `settings` when all hold."""
    if found := problems(settings, component):
        raise WiringError(f"{component.name} cannot run in the cloud: " + "; ".join(found))
    return settings


def require_in_cloud(settings: Settings, component: Component) -> Settings:
    """What each component calls at start: `require` under a cloud profile; the local
    profile runs on local defaults by design."""
    return settings if settings.profile == "local" else require(settings, component)


def environment(component: Component, values: Mapping[SettingPath, str]) -> dict[str, str]:
    """The environment infra gives `component`: a variable for each setting it needs that
    `values` (what infra knows) provides; the rest come from the profile."""
    return {env_name(p): values[p] for p in component.paths if p in values}


def predictor_environment(settings: Settings) -> dict[str, str]:
    """The deployed model's environment, from the Deployer's settings; checked by loading it
    back the way the predictor will (a WiringError says what is wrong)."""
    env = {n.variable: env_value(lookup(settings, n.path)) for n in PREDICTOR.needs}
    require(load_settings(environ=env), PREDICTOR)
    return env
