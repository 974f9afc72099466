"""A bucket as recloop keeps them: uniform access, public access prevented, versioned, and
never destroyed by Terraform (prevent_destroy)."""

from __future__ import annotations

from cdktf_cdktf_provider_google.storage_bucket import (
    StorageBucket,
    StorageBucketVersioning,
)
from constructs import Construct

from infra.checks import skip
from infra.lifecycle import keep


class SecureBucket(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        project: str,
        name: str,
        location: str,
        labels: dict[str, str],
    ):
        super().__init__(scope, id)
        self.bucket = StorageBucket(
            self,
            "bucket",
            project=project,
            name=name,
            location=location,
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            versioning=StorageBucketVersioning(enabled=True),
            force_destroy=False,
            labels=labels,
        )
        keep(self.bucket)
        skip(
            self.bucket,
            CKV_GCP_62=(
                "object reads are not logged: usage logs need a second bucket and Cloud "
                "Storage Data Access audit logs are off unless the operator enables them; "
                "Admin Activity audit logs record bucket and IAM changes"
            ),
        )
