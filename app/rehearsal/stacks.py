"""What the synthesized stacks of one environment give each component, with every Terraform
reference replaced by the value it will have.

Terraform cannot plan here (no providers), so values are substituted as a plan would fill
them: variables from REHEARSAL_VARIABLES (release inputs the Makefile passes as TF_VAR_*),
cross-stack references through the other stack's outputs, and resource attributes from
their configuration — or, for the attributes the Google provider computes, from the formats
its documentation gives (service account email, topic and endpoint ids). A reference that
none of these explains is an error naming it, never a silent pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_REFERENCE = re.compile(r"\$\{([^{}]+)\}")
_REMOTE = re.compile(r"data\.terraform_remote_state\.([^.]+)\.outputs\.([^.]+)$")
_ATTRIBUTE = re.compile(r"(google_[a-z0-9_]+)\.([A-Za-z0-9_-]+)\.([a-z_]+)$")
_COMPUTED: dict[tuple[str, str], Callable[[dict[str, str]], str]] = {
    ("google_service_account", "email"): lambda r: (
        f"{r['account_id']}@{r['project']}.iam.gserviceaccount.com"
    ),
    ("google_service_account", "name"): lambda r: (
        f"projects/{r['project']}/serviceAccounts/"
        f"{r['account_id']}@{r['project']}.iam.gserviceaccount.com"
    ),
    ("google_pubsub_topic", "id"): lambda r: f"projects/{r['project']}/topics/{r['name']}",
    ("google_vertex_ai_endpoint", "id"): lambda r: (
        f"projects/{r['project']}/locations/{r['location']}/endpoints/{r['name']}"
    ),
}
DIGEST = "@sha256:"


def rehearsal_variables(project: str, region: str, release: str) -> dict[str, str]:
    """Values for the app stack's release variables (CONTRACTS.md 1): images by digest in the
    environment's registry and the release commit. The digests are made up: no image runs."""
    registry = f"{region}-docker.pkg.dev/{project}/recloop"
    return {
        "trainer_image": f"{registry}/trainer{DIGEST}{'1' * 64}",
        "serving_image": f"{registry}/predictor{DIGEST}{'2' * 64}",
        "release": release,
    }


class UnresolvedReference(ValueError):
    """A reference that neither a variable, another stack nor the provider's formats explain."""


@dataclass(frozen=True)
class Function:
    name: str  # the function's name in the stack (config.name(...))
    entry_point: str
    topic: str  # projects/<p>/topics/<t>: the topic whose messages start it
    service_account: str
    environment: dict[str, str]


@dataclass(frozen=True)
class Environment:
    """One environment's stacks, resolved."""

    env: str
    project: str
    region: str
    functions: dict[str, Function]  # by resource key, e.g. "simulator_function_CDF38D8D"
    topics: list[str]  # projects/<p>/topics/<t>, every topic the data stack declares
    prediction_logs_topic: str  # the one the predictor must publish to
    tables: dict[tuple[str, str, str], list[dict[str, Any]]]  # (project, dataset, table)
    accounts: dict[str, str]  # account_id → email
    artifacts_bucket: str
    variables: dict[str, str]  # the app stack's variables and the values given to them


def resolve(
    value: str, stack: str, stacks: Mapping[str, dict[str, Any]], variables: Mapping[str, str]
) -> str:
    return _REFERENCE.sub(lambda m: _reference(m.group(1).strip(), stack, stacks, variables), value)


def _reference(
    expression: str, stack: str, stacks: Mapping[str, dict[str, Any]], variables: Mapping[str, str]
) -> str:
    document = stacks[stack]
    if expression.startswith("var."):
        name = expression[4:]
        if name not in variables:
            raise UnresolvedReference(f"{stack}: no value for variable {name}")
        return variables[name]
    if remote := _REMOTE.match(expression):
        state = document["data"]["terraform_remote_state"][remote.group(1)]
        other = state["config"]["prefix"].replace("/", "-")  # dev/data → dev-data
        output = stacks[other]["output"][remote.group(2)]["value"]
        return resolve(output, other, stacks, variables)
    if attribute := _ATTRIBUTE.match(expression):
        kind, name, key = attribute.groups()
        resource = document.get("resource", {}).get(kind, {}).get(name)
        if resource is not None and isinstance(resource.get(key), str):
            return resolve(resource[key], stack, stacks, variables)
        if resource is not None and (kind, key) in _COMPUTED:
            fields = {k: v for k, v in resource.items() if isinstance(v, str)}
            resolved = {k: resolve(v, stack, stacks, variables) for k, v in fields.items()}
            return _COMPUTED[(kind, key)](resolved)
    raise UnresolvedReference(f"{stack}: cannot resolve ${{{expression}}}")


def environment(
    stacks: Mapping[str, dict[str, Any]], env: str, variables: Mapping[str, str]
) -> Environment:
    """The resolved view of `<env>-data` and `<env>-app`; raises UnresolvedReference."""
    app, data = f"{env}-app", f"{env}-data"
    declared = sorted(stacks[app].get("variable", {}))
    missing = [name for name in declared if name not in variables]
    if missing:
        raise UnresolvedReference(f"{app}: no rehearsal value for variable(s) {', '.join(missing)}")
    given = {name: variables[name] for name in declared}

    def value(text: str, stack: str = app) -> str:
        return resolve(text, stack, stacks, given)

    functions = {}
    for key, body in stacks[app]["resource"].get("google_cloudfunctions2_function", {}).items():
        service = body["service_config"]
        functions[key] = Function(
            name=value(body["name"]),
            entry_point=body["build_config"]["entry_point"],
            topic=value(body["event_trigger"]["pubsub_topic"]),
            service_account=value(service["service_account_email"]),
            environment={k: value(v) for k, v in service.get("environment_variables", {}).items()},
        )
    resources = stacks[data]["resource"]
    topics = [
        f"projects/{value(t['project'], data)}/topics/{value(t['name'], data)}"
        for t in resources.get("google_pubsub_topic", {}).values()
    ]
    tables = {
        (value(t["project"], data), value(t["dataset_id"], data), value(t["table_id"], data)): (
            json.loads(t["schema"])
        )
        for t in resources.get("google_bigquery_table", {}).values()
    }
    accounts = {
        a["account_id"]: _COMPUTED[("google_service_account", "email")](
            {k: value(v, data) for k, v in a.items() if isinstance(v, str)}
        )
        for a in resources.get("google_service_account", {}).values()
    }
    prediction_logs = next(t for t in topics if t.endswith("-prediction-logs"))
    buckets = resources.get("google_storage_bucket", {})
    artifacts = next(
        value(b["name"], data) for k, b in buckets.items() if k.startswith("artifacts")
    )
    provider = stacks[app]["provider"]["google"][0]
    return Environment(
        env,
        provider["project"],
        provider["region"],
        functions,
        topics,
        prediction_logs,
        tables,
        accounts,
        artifacts,
        given,
    )
