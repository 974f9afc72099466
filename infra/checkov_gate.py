"""Runs checkov on the synthesised stacks with their references resolved; fails on any
failed check that its resource does not skip with a reason, on every skip that hides no
failure, on parsing errors, and on any run that produces no report.

checkov cannot evaluate Terraform's `${…}` references, and a check passes what it cannot
read: `serviceAccount:${google_service_account.deployer.member}` is no service account to
CKV_GCP_42, so an admin role granted to it passed. The gate therefore scans a copy of each
stack in which every reference is resolved as a plan would (infra/resolve.py, the one
resolver): the referenced resource's own arguments, the outputs a `terraform_remote_state`
reads from the stack that writes them, variable defaults, and the computed attributes
recloop relies on (a service account's email, a topic's id). What only exists after apply (a
project number, a function's URL) becomes `<known after apply: …>`. Skips are
`checkov:skip=<id>:<reason>` entries in the resource's "//" comment (infra/checks.py), keyed
by (stack, resource type, resource name).
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

from infra.resolve import UnresolvedReference, resolve_all

SKIP = re.compile(r"checkov:skip=([A-Z0-9_]+):(.+)")
PARSE_FAILURE = re.compile(r"Failed to parse template: (\S+)")
Key = tuple[str, str, str]  # (stack, resource type, resource name)


def resolved_copy(stacks: Path, target: Path) -> dict[str, dict[int, tuple[str, str]]]:
    """Writes each stack with references resolved to target/<stack>/cdk.tf.json; returns,
    per stack, the line of each resource's opening brace → (type, name)."""
    documents = {p.parent.name: json.loads(p.read_text()) for p in stacks.glob("*/cdk.tf.json")}
    lines: dict[str, dict[int, tuple[str, str]]] = {}
    for name, doc in documents.items():
        copy = {**doc, "resource": resolve_all(doc.get("resource", {}), name, documents)}
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
        except (json.JSONDecodeError, UnresolvedReference) as error:
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
