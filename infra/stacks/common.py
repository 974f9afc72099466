"""What every stack starts with: its remote state and the Google provider."""

from __future__ import annotations

from cdktf import GcsBackend, TerraformStack
from cdktf_cdktf_provider_google.provider import GoogleProvider

from infra.config import EnvironmentConfig


def provider(stack: TerraformStack, config: EnvironmentConfig) -> GoogleProvider:
    return GoogleProvider(stack, "google", project=config.project_id, region=config.region)


def remote_state(stack: TerraformStack, config: EnvironmentConfig, layer: str) -> GcsBackend:
    return GcsBackend(stack, bucket=config.state_bucket, prefix=f"{config.env}/{layer}")
