"""Resolving `${…}` references in synthesized Terraform JSON to the values they will have.

Terraform cannot run here (no providers), so tests and `make rehearse` substitute what a plan
would: variables from given values, cross-stack references through the other stack's
outputs, and a resource's attribute from its configuration — or, for the few attributes the
provider computes, from the documented format (COMPUTED). Anything else is an error, so an
unresolvable reference never passes silently. Used by tests/infra/test_wiring.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

REFERENCE = re.compile(r"\$\{([^{}]+)\}")
REMOTE = re.compile(r"data\.terraform_remote_state\.([^.]+)\.outputs\.([^.]+)$")
ATTRIBUTE = re.compile(r"(google_[a-z0-9_]+)\.([A-Za-z0-9_-]+)\.([a-z_]+)$")
# Attributes the Google provider computes, in the formats its documentation gives.
COMPUTED: dict[tuple[str, str], Callable[[dict[str, Any]], str]] = {
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


class UnresolvedReference(ValueError):
    """A reference that neither a variable, another stack nor the provider's formats explain."""


def resolve(
    value: str,
    stack: str,
    stacks: Mapping[str, dict[str, Any]],
    variables: Mapping[str, str],
) -> str:
    """`value` (a string of stack `stack`) with every reference replaced by its value."""

    def substitute(match: re.Match[str]) -> str:
        return _reference(match.group(1).strip(), stack, stacks, variables)

    return REFERENCE.sub(substitute, value)


def _reference(
    expression: str, stack: str, stacks: Mapping[str, dict[str, Any]], variables: Mapping[str, str]
) -> str:
    document = stacks[stack]
    if expression.startswith("var."):
        name = expression[4:]
        if name not in document.get("variable", {}) or name not in variables:
            raise UnresolvedReference(f"{stack}: no value for variable {name}")
        return variables[name]
    if remote := REMOTE.match(expression):
        state = document["data"]["terraform_remote_state"][remote.group(1)]
        other = state["config"]["prefix"].replace("/", "-")  # dev/data → dev-data
        output = stacks[other]["output"][remote.group(2)]["value"]
        return resolve(output, other, stacks, variables)
    if attribute := ATTRIBUTE.match(expression):
        kind, name, key = attribute.groups()
        resource = document.get("resource", {}).get(kind, {}).get(name)
        if resource is None:
            raise UnresolvedReference(f"{stack}: no resource {kind}.{name}")
        if key in resource and isinstance(resource[key], str):
            return resolve(resource[key], stack, stacks, variables)
        if (kind, key) in COMPUTED:
            fields = {k: v for k, v in resource.items() if isinstance(v, str)}
            return COMPUTED[(kind, key)](
                {k: resolve(v, stack, stacks, variables) for k, v in fields.items()}
            )
    raise UnresolvedReference(f"{stack}: cannot resolve ${{{expression}}}")
