"""Skipped checkov checks: declared next to their resource, with the reason.

checkov's terraform_json scanner reads no inline suppressions, so each skip is written into
the resource's Terraform JSON "//" comment as `checkov:skip=<id>:<reason>`, and
`python -m infra.checkov_gate` accepts a failed check only where that resource (by stack,
type and name) declares it, and fails on a declared skip that hides no failure.
"""

from __future__ import annotations

from cdktf import TerraformResource

GOOGLE_MANAGED = (
    "Google-managed encryption keys; customer-managed keys are an operator choice "
    "that needs a KMS key ring per environment"
)


def skip(resource: TerraformResource, **reasons: str) -> None:
    resource.add_override(
        "//", [f"checkov:skip={check}:{reason}" for check, reason in reasons.items()]
    )
