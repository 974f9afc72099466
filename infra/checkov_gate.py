"""Runs checkov on the synthesised stacks; fails on any check a resource does not skip.

Usage: python -m infra.checkov_gate CHECKOV_BINARY STACKS_DIR
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

SKIP = re.compile(r"checkov:skip=([A-Z0-9_]+):(.+)")


def declared_skips(stacks: Path) -> dict[tuple[str, str], dict[str, str]]:
    """(stack, resource name) → {check id: reason}, from the "//" comments."""
    skips: dict[tuple[str, str], dict[str, str]] = {}
    for path in stacks.glob("*/cdk.tf.json"):
        resources = json.loads(path.read_text()).get("resource", {})
        for entries in resources.values():
            for name, body in entries.items():
                comment = body.get("//", {})
                texts = comment.values() if isinstance(comment, dict) else comment
                found = {
                    m.group(1): m.group(2)
                    for t in texts
                    if isinstance(t, str) and (m := SKIP.match(t))
                }
                if found:
                    skips[(path.parent.name, name)] = found
    return skips


def main(checkov: str, stacks_dir: str) -> int:
    stacks = Path(stacks_dir)
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
            str(stacks),
        ],
        capture_output=True,
        text=True,
    )
    reports = json.loads(result.stdout or "[]")
    reports = reports if isinstance(reports, list) else [reports]
    skips = declared_skips(stacks)
    failures: list[tuple[str, str, str, str]] = []
    skipped: list[tuple[str, str, str, str]] = []
    passed = 0
    for report in reports:
        checks = report.get("results", {})
        passed += int(report.get("summary", {}).get("passed", 0))
        for check in checks.get("failed_checks", []):
            stack = Path(check["file_path"]).parts[-2]
            address = check["resource"]
            # checkov names a resource "<type>.<name>" or "resource.<name>": the name is the key.
            reason = skips.get((stack, address.rsplit(".", 1)[-1]), {}).get(check["check_id"])
            (skipped if reason else failures).append(
                (stack, address, check["check_id"], reason or check["check_name"])
            )
    for stack, address, check_id, reason in sorted(skipped):
        print(f"skipped {check_id} on {stack}/{address}: {reason}")
    for stack, address, check_id, name in sorted(failures):
        print(f"FAILED  {check_id} on {stack}/{address}: {name}")
    print(f"checkov: {passed} passed, {len(failures)} failed, {len(skipped)} skipped with a reason")
    return 1 if failures or not passed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
