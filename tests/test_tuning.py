import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from app.config import CloudConfig, Settings
from app.trainer.flags import TrainingArgs, parse_args
from app.trainer.run import run
from app.tuning import space
from app.tuning.local import tune
from app.tuning.vertex import VertexConfigError, build_tuning_job, run_tuning_job

SMALL = TrainingArgs(training_loops=20, rank_k=5, num_actions=10, progress=False)
CLOUD = CloudConfig(
    project_id="recloop-dev",
    region="europe-west4",
    staging_bucket="gs://recloop-dev-staging",
    trainer_image="europe-west4-docker.pkg.dev/recloop-dev/recloop/trainer@sha256:abc",
    machine_type="n1-standard-4",
)


@pytest.mark.parametrize("parameter", space.SEARCH_SPACE, ids=lambda p: p.name)
def test_every_tuned_name_is_a_trainer_flag_in_both_spellings(parameter: space.DoubleParameter):
    value = (parameter.low + parameter.high) / 2
    for spelling in (
        f"--{parameter.name}={value}",
        f"--{parameter.name.replace('_', '-')}={value}",
    ):
        assert getattr(parse_args([spelling]), parameter.name) == value


def test_local_tuning_writes_the_best_trial_and_training_uses_it(settings: Settings):
    result = tune(SMALL, settings, trials=4, parallel=2, progress=False)
    assert len(result.trials) == 4
    assert result.best_value == min(value for _, value in result.trials)
    written = json.loads(Path(result.best_path).read_text())
    assert written["hyperparameters"] == result.best
    trained = run(dataclasses.replace(SMALL, train_with_best_hyperparameters=True), settings)
    assert trained.args.agent_alpha == result.best["agent_alpha"]
    assert trained.args.tikhonov_weight == result.best["tikhonov_weight"]


def test_vertex_tuning_job_spec(mocker):
    init = mocker.patch("google.cloud.aiplatform.init")
    custom_job = mocker.patch("google.cloud.aiplatform.CustomJob")
    tuning_job = mocker.patch("google.cloud.aiplatform.HyperparameterTuningJob")
    args = dataclasses.replace(
        SMALL, data_path="gs://recloop-dev-data/ml-100k/u.data", agent="lints", agent_alpha=3.0
    )

    job = build_tuning_job(args, CLOUD, "recloop-tune-1", max_trials=12, parallel_trials=3)

    init.assert_called_once_with(
        project="recloop-dev", location="europe-west4", staging_bucket="gs://recloop-dev-staging"
    )
    custom_job.assert_called_once_with(
        display_name="recloop-tune-1-trial",
        worker_pool_specs=[
            {
                "machine_spec": {"machine_type": "n1-standard-4"},
                "replica_count": 1,
                "container_spec": {
                    "image_uri": CLOUD.trainer_image,
                    "command": ["python", "-m", "app.trainer"],
                    "args": [
                        "--data-path=gs://recloop-dev-data/ml-100k/u.data",
                        "--training-loops=20",
                        "--rank-k=5",
                        "--num-actions=10",
                        "--agent=lints",
                        "--no-progress",
                        "--run-hyperparameter-tuning",
                    ],
                },
            }
        ],
        staging_bucket="gs://recloop-dev-staging",
    )
    kwargs = tuning_job.call_args.kwargs
    assert kwargs["display_name"] == "recloop-tune-1"
    assert kwargs["custom_job"] is custom_job.return_value
    assert kwargs["metric_spec"] == {"final_regret": "minimize"}
    assert (kwargs["max_trial_count"], kwargs["parallel_trial_count"]) == (12, 3)
    specs = {name: (s.min, s.max, s.scale) for name, s in kwargs["parameter_spec"].items()}
    assert specs == {"agent_alpha": (0.1, 20.0, "log"), "tikhonov_weight": (1e-4, 10.0, "log")}
    assert job is tuning_job.return_value


def trial(alpha: float, tikhonov: float, regret: float | None) -> SimpleNamespace:
    metrics = [] if regret is None else [SimpleNamespace(metric_id="final_regret", value=regret)]
    return SimpleNamespace(
        parameters=[
            SimpleNamespace(parameter_id="agent_alpha", value=alpha),
            SimpleNamespace(parameter_id="tikhonov_weight", value=tikhonov),
        ],
        final_measurement=SimpleNamespace(metrics=metrics),
    )


def test_vertex_best_trial_reaches_the_trainer(mocker, settings: Settings):
    mocker.patch("google.cloud.aiplatform.init")
    mocker.patch("google.cloud.aiplatform.CustomJob")
    tuning_job = mocker.patch("google.cloud.aiplatform.HyperparameterTuningJob")
    tuning_job.return_value.trials = [
        trial(1.0, 0.1, 0.30),
        trial(4.5, 0.02, 0.12),
        trial(9.0, 1.0, None),
    ]

    Path(settings.artifacts_dir).mkdir(parents=True)
    path = run_tuning_job(SMALL, CLOUD, settings.artifacts_dir, "recloop-tune-2", 3, 3)

    tuning_job.return_value.run.assert_called_once_with(sync=True)
    assert json.loads(Path(path).read_text()) == {
        "hyperparameters": {"agent_alpha": 4.5, "tikhonov_weight": 0.02},
        "final_regret": 0.12,
    }
    trained = run(dataclasses.replace(SMALL, train_with_best_hyperparameters=True), settings)
    assert (trained.args.agent_alpha, trained.args.tikhonov_weight) == (4.5, 0.02)


@pytest.mark.parametrize("missing", ["project_id", "staging_bucket", "trainer_image"])
def test_vertex_tuning_names_missing_settings(missing: str):
    with pytest.raises(VertexConfigError, match=f"cloud.{missing} is not set"):
        build_tuning_job(SMALL, dataclasses.replace(CLOUD, **{missing: None}), "x", 1, 1)
