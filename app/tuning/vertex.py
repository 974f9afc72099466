"""The same search space as a Vertex AI HyperparameterTuningJob, built with the Vertex SDK."""

from __future__ import annotations

from typing import Any

from app import wiring
from app.config import Settings
from app.paths import join
from app.trainer.flags import TrainingArgs, to_argv
from app.tuning import space

TRAINER_COMMAND = ["python", "-m", "app.trainer"]


def trial_args(args: TrainingArgs) -> list[str]:
    """Trainer flags for every trial; Vertex appends `--<parameter>=value` for tuned ones."""
    tuned = [p.name for p in space.search_space(args.agent)]
    return [
        *to_argv(args, exclude=[*tuned, "progress", "run_hyperparameter_tuning"]),
        "--no-progress",
        "--run-hyperparameter-tuning",
    ]


def build_tuning_job(
    args: TrainingArgs, settings: Settings, display_name: str, max_trials: int, parallel_trials: int
) -> Any:
    """The job, staged in `cloud.staging_bucket`, trials in `cloud.trainer_image`: both, like
    the account it runs as, from the environment the app stack outputs (wiring.TRAINER)."""
    from google.cloud import aiplatform
    from google.cloud.aiplatform import hyperparameter_tuning as hpt

    cloud = wiring.require(settings, wiring.TRAINER).cloud
    aiplatform.init(
        project=cloud.project_id, location=cloud.region, staging_bucket=cloud.staging_bucket
    )
    custom_job = aiplatform.CustomJob(
        display_name=f"{display_name}-trial",
        worker_pool_specs=[
            {
                "machine_spec": {"machine_type": cloud.machine_type},
                "replica_count": 1,
                "container_spec": {
                    "image_uri": cloud.trainer_image,
                    "command": TRAINER_COMMAND,
                    "args": trial_args(args),
                },
            }
        ],
        staging_bucket=cloud.staging_bucket,
    )
    return aiplatform.HyperparameterTuningJob(
        display_name=display_name,
        custom_job=custom_job,
        metric_spec={space.METRIC: space.GOAL},
        parameter_spec={
            p.name: hpt.DoubleParameterSpec(
                min=p.low, max=p.high, scale="log" if p.log_scale else "linear"
            )
            for p in space.search_space(args.agent)
        },
        max_trial_count=max_trials,
        parallel_trial_count=parallel_trials,
    )


def best_trial(trials: list[Any]) -> tuple[dict[str, float], float]:
    """The finished trial with the lowest objective, as {parameter_id: value}."""
    scored = []
    for trial in trials:
        measurement = getattr(trial, "final_measurement", None)
        metrics = {m.metric_id: m.value for m in measurement.metrics} if measurement else {}
        if space.METRIC in metrics:
            scored.append(
                (metrics[space.METRIC], {p.parameter_id: float(p.value) for p in trial.parameters})
            )
    if not scored:
        raise RuntimeError(f"no tuning trial reported {space.METRIC}")
    value, params = min(scored, key=lambda item: item[0])
    return params, float(value)


def run_tuning_job(
    args: TrainingArgs,
    settings: Settings,
    artifacts_dir: str,
    display_name: str,
    max_trials: int,
    parallel_trials: int,
) -> str:
    """Runs the job and writes the winner where `--train-with-best-hyperparameters` reads it."""
    import tensorflow as tf

    job = build_tuning_job(args, settings, display_name, max_trials, parallel_trials)
    job.run(service_account=settings.cloud.pipelines_service_account, sync=True)
    params, value = best_trial(list(job.trials))
    path = join(artifacts_dir, space.BEST_FILE)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(space.dumps_best(args.agent, params, value))
    return path
