"""Resolving `${…}` references in synthesized Terraform JSON to the values they will have.

Terraform cannot run here (no providers), so tests, `make rehearse` and the checkov gate
substitute what a plan would: variables from given values (or their defaults), cross-stack
references through the other stack's outputs, a resource's or data source's attribute from
its configuration — or, for the attributes the provider computes, from the documented
format (`computed`). Two modes:

- `resolve(value, stack, stacks, variables)`: every reference must resolve, else
  UnresolvedReference, so an unresolvable reference never passes silently
  (tests/infra/test_wiring.py);
- `resolve_all(value, stack, stacks)`: what exists only after apply (a project number, a
  function's URL) becomes `<known after apply: …>`; used by infra/checkov_gate.py
  (tests/infra/test_checkov_gate.py).

One resolver for both: a reference is explained the same way wherever it is read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

REFERENCE = re.compile(r"\$\{([^{}]+)\}")
_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
AFTER_APPLY = "<known after apply: {}>"


class UnresolvedReference(ValueError):
    """A reference that neither a variable, another stack nor the provider's formats explain."""


def computed(kind: str, attribute: str, field: Any) -> Any:
    """An attribute the Google provider computes, in the format its documentation gives;
    `field(name)` is the resource's own (resolved) argument."""
    if kind == "google_service_account" and attribute in ("email", "member", "name", "id"):
        email = f"{field('account_id')}@{field('project')}.iam.gserviceaccount.com"
        name = f"projects/{field('project')}/serviceAccounts/{email}"
        return {"email": email, "member": f"serviceAccount:{email}", "name": name, "id": name}[
            attribute
        ]
    collections = {"google_pubsub_topic": "topics", "google_pubsub_subscription": "subscriptions"}
    if kind in collections and attribute == "id":
        return f"projects/{field('project')}/{collections[kind]}/{field('name')}"
    if kind == "google_vertex_ai_endpoint" and attribute == "id":
        return (
            f"projects/{field('project')}/locations/{field('location')}/endpoints/{field('name')}"
        )
    if kind == "google_artifact_registry_repository" and attribute in ("name", "id"):
        return (
            f"projects/{field('project')}/locations/{field('location')}"
            f"/repositories/{field('repository_id')}"
        )
    if kind == "google_storage_bucket" and attribute == "id":
        return field("name")
    raise UnresolvedReference(f"{kind}.{attribute} is known only after apply")


class _Resolver:
    def __init__(
        self,
        stacks: Mapping[str, dict[str, Any]],
        variables: Mapping[str, str] | None,
        lenient: bool,
    ):
        self.stacks, self.variables, self.lenient = stacks, variables, lenient
        self.by_backend = {
            json.dumps(backend, sort_keys=True): name
            for name, document in stacks.items()
            for backend in document.get("terraform", {}).get("backend", {}).values()
        }

    def value(self, stack: str, value: Any, depth: int = 0) -> Any:
        if depth > 30:
            raise UnresolvedReference(f"{stack}: reference cycle near {value!r}")
        if isinstance(value, dict):
            return {k: self.value(stack, v, depth) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(stack, v, depth) for v in value]
        if not isinstance(value, str) or "${" not in value:
            return value
        if whole := REFERENCE.fullmatch(value):  # a lone reference keeps the value's type
            return self.expression(stack, whole.group(1).strip(), depth)
        return REFERENCE.sub(
            lambda m: str(self.expression(stack, m.group(1).strip(), depth)), value
        )

    def expression(self, stack: str, expression: str, depth: int) -> Any:
        try:
            steps = [n if n else int(i) for n, i in _STEP.findall(expression)]
            return self.value(stack, self._lookup(stack, steps, depth), depth + 1)
        except UnresolvedReference:
            if self.lenient:
                return AFTER_APPLY.format(expression)
            raise
        except (KeyError, IndexError, TypeError) as missing:
            if self.lenient:
                return AFTER_APPLY.format(expression)
            raise UnresolvedReference(
                f"{stack}: cannot resolve ${{{expression}}} ({missing!r})"
            ) from None

    def _lookup(self, stack: str, steps: list[str | int], depth: int) -> Any:
        document = self.stacks[stack]
        head = steps[0]
        if head == "var":
            name = str(steps[1])
            declared = document.get("variable", {})
            if name not in declared:
                raise UnresolvedReference(f"{stack}: no variable {name}")
            if self.variables is not None and name in self.variables:
                return self.variables[name]
            if self.lenient and "default" in declared[name]:
                return declared[name]["default"]
            raise UnresolvedReference(f"{stack}: no value for variable {name}")
        if head == "data" and steps[1] == "terraform_remote_state" and steps[3] == "outputs":
            state = document["data"]["terraform_remote_state"][str(steps[2])]
            other = self.by_backend[json.dumps(state["config"], sort_keys=True)]
            output = self.stacks[other]["output"][str(steps[4])]["value"]
            return _walk(self.value(other, output, depth + 1), steps[5:])
        if head == "data":
            kind, name, rest = str(steps[1]), str(steps[2]), steps[3:]
            body = document["data"][kind][name]
        else:
            kind, name, rest = str(head), str(steps[1]), steps[2:]
            body = document["resource"][kind][name]
        if not rest:
            raise UnresolvedReference(f"{stack}: a whole resource {kind}.{name}")
        attribute = str(rest[0])
        if attribute in body:
            return _walk(body[attribute], rest[1:])

        def field(key: str) -> Any:
            resolved = self.value(stack, body[key], depth + 1)
            if isinstance(resolved, str) and resolved.startswith(AFTER_APPLY.format("")[:-1]):
                raise UnresolvedReference(f"{kind}.{name}.{key} is known only after apply")
            return resolved

        return _walk(computed(kind, attribute, field), rest[1:])


def _walk(value: Any, steps: list[str | int]) -> Any:
    for step in steps:
        value = value[step]
    return value


def resolve(
    value: str,
    stack: str,
    stacks: Mapping[str, dict[str, Any]],
    variables: Mapping[str, str],
) -> str:
    """`value` (a string of stack `stack`) with every reference replaced by its value."""
    return str(_Resolver(stacks, variables, lenient=False).value(stack, value))


def resolve_all(value: Any, stack: str, stacks: Mapping[str, dict[str, Any]]) -> Any:
    """`value` (any JSON of stack `stack`) with every reference resolved where a plan could,
    and marked `<known after apply: …>` where only an apply can."""
    return _Resolver(stacks, None, lenient=True).value(stack, value)
