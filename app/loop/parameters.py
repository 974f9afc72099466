"""The pipelines' parameters, declared once.

Both pipeline signatures are generated from these fields (pipelines/definitions.py), the
components take them by these names, the Trigger and `pipelines.run` build them from the
settings (`from_settings`), and a step turns them back into settings (`settings`). A field
with a `setting` is that setting carried across the pipeline boundary; the others belong to
the pipeline only. Names are the Vertex sample's where it has them.

Proved by tests/test_pipelines.py (compiled signatures, kfp.local run) and
tests/test_vertex_requests.py (the Trigger's job request matches the compiled template).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from app.agents import LINUCB
from app.config import SettingPath, Settings, env_name, env_value, load_settings, lookup
from app.hyperparameters import DEFAULTS, TRAINING_LOOPS, best_hyperparameters_path

STARTUP = "recloop-startup"
RETRAINING = "recloop-retraining"
STARTUP_ONLY = ("driver_steps",)  # parameters the re-training pipeline does not take


def _carries(path: SettingPath, default: Any) -> Any:
    return field(default=default, metadata={"setting": path})


def _carries_default(path: SettingPath) -> Any:
    """A carried setting whose default is the setting's own default (app/config.py)."""
    return _carries(path, lookup(Settings(), path))


@dataclass(frozen=True)
class PipelineParameters:
    profile: str = _carries(("profile",), "local")
    project_id: str = _carries(("cloud", "project_id"), "")
    region: str = _carries(("cloud", "region"), "")
    raw_data_path: str = ""
    training_artifacts_dir: str = _carries_default(("artifacts_dir",))
    bigquery_dataset_id: str = _carries_default(("warehouse", "dataset"))
    bigquery_location: str = _carries_default(("warehouse", "location"))
    bigquery_max_rows: int = 10000
    batch_size: int = DEFAULTS.batch_size
    rank_k: int = _carries_default(("loop", "rank_k"))
    num_actions: int = _carries_default(("loop", "num_actions"))
    driver_steps: int = 3  # start-up pipeline only
    # The Trainer's agent: a linear bandit (linucb, lints) learns from the claimed logged
    # examples; actor_critic trains on the slate environment for `training_loops` batches of
    # `batch_size` users' episodes (app/slate/trainer.py).
    agent: str = LINUCB
    training_loops: int = TRAINING_LOOPS
    num_epochs: int = 5
    tikhonov_weight: float = _carries_default(("loop", "tikhonov_weight"))
    agent_alpha: float = _carries_default(("loop", "agent_alpha"))
    # A best_hyperparameters.json of `recloop tune`: when the file exists, the Trainer trains
    # with its values instead of agent_alpha and tikhonov_weight (refused if tuned for another
    # agent); "" trains with those two. `from_settings` names the one in the artifacts dir.
    best_hyperparameters: str = ""
    endpoint: str = _carries(("loop", "vertex_endpoint"), "")
    serving_image: str = _carries(("cloud", "serving_image"), "")
    predictor_service_account: str = _carries(("cloud", "predictor_service_account"), "")
    predictor_machine_type: str = _carries_default(("cloud", "predictor_machine_type"))
    predictor_min_replicas: int = _carries_default(("cloud", "predictor_min_replicas"))
    predictor_max_replicas: int = _carries_default(("cloud", "predictor_max_replicas"))
    pubsub_project_id: str = _carries(("pubsub", "project_id"), "")
    prediction_logs_topic: str = _carries(("pubsub", "prediction_logs_topic"), "")
    # The Evaluator judges candidates as they will be served (app/evaluation/gate.py).
    serving_exploration: str = _carries_default(("serving", "exploration"))
    serving_epsilon: float = _carries_default(("serving", "epsilon"))
    serving_temperature: float = _carries_default(("serving", "temperature"))
    gate_estimator: str = _carries_default(("gate", "estimator"))
    gate_margin: float = _carries_default(("gate", "margin"))
    gate_confidence: float = _carries_default(("gate", "confidence"))
    gate_holdout_every: int = _carries_default(("gate", "holdout_every"))
    gate_skip: bool = _carries_default(("gate", "skip"))
    gate_canary_share: int = _carries_default(("gate", "canary_share"))
    gate_corrupt_rewards: bool = _carries_default(("gate", "corrupt_rewards"))

    @classmethod
    def from_settings(cls, settings: Settings, **pipeline_only: Any) -> PipelineParameters:
        """Every carried setting from `settings` (unset: ""), the rest from `pipeline_only`;
        the tuned values are looked for where `recloop tune` writes them."""
        carried = {
            f.name: _plain(lookup(settings, f.metadata["setting"]))
            for f in dataclasses.fields(cls)
            if "setting" in f.metadata
        }
        tuned = {"best_hyperparameters": best_hyperparameters_path(settings.artifacts_dir)}
        return cls(**carried, **{**tuned, **pipeline_only})

    @classmethod
    def pick(cls, names: dict[str, Any]) -> PipelineParameters:
        """A component's own arguments (`locals()` at its start) as parameters."""
        return cls(**{k: v for k, v in names.items() if k in FIELDS})

    def values(self, pipeline: str) -> dict[str, Any]:
        """The parameter values `pipeline` (STARTUP or RETRAINING) takes."""
        values = dataclasses.asdict(self)
        if pipeline != STARTUP:
            for name in STARTUP_ONLY:
                del values[name]
        return values

    def settings(self) -> Settings:
        """The settings a step runs with: its profile, the process environment, and the
        carried settings laid over them (a parameter left empty keeps the profile's value)."""
        overrides = {
            env_name(f.metadata["setting"]): env_value(value)
            for f in dataclasses.fields(self)
            if "setting" in f.metadata
            and f.name != "profile"
            and (value := getattr(self, f.name)) != ""
        }
        return load_settings(self.profile, overrides=overrides)


def _plain(value: Any) -> Any:
    return "" if value is None else value


FIELDS = tuple(f.name for f in dataclasses.fields(PipelineParameters))
