"""`python -m infra.ci_settings ENV`: what a workflow job needs to know of an environment.

Project, region, registry, bucket and account names are not secrets and already have one
home, infra/environments/<env>.toml; the workflows read them from here (as `name=value` lines
for `$GITHUB_OUTPUT`) instead of keeping copies in GitHub. Values that come out of GitHub
secrets would make GitHub drop every job output derived from them (issue 8, defect 6). Only
the Workload Identity provider's name, which holds the project's number, is a GitHub
environment variable (`vars.GCP_WORKLOAD_IDENTITY_PROVIDER`). That these
names are the ones the stacks create is checked against the golden stacks by
tests/test_workflows.py::test_ci_settings_name_what_the_stacks_create.
"""

from __future__ import annotations

import sys

from infra.config import EnvironmentConfig, load

REGISTRY_REPOSITORY = "recloop"  # the Artifact Registry repository id of infra/stacks/data.py


def ci_settings(config: EnvironmentConfig) -> dict[str, str]:
    return {
        "project_id": config.project_id,
        "region": config.region,
        "registry": f"{config.region}-docker.pkg.dev/{config.project_id}/{REGISTRY_REPOSITORY}",
        "artifacts_bucket": config.name("artifacts"),
        "trigger_function": config.name("trigger"),
        # The bootstrap stack's deployer account (its output `deployer_service_account`).
        "deployer_service_account": config.deployer_email,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m infra.ci_settings dev|prod", file=sys.stderr)
        return 2
    try:
        settings = ci_settings(load(argv[0]))
    except ValueError as err:
        print(f"infra.ci_settings: {err}", file=sys.stderr)
        return 2
    for key, value in settings.items():
        print(f"{key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
