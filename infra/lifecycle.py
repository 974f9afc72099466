"""Resources that hold state refuse to be destroyed.

`keep` sets Terraform's `lifecycle.prevent_destroy`: any plan that would delete the resource
(a `cdktf destroy`, a rename that replaces it) fails before touching anything. Removing data
on purpose is a reviewed code change (docs/operations.md, "Deleting data");
tests/infra/test_stack_lifecycle.py::test_every_stateful_resource_refuses_destruction proves
every stateful resource carries it.
"""

from __future__ import annotations

from typing import TypeVar

from cdktf import TerraformResource, TerraformResourceLifecycle

R = TypeVar("R", bound=TerraformResource)


def keep(resource: R) -> R:
    resource.lifecycle = TerraformResourceLifecycle(prevent_destroy=True)
    return resource
