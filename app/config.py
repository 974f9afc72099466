"""One typed configuration for every recloop component.

Settings come from three layers, later ones winning: the profile file shipped in
`app/profiles/<profile>.toml` (`local`, `dev`, `prod`), an optional TOML file named by
`RECLOOP_CONFIG`, and environment variables. Environment variables are either
`RECLOOP__<SECTION>__<KEY>` or one of the well-known names Vertex AI and users already set
(`AIP_*`, `MOVIELENS_DIR`). This is the only module that reads `os.environ`.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from app.hyperparameters import DEFAULTS

PROFILES = ("local", "dev", "prod")
CLOUD_PROFILES = ("dev", "prod")
ENV_PREFIX = "RECLOOP__"
PROFILE_VARIABLE = "RECLOOP_PROFILE"
SettingPath = tuple[str, ...]  # ("pubsub", "prediction_logs_topic"), ("artifacts_dir",)


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


@dataclass(frozen=True)
class DataConfig:
    movielens_dir: str | None = None
    cache_dir: str = "~/.cache/recloop"
    download: bool = True


@dataclass(frozen=True)
class ServingConfig:
    host: str = "0.0.0.0"
    port: int = 8080
    health_route: str = "/health"
    predict_route: str = "/predict"
    storage_uri: str | None = None
    max_body_bytes: int = 1_500_000
    workers: int = 1
    # How the policy's choice is explored when served (app/exploration.py): greedy,
    # epsilon_greedy or softmax; every prediction logs the probability of its action.
    exploration: str = "greedy"
    epsilon: float = 0.1
    temperature: float = 0.25
    exploration_seed: int | None = None  # None: fresh entropy per process
    access_log: bool = False  # one line per request on stdout
    reuse_port: bool = False  # share a busy port with another server (SO_REUSEPORT) on purpose


@dataclass(frozen=True)
class VertexJobConfig:
    """Directories Vertex AI hands a custom-training job."""

    model_dir: str | None = None
    checkpoint_dir: str | None = None
    tensorboard_log_dir: str | None = None


@dataclass(frozen=True)
class CloudConfig:
    project_id: str | None = None
    region: str = "us-central1"
    staging_bucket: str | None = None
    trainer_image: str | None = None  # …@sha256:<digest> of the release
    serving_image: str | None = None  # …@sha256:<digest> of the release
    release: str | None = None  # the git commit the images and templates were built from
    machine_type: str = "n1-standard-4"  # tuning trials
    pipelines_service_account: str | None = None  # pipeline jobs and tuning run as it
    predictor_service_account: str | None = None  # the deployed model runs as it
    predictor_machine_type: str = "n1-standard-2"
    predictor_min_replicas: int = 1
    predictor_max_replicas: int = 1


@dataclass(frozen=True)
class WarehouseConfig:
    backend: str = "duckdb"  # or "bigquery"
    duckdb_path: str = ".recloop/warehouse.duckdb"
    dataset: str = "recloop"
    location: str = "US"
    # How long a local process waits for DuckDB's file lock before the write is retried
    # by its sender (the Logger returns an error; Pub/Sub or the direct publisher redeliver).
    lock_wait_seconds: float = 30.0
    # Rewards and predictions logged more than this many days before a run are not trained
    # on, and no ledger query reads the partitions before them (0: unbounded, every query
    # reads the whole history). docs/scaling.md.
    feedback_window_days: float = 0.0
    # host:port of a stand-in for the BigQuery Storage Write API on this machine (`make
    # rehearse`'s fake, the tests' server): reached without TLS, the credentials' token still
    # on every call. Unset: Google's endpoint (app/warehouse/bigquery_write.py).
    write_api_emulator_host: str | None = None


@dataclass(frozen=True)
class PubSubConfig:
    project_id: str = "recloop-local"
    emulator_host: str | None = None
    prediction_logs_topic: str = "recloop-prediction-logs"
    feedback_topic: str = "recloop-feedback"
    simulate_topic: str = "recloop-simulate"
    retrain_topic: str = "recloop-retrain"
    dead_letter_topic: str | None = None
    push_endpoints: str | None = None  # "topic=url,…": deliver to functions without Pub/Sub
    publish_predictions: bool = False


@dataclass(frozen=True)
class LoopConfig:
    """The closed loop: who asks for predictions, and when re-training starts."""

    endpoint_url: str | None = None
    vertex_endpoint: str | None = None
    simulated_users: int = 64
    min_new_examples: int = 100
    rank_k: int = DEFAULTS.rank_k
    num_actions: int = DEFAULTS.num_actions
    agent_alpha: float = DEFAULTS.agent_alpha  # see app/hyperparameters.py
    tikhonov_weight: float = DEFAULTS.tikhonov_weight
    pipeline_root: str = ".recloop/pipeline-root"
    retraining_template: str | None = None  # compiled pipeline (gs://…); unset: kfp.local


@dataclass(frozen=True)
class GateConfig:
    """The promotion gate between Trainer and Deployer (docs/safe-promotion.md)."""

    estimator: str = "dr"  # ips, snips or dr: the estimate the decision is taken on
    margin: float = 0.05  # stars the candidate may be worse than the serving policy
    confidence: float = 0.95  # one-sided, of the candidate − serving lower bound
    holdout_every: int = 0  # 0: evaluate on all the run's examples; n: every n-th, untrained
    # Canary (app/deployer/canary.py): a promoted candidate first gets this percentage of
    # traffic (0: all at once), judged every `canary_look_every` rewarded interactions of
    # it, at most `canary_max_looks` times, with the same margin and confidence.
    canary_share: int = 0
    canary_look_every: int = 200
    canary_max_looks: int = 5
    # A canary still undecided this many hours after it opened is rolled back (a canary that
    # never gets enough rewards would otherwise hold off every re-training).
    canary_max_hours: float = 24.0
    # Demo switches (app/demo.py), off in every profile: a candidate that skips the gate,
    # and a Trainer that learns from 6 − each reward (app/warehouse/linear_statistics.py).
    skip: bool = False
    corrupt_rewards: bool = False


@dataclass(frozen=True)
class Settings:
    profile: str = "local"
    state_dir: str = ".recloop"
    artifacts_dir: str = ".recloop/artifacts"
    data: DataConfig = field(default_factory=DataConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    vertex_job: VertexJobConfig = field(default_factory=VertexJobConfig)
    cloud: CloudConfig = field(default_factory=CloudConfig)
    warehouse: WarehouseConfig = field(default_factory=WarehouseConfig)
    pubsub: PubSubConfig = field(default_factory=PubSubConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    gate: GateConfig = field(default_factory=GateConfig)


# Well-known variables set by Vertex AI or by users, mapped onto (section, key).
ENV_ALIASES: dict[str, tuple[str, str]] = {
    "MOVIELENS_DIR": ("data", "movielens_dir"),
    "PUBSUB_EMULATOR_HOST": ("pubsub", "emulator_host"),
    "AIP_HTTP_PORT": ("serving", "port"),
    "AIP_HEALTH_ROUTE": ("serving", "health_route"),
    "AIP_PREDICT_ROUTE": ("serving", "predict_route"),
    "AIP_STORAGE_URI": ("serving", "storage_uri"),
    "AIP_MODEL_DIR": ("vertex_job", "model_dir"),
    "AIP_CHECKPOINT_DIR": ("vertex_job", "checkpoint_dir"),
    "AIP_TENSORBOARD_LOG_DIR": ("vertex_job", "tensorboard_log_dir"),
}


def env_name(path: SettingPath) -> str:
    """The environment variable that sets a setting: the one name infra, the Deployer and
    this module use (`RECLOOP__PUBSUB__PREDICTION_LOGS_TOPIC`; the profile: `RECLOOP_PROFILE`)."""
    if path == ("profile",):
        return PROFILE_VARIABLE
    return ENV_PREFIX + "__".join(part.upper() for part in path)


def lookup(settings: Settings, path: SettingPath) -> Any:
    """The value at `path`; a ConfigError names a path that is not a setting."""
    value: Any = settings
    for part in path:
        if not dataclasses.is_dataclass(value) or not hasattr(value, part):
            raise ConfigError(f"{'.'.join(path)} is not a setting")
        value = getattr(value, part)
    if dataclasses.is_dataclass(value):
        raise ConfigError(f"{'.'.join(path)} is a section, not a setting")
    return value


def env_value(value: Any) -> str:
    """A setting's value as an environment variable carries it (read back by load_settings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def load_settings(
    profile: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Settings:
    """Builds the settings for `profile` (default: `RECLOOP_PROFILE`, else `local`).

    `environ` defaults to the process environment; `overrides` are variables laid over it
    (a pipeline step's parameters, see app/loop/parameters.py)."""
    env = {**(os.environ if environ is None else environ), **(overrides or {})}
    profile = profile or env.get(PROFILE_VARIABLE) or "local"
    if profile not in PROFILES:
        raise ConfigError(
            f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)} "
            f"(choose it with --env or {PROFILE_VARIABLE})"
        )
    layers: list[tuple[str, Mapping[str, Any]]] = [
        (f"profile {profile}", _read_profile(profile)),
    ]
    if extra := env.get("RECLOOP_CONFIG"):
        layers.append((extra, _read_toml(Path(extra))))
    layers.append(("environment", _environment_layer(env)))

    values: dict[str, Any] = {"profile": profile}
    for source, layer in layers:
        _merge(values, layer, source)
    return _build(Settings, values, "")


def _read_profile(profile: str) -> dict[str, Any]:
    text = resources.files("app.profiles").joinpath(f"{profile}.toml").read_text()
    return tomllib.loads(text)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError as err:
        raise ConfigError(f"RECLOOP_CONFIG names {path}, which does not exist") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from err


def setting_paths(cls: type = Settings, prefix: SettingPath = ()) -> list[SettingPath]:
    """Every setting, as a path (the profile excluded: it selects, it is not set)."""
    paths: list[SettingPath] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            paths += setting_paths(hints[f.name], (*prefix, f.name))
        elif (*prefix, f.name) != ("profile",):
            paths.append((*prefix, f.name))
    return paths


def _environment_layer(env: Mapping[str, str]) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    for name, (section, key) in ENV_ALIASES.items():
        if env.get(name):
            layer.setdefault(section, {})[key] = env[name]
    known = {env_name(path): path for path in setting_paths()}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        if (path := known.get(name)) is None:
            dotted = name[len(ENV_PREFIX) :].lower().replace("__", ".")
            raise ConfigError(f"unknown setting {dotted} (environment variable {name})")
        target = layer
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    return layer


def _merge(into: dict[str, Any], layer: Mapping[str, Any], source: str) -> None:
    for key, value in layer.items():
        if isinstance(value, Mapping):
            existing = into.setdefault(key, {})
            if not isinstance(existing, dict):
                raise ConfigError(f"{source}: {key} is a value, not a section")
            _merge(existing, value, source)
        else:
            into[key] = value


def _build(cls: type, values: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        where = f"section [{prefix.rstrip('.')}]" if prefix else "the top level"
        raise ConfigError(f"unknown setting {prefix}{unknown[0]} in {where}")
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{prefix}{name} must be a section, got {value!r}")
            kwargs[name] = _build(typing.cast(type, hint), value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(f"{prefix}{name}", value, hint)
    return cls(**kwargs)


def _coerce(name: str, value: Any, hint: Any) -> Any:
    optional = isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)
    base = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    if optional and (value is None or value == ""):
        return None
    try:
        if base is bool:
            return _to_bool(value)
        if base is int and not isinstance(value, bool):
            return int(value)
        if base is float and not isinstance(value, bool):
            return float(value)
        if base is str and isinstance(value, str | int | float):
            return str(value)
    except ValueError:
        pass
    raise ConfigError(f"{name} must be {base.__name__}, got {value!r}")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError(value)
