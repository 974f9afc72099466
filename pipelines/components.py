"""KFP components: thin wrappers around app.loop.steps, built for one container image.

Each takes, by their PipelineParameters names, the pipeline parameters its step uses and
hands them on as one PipelineParameters (`PipelineParameters.pick(locals())`).

The image is the trainer image, which has recloop installed, so nothing is pip-installed
when a step runs (`install_kfp_package=False`). kfp.local runs the same components in
subprocesses of the installed environment.
"""

from dataclasses import dataclass
from typing import Any

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

DEFAULT_IMAGE = "recloop-trainer:local"


def generate(
    profile: str,
    project_id: str,
    bigquery_dataset_id: str,
    bigquery_location: str,
    raw_data_path: str,
    rank_k: int,
    num_actions: int,
    batch_size: int,
    driver_steps: int,
) -> int:
    from app.loop.parameters import PipelineParameters
    from app.loop.steps import run_generator

    return run_generator(parameters=PipelineParameters.pick(locals()))


def ingest(
    profile: str,
    project_id: str,
    bigquery_dataset_id: str,
    bigquery_location: str,
    bigquery_max_rows: int,
    rank_k: int,
    num_actions: int,
    gate_holdout_every: int,
    gate_corrupt_rewards: bool,
    agent: str,
    run_id: str,
    examples: Output[Dataset],
) -> int:
    from app.loop.parameters import PipelineParameters
    from app.loop.steps import run_ingester

    return run_ingester(
        output_dir=examples.path, parameters=PipelineParameters.pick(locals()), run_id=run_id
    )


def train(
    examples: Input[Dataset],
    profile: str,
    training_artifacts_dir: str,
    raw_data_path: str,
    rank_k: int,
    num_actions: int,
    batch_size: int,
    num_epochs: int,  # the sample's; linear agents update exactly in one pass (app.loop.offpolicy)
    tikhonov_weight: float,
    agent_alpha: float,
    best_hyperparameters: str,
    gate_holdout_every: int,
    gate_corrupt_rewards: bool,
    agent: str,
    training_loops: int,
    model: Output[Model],
) -> str:
    from app.loop.parameters import PipelineParameters
    from app.loop.steps import run_trainer

    return run_trainer(
        examples_dir=examples.path,
        policy_dir=model.path,
        parameters=PipelineParameters.pick(locals()),
    )


def evaluate(
    model: Input[Model],
    examples: Input[Dataset],
    profile: str,
    project_id: str,
    bigquery_dataset_id: str,
    bigquery_location: str,
    training_artifacts_dir: str,
    serving_exploration: str,
    serving_epsilon: float,
    serving_temperature: float,
    gate_estimator: str,
    gate_margin: float,
    gate_confidence: float,
    gate_holdout_every: int,
    gate_skip: bool,
    gate_canary_share: int,
    evaluation: Output[Artifact],
) -> str:
    from app.loop.parameters import PipelineParameters
    from app.loop.steps import run_evaluator

    return run_evaluator(
        policy_dir=model.path,
        examples_dir=examples.path,
        output_dir=evaluation.path,
        parameters=PipelineParameters.pick(locals()),
    )


def deploy(
    model: Input[Model],
    examples: Input[Dataset],
    decision: str,
    profile: str,
    training_artifacts_dir: str,
    project_id: str,
    region: str,
    bigquery_dataset_id: str,
    bigquery_location: str,
    endpoint: str,
    serving_image: str,
    predictor_service_account: str,
    predictor_machine_type: str,
    predictor_min_replicas: int,
    predictor_max_replicas: int,
    pubsub_project_id: str,
    prediction_logs_topic: str,
    gate_canary_share: int,
    gate_skip: bool,
) -> str:
    from app.loop.parameters import PipelineParameters
    from app.loop.steps import run_deployer

    return run_deployer(
        policy_dir=model.path,
        examples_dir=examples.path,
        parameters=PipelineParameters.pick(locals()),
        decision=decision,
    )


@dataclass(frozen=True)
class Components:
    generate: Any
    ingest: Any
    train: Any
    evaluate: Any
    deploy: Any


def build(image: str = DEFAULT_IMAGE) -> Components:
    component = dsl.component(base_image=image, install_kfp_package=False)
    return Components(
        component(generate),
        component(ingest),
        component(train),
        component(evaluate),
        component(deploy),
    )
