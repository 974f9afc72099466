"""One typed configuration per environment (infra/environments/<env>.toml)."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ENVIRONMENTS = ("dev", "prod")
FOLDER = Path(__file__).resolve().parent / "environments"


@dataclass(frozen=True)
class EnvironmentConfig:
    env: str
    project_id: str
    region: str
    name_prefix: str
    state_bucket: str
    github_repository: str  # owner/name: the only repository CI may deploy from
    bigquery_location: str
    simulate_schedule: str
    retrain_schedule: str
    predictor_machine_type: str
    predictor_min_replicas: int
    predictor_max_replicas: int
    function_max_instances: int
    labels: dict[str, str] = field(default_factory=dict)

    def name(self, suffix: str) -> str:
        return f"{self.name_prefix}-{suffix}"

    @property
    def dataset_id(self) -> str:
        return self.name_prefix.replace("-", "_")

    @property
    def all_labels(self) -> dict[str, str]:
        return {"app": "recloop", **self.labels}


def load(env: str) -> EnvironmentConfig:
    if env not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {env!r}; expected one of {', '.join(ENVIRONMENTS)}")
    values = tomllib.loads((FOLDER / f"{env}.toml").read_text())
    names = {f.name for f in dataclasses.fields(EnvironmentConfig)} - {"env"}
    unknown = sorted(set(values) - names)
    missing = sorted(n for n in names - set(values) if n != "labels")
    if unknown or missing:
        raise ValueError(f"{env}.toml: unknown keys {unknown}, missing keys {missing}")
    return EnvironmentConfig(env=env, **values)
