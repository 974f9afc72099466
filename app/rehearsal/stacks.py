"""What the synthesized stacks of one environment give each component, with every Terraform
reference replaced by the value a plan would give it (infra/resolve.py), the app stack's
release variables taken from `rehearsal_variables`. A reference nothing explains is an
UnresolvedReference naming it, never a silent pass
(tests/test_rehearse.py::test_each_function_environment_resolves_from_the_stacks).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from infra.resolve import UnresolvedReference, resolve

__all__ = ["Environment", "Function", "Subscription", "UnresolvedReference", "environment"]

DIGEST = "@sha256:"
_FUNCTION_URL = re.compile(r"\$\{google_cloudfunctions2_function\.([A-Za-z0-9_-]+)\.service_config")


def rehearsal_variables(project: str, region: str, release: str) -> dict[str, str]:
    """Values for the app stack's release variables (CONTRACTS.md 1): images by digest in the
    environment's registry and the release commit. The digests are made up: no image runs."""
    registry = f"{region}-docker.pkg.dev/{project}/recloop"
    return {
        "trainer_image": f"{registry}/trainer{DIGEST}{'1' * 64}",
        "serving_image": f"{registry}/predictor{DIGEST}{'2' * 64}",
        "release": release,
    }


@dataclass(frozen=True)
class Subscription:
    """The push subscription that feeds a function (its endpoint: the function's URL)."""

    name: str  # projects/<p>/subscriptions/<s>
    topic: str  # projects/<p>/topics/<t>
    ack_deadline_seconds: int
    dead_letter_topic: str | None
    max_delivery_attempts: int | None


@dataclass(frozen=True)
class Function:
    name: str  # the function's name in the stack (config.name(...))
    entry_point: str
    service_account: str
    environment: dict[str, str]
    subscription: Subscription

    @property
    def topic(self) -> str:
        return self.subscription.topic


@dataclass(frozen=True)
class Grant:
    scope: str  # project | dataset | bucket | topic
    on: str  # the dataset id, bucket or topic name ("" for the project)
    role: str
    member: str


_GRANTS = {  # IAM member resource → (scope, the argument that names what it is on)
    "google_project_iam_member": ("project", None),
    "google_bigquery_dataset_iam_member": ("dataset", "dataset_id"),
    "google_storage_bucket_iam_member": ("bucket", "bucket"),
    "google_pubsub_topic_iam_member": ("topic", "topic"),
}


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
    accounts: dict[str, str]  # the data stack's key (e.g. "sa_predictor") → email
    artifacts_bucket: str
    variables: dict[str, str]  # the app stack's variables and the values given to them
    grants: set[Grant]  # the app stack's IAM members

    def granted(self, account: str, roles: tuple[str, ...], scope: str, on: str = "") -> bool:
        """Whether the app stack gives `account` one of `roles` on `scope` (`on` names the
        dataset or bucket; a project grant covers every one)."""
        member = f"serviceAccount:{account}"
        return any(
            g.member == member
            and g.role in roles
            and (g.scope, g.on) in {(scope, on), ("project", "")}
            for g in self.grants
        )


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

    feeds = {}  # function key → the subscription whose push endpoint is its URL
    for body in stacks[app]["resource"].get("google_pubsub_subscription", {}).values():
        endpoint = body.get("push_config", {}).get("push_endpoint", "")
        if target := _FUNCTION_URL.search(endpoint):
            dead_letter = body.get("dead_letter_policy") or {}
            project = value(body["project"])
            feeds[target.group(1)] = Subscription(
                name=f"projects/{project}/subscriptions/{value(body['name'])}",
                topic=value(body["topic"]),
                ack_deadline_seconds=int(body.get("ack_deadline_seconds", 10)),
                dead_letter_topic=value(dead_letter["dead_letter_topic"]) if dead_letter else None,
                max_delivery_attempts=dead_letter.get("max_delivery_attempts"),
            )
    functions = {}
    for key, body in stacks[app]["resource"].get("google_cloudfunctions2_function", {}).items():
        if key not in feeds:
            raise UnresolvedReference(f"{app}: no push subscription feeds function {key}")
        service = body["service_config"]
        functions[key] = Function(
            name=value(body["name"]),
            entry_point=body["build_config"]["entry_point"],
            service_account=value(service["service_account_email"]),
            environment={k: value(v) for k, v in service.get("environment_variables", {}).items()},
            subscription=feeds[key],
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
        key: value(f"${{{prefix}google_service_account.{key}.email}}", data)
        for prefix, section in (("", resources), ("data.", stacks[data].get("data", {})))
        for key in section.get("google_service_account", {})
    }
    prediction_logs = next(t for t in topics if t.endswith("-prediction-logs"))
    buckets = resources.get("google_storage_bucket", {})
    artifacts = next(
        value(b["name"], data) for k, b in buckets.items() if k.startswith("artifacts")
    )
    grants = {
        Grant(scope, value(body[on]) if on else "", body["role"], value(body["member"]))
        for kind, (scope, on) in _GRANTS.items()
        for body in stacks[app]["resource"].get(kind, {}).values()
        if "condition" not in body
    }
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
        grants,
    )
