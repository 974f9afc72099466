"""Runs checkov on the synthesised stacks with their references resolved; fails on any
failed check that its resource does not skip with a reason, on every skip that hides no
failure, on parsing errors, and on any run that produces no report.

checkov cannot evaluate Terraform's `${…}` references, and a check passes what it cannot
read: `serviceAccount:${google_service_account.deployer.member}` is no service account to
CKV_GCP_42, so an admin role granted to it passed. The gate therefore scans a copy of each
stack in which every reference it can resolve is replaced by its value: the referenced
resource's own arguments, the outputs a `terraform_remote_state` reads from the stack that
writes them, variable defaults, and the computed attributes recloop relies on (a service
account's email, a topic's id). What only exists after apply (a project number, a function's
URL) becomes `<known after apply: …>`. Skips are `checkov:skip=<id>:<reason>` entries in the
resource's "//" comment (infra/checks.py), keyed by (stack, resource type, resource name).
Proved by tests/infra/test_checkov_gate.py.

Usage: python -m infra.checkov_gate CHECKOV_BINARY STACKS_DIR
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SKIP = re.compile(r"checkov:skip=([A-Z0-9_]+):(.+)")
REFERENCE = re.compile(r"\$\{([^{}]+)\}")
PATH_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
PARSE_FAILURE = re.compile(r"Failed to parse template: (\S+)")
Key = tuple[str, str, str]  # (stack, resource type, resource name)


class Unknown(Exception):
    """A reference whose value exists only after apply."""


def _steps(path: str) -> list[str | int]:
    return [name if name else int(index) for name, index in PATH_STEP.findall(path)]


def _computed(kind: str, body: dict[str, Any], attribute: str, value: Any) -> Any:
    """Attributes the provider computes, for the resource types recloop uses."""
    project = value("project") if "project" in body else None
    if kind == "google_service_account" and attribute in ("email", "member", "name", "id"):
        email = f"{value('account_id')}@{project}.iam.gserviceaccount.com"
        return {
            "email": email,
            "member": f"serviceAccount:{email}",
            "name": f"projects/{project}/serviceAccounts/{email}",
            "id": f"projects/{project}/serviceAccounts/{email}",
        }[attribute]
    collections = {
        "google_pubsub_topic": "topics",
        "google_pubsub_subscription": "subscriptions",
    }
    if kind in collections and attribute == "id":
        return f"projects/{project}/{collections[kind]}/{value('name')}"
    if kind == "google_vertex_ai_endpoint" and attribute == "id":
        return f"projects/{project}/locations/{value('location')}/endpoints/{value('name')}"
    if kind == "google_artifact_registry_repository" and attribute in ("name", "id"):
        return (
            f"projects/{project}/locations/{value('location')}"
            f"/repositories/{value('repository_id')}"
        )
    if kind == "google_bigquery_dataset" and attribute == "id":
        return f"projects/{project}/datasets/{value('dataset_id')}"
    if kind == "google_storage_bucket" and attribute == "id":
        return value("name")
    raise Unknown


class Resolver:
    """Values of references across the synthesised stacks of one cdktf app."""

    def __init__(self, documents: dict[str, dict[str, Any]]):
        self.documents = documents
        self.by_backend = {
            json.dumps(backend, sort_keys=True): name
            for name, doc in documents.items()
            for backend in doc.get("terraform", {}).get("backend", {}).values()
        }

    def resolve(self, stack: str, value: Any, depth: int = 0) -> Any:
        if depth > 20:
            raise ValueError(f"{stack}: reference cycle near {value!r}")
        if isinstance(value, dict):
            return {k: self.resolve(stack, v, depth) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(stack, v, depth) for v in value]
        if not isinstance(value, str) or "${" not in value:
            return value
        whole = REFERENCE.fullmatch(value)
        if whole:  # a lone reference keeps the referenced value's type
            return self._expression(stack, whole.group(1), depth)
        return REFERENCE.sub(lambda m: str(self._expression(stack, m.group(1), depth)), value)

    def _expression(self, stack: str, expression: str, depth: int) -> Any:
        try:
            return self.resolve(stack, self._lookup(stack, _steps(expression), depth), depth + 1)
        except (Unknown, KeyError, IndexError, TypeError):
            return f"<known after apply: {expression}>"

    def _lookup(self, stack: str, steps: list[str | int], depth: int) -> Any:
        doc = self.documents[stack]
        head = steps[0]
        if head == "var":
            return doc["variable"][steps[1]]["default"]
        if head == "data" and steps[1] == "terraform_remote_state":
            state = doc["data"]["terraform_remote_state"][str(steps[2])]
            other = self.by_backend[json.dumps({**state["config"]}, sort_keys=True)]
            if steps[3] != "outputs":
                raise Unknown
            output = self.documents[other]["output"][str(steps[4])]["value"]
            return self._walk(self.resolve(other, output, depth + 1), steps[5:])
        if head == "data":
            kind, name, rest = str(steps[1]), str(steps[2]), steps[3:]
            body = doc["data"][kind][name]
        else:
            kind, name, rest = str(head), str(steps[1]), steps[2:]
            body = doc["resource"][kind][name]
        if not rest:
            raise Unknown
        attribute = str(rest[0])
        if attribute in body:
            return self._walk(body[attribute], rest[1:])

        def value(key: str) -> Any:
            resolved = self.resolve(stack, body[key], depth + 1)
            if isinstance(resolved, str) and resolved.startswith("<known after apply"):
                raise Unknown
            return resolved

        return self._walk(_computed(kind, body, attribute, value), rest[1:])

    @staticmethod
    def _walk(value: Any, steps: list[str | int]) -> Any:
        for step in steps:
            value = value[step]
        return value


def resolved_copy(stacks: Path, target: Path) -> dict[str, dict[int, tuple[str, str]]]:
    """Writes each stack with references resolved to target/<stack>/cdk.tf.json; returns,
    per stack, the line of each resource's opening brace → (type, name)."""
    documents = {p.parent.name: json.loads(p.read_text()) for p in stacks.glob("*/cdk.tf.json")}
    resolver = Resolver(documents)
    lines: dict[str, dict[int, tuple[str, str]]] = {}
    for name, doc in documents.items():
        copy = {**doc, "resource": resolver.resolve(name, doc.get("resource", {}))}
        text = json.dumps(copy, indent=2)
        (target / name).mkdir(parents=True)
        (target / name / "cdk.tf.json").write_text(text)
        lines[name] = _resource_lines(text)
    return lines


def _resource_lines(text: str) -> dict[int, tuple[str, str]]:
    """json.dumps(indent=2): resource types sit at 4 spaces, their names at 6."""
    found: dict[int, tuple[str, str]] = {}
    inside, kind = False, ""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("  ") and not line.startswith("   "):
            inside = line.strip() == '"resource": {'
        elif inside and (m := re.fullmatch(r' {4}"([^"]+)": \{', line)):
            kind = m.group(1)
        elif inside and (m := re.fullmatch(r' {6}"([^"]+)": \{', line)):
            found[number] = (kind, m.group(1))
    return found


def declared_skips(stacks: Path) -> dict[Key, dict[str, str]]:
    """(stack, type, name) → {check id: reason}, from the resources' "//" comments."""
    skips: dict[Key, dict[str, str]] = {}
    for path in stacks.glob("*/cdk.tf.json"):
        resources = json.loads(path.read_text()).get("resource", {})
        for kind, entries in resources.items():
            for name, body in entries.items():
                comment = (body or {}).get("//", {})
                texts = comment.values() if isinstance(comment, dict) else comment
                found = {
                    m.group(1): m.group(2).strip()
                    for t in texts
                    if isinstance(t, str) and (m := SKIP.match(t))
                }
                if found:
                    skips[(path.parent.name, kind, name)] = found
    return skips


@dataclass
class Outcome:
    failures: list[str]
    skipped: list[str]
    passed: int

    @property
    def ok(self) -> bool:
        return not self.failures and self.passed > 0


def scan(checkov: str, stacks: Path) -> Outcome:
    with tempfile.TemporaryDirectory() as scratch:
        try:
            lines = resolved_copy(stacks, Path(scratch))
        except (json.JSONDecodeError, ValueError) as error:
            return Outcome([f"PARSING {error}"], [], 0)
        result = subprocess.run(
            [
                checkov,
                "--framework",
                "terraform_json",
                "--skip-download",
                "--quiet",
                "-o",
                "json",
                "-d",
                scratch,
            ],
            capture_output=True,
            text=True,
        )
    if result.returncode not in (0, 1):
        return Outcome(
            [f"ERROR   checkov exited {result.returncode}: {result.stderr[-500:]}"], [], 0
        )
    try:
        reports = json.loads(result.stdout)
    except json.JSONDecodeError:
        return Outcome([f"ERROR   checkov printed no JSON report: {result.stdout[:200]!r}"], [], 0)
    reports = reports if isinstance(reports, list) else [reports]
    failures: list[str] = []
    skipped: list[str] = []
    passed = 0
    skips = declared_skips(stacks)
    used: set[tuple[Key, str]] = set()
    unparsed = [Path(p).parent.name for p in PARSE_FAILURE.findall(result.stderr)]
    for report in reports:
        summary = report.get("summary", {})
        passed += int(summary.get("passed", 0))
        if int(summary.get("parsing_errors", 0)):
            failures.append(
                f"PARSING {summary['parsing_errors']} file(s) checkov could not parse: "
                f"{', '.join(unparsed) or 'see its log'}"
            )
        for check in report.get("results", {}).get("failed_checks", []):
            stack = Path(check["file_path"]).parent.name
            kind, name = lines.get(stack, {}).get(
                check["file_line_range"][0], ("?", check["resource"])
            )
            key, check_id = (stack, kind, name), check["check_id"]
            reason = skips.get(key, {}).get(check_id)
            where = f"{check_id} on {stack}/{kind}.{name}"
            if reason:
                used.add((key, check_id))
                skipped.append(f"skipped {where}: {reason}")
            else:
                failures.append(f"FAILED  {where}: {check['check_name']}")
    for key, checks in skips.items():
        for check_id in checks:
            if (key, check_id) not in used:
                failures.append(
                    f"STALE   {check_id} on {key[0]}/{key[1]}.{key[2]}: skipped but not failing"
                )
    return Outcome(sorted(failures), sorted(skipped), passed)


def main(checkov: str, stacks_dir: str) -> int:
    outcome = scan(checkov, Path(stacks_dir))
    for line in outcome.skipped + outcome.failures:
        print(line)
    print(
        f"checkov: {outcome.passed} passed, {len(outcome.failures)} failed, "
        f"{len(outcome.skipped)} skipped with a reason"
    )
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
