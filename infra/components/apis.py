"""Enabled APIs. disable_on_destroy stays false: destroying a stack never turns off an API
that another stack (or the data it holds) still relies on. The other resources of the stack
wait for them (`precede`): on a new project Terraform would otherwise create them in parallel
with enabling their APIs and fail (tests/infra/test_stack_lifecycle.py)."""

from __future__ import annotations

from cdktf import TerraformResource
from cdktf_cdktf_provider_google.project_service import ProjectService
from constructs import Construct


class Apis(Construct):
    def __init__(self, scope: Construct, id: str, project: str, services: list[str]):
        super().__init__(scope, id)
        self.services = {
            service: ProjectService(
                self,
                service.split(".")[0],
                project=project,
                service=service,
                disable_on_destroy=False,
                disable_dependent_services=False,
            )
            for service in services
        }

    def reference(self, service: str) -> str:
        """The enabled API as a bare reference for `depends_on`."""
        enabled = self.services[service]
        return f"{enabled.terraform_resource_type}.{enabled.friendly_unique_id}"

    def precede(self, scope: Construct) -> None:
        """Every other resource in `scope` is created after the APIs are on (data sources are
        read at plan time and keep no dependency). The Pub/Sub service agent that the data
        stack grants roles to, too, exists only once its API is enabled."""
        # Terraform's JSON syntax: bare references ("type.name"); the `fqn` token would
        # render as "${type.name}".
        services = [self.reference(service) for service in self.services]
        for node in scope.node.find_all():
            if isinstance(node, TerraformResource) and not isinstance(node, ProjectService):
                node.add_override("depends_on", services)
