"""Enabled APIs. disable_on_destroy stays false: destroying a stack never turns off an API
that another stack (or the data it holds) still relies on."""

from __future__ import annotations

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
