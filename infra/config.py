"""One typed configuration per environment (infra/environments/<env>.toml)."""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENVIRONMENTS = ("dev", "prod")
FOLDER = Path(__file__).resolve().parent / "environments"


@dataclass(frozen=True)
class EnvironmentConfig:
    env: str
    project_id: str
    region: str
    name_prefix: str
    state_bucket: str
    # The only repository CI may deploy from: its name, and the numeric ids GitHub never
    # reuses (a deleted and re-created `owner/name` gets new ids; `gh api repos/OWNER/NAME
    # --jq '.id, .owner.id'`).
    github_repository: str
    github_repository_id: int
    github_repository_owner_id: int
    bigquery_location: str
    simulate_schedule: str
    retrain_schedule: str
    predictor_machine_type: str
    predictor_min_replicas: int
    predictor_max_replicas: int
    function_max_instances: int
    labels: dict[str, str] = field(default_factory=dict)
    # When set, only jobs on this ref (e.g. refs/heads/main) may deploy this environment.
    github_ref: str | None = None
    # When set, only these workflow files (on github_ref) may deploy this environment.
    github_workflows: list[str] = field(default_factory=list)
    # Environments that copy this one's tested images (their deployers may read its registry).
    promotes_to: list[str] = field(default_factory=list)

    def name(self, suffix: str) -> str:
        return f"{self.name_prefix}-{suffix}"

    @property
    def dataset_id(self) -> str:
        return self.name_prefix.replace("-", "_")

    @property
    def all_labels(self) -> dict[str, str]:
        return {"app": "recloop", **self.labels}

    @property
    def deployer_account_id(self) -> str:
        return self.name("deployer")

    @property
    def deployer_email(self) -> str:
        return f"{self.deployer_account_id}@{self.project_id}.iam.gserviceaccount.com"


def _type_error(key: str, expected: Any, value: Any) -> str | None:
    """Why `value` is not of the annotated type `expected` (None when it is)."""
    origin = typing.get_origin(expected)
    args = typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = [_type_error(key, a, value) for a in args if a is not type(None)]
        return None if any(e is None for e in errors) else errors[0]
    if origin in (list, dict):
        if not isinstance(value, origin):
            return f"{key}: expected {origin.__name__}, got {value!r}"
        items = value.items() if isinstance(value, dict) else enumerate(value)
        inner = args[-1]
        for k, item in items:
            if (error := _type_error(f"{key}[{k!r}]", inner, item)) is not None:
                return error
        return None
    if isinstance(value, bool) and expected is not bool:
        return f"{key}: expected {expected.__name__}, got {value!r}"
    return (
        None
        if isinstance(value, expected)
        else (f"{key}: expected {expected.__name__}, got {value!r}")
    )


def load(env: str) -> EnvironmentConfig:
    if env not in ENVIRONMENTS:
        raise ValueError(
            f"unknown environment {env!r}; expected one of {', '.join(ENVIRONMENTS)} "
            "(choose it with ENV=…, e.g. `make synth ENV=dev`)"
        )
    values = tomllib.loads((FOLDER / f"{env}.toml").read_text())
    fields = {f.name: f for f in dataclasses.fields(EnvironmentConfig) if f.name != "env"}
    required = {
        n
        for n, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    unknown = sorted(set(values) - set(fields))
    missing = sorted(required - set(values))
    if unknown or missing:
        raise ValueError(f"{env}.toml: unknown keys {unknown}, missing keys {missing}")
    hints = typing.get_type_hints(EnvironmentConfig)
    errors = [e for k, v in values.items() if (e := _type_error(k, hints[k], v))]
    bad_targets = [t for t in values.get("promotes_to", []) if t not in ENVIRONMENTS or t == env]
    if bad_targets:
        errors.append(f"promotes_to: unknown environments {bad_targets}")
    if errors:
        raise ValueError(f"{env}.toml: {'; '.join(errors)}")
    return EnvironmentConfig(env=env, **values)
