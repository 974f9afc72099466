"""KFP components: thin wrappers around app.loop.steps, built for one container image.

The image is the trainer image, which has recloop installed, so nothing is pip-installed
when a step runs (`install_kfp_package=False`). kfp.local runs the same components in
subprocesses of the installed environment.
"""

from dataclasses import dataclass
from typing import Any

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

DEFAULT_IMAGE = "recloop-trainer:local"


def generate(
    project_id: str,
    bigquery_dataset_id: str,
    bigquery_location: str,
    raw_data_path: str,
    rank_k: int,
    num_actions: int,
    batch_size: int,
    driver_steps: int,
) -> int:
    from app.loop.steps import run_generator

    return run_generator(
        project_id,
        bigquery_dataset_id,
        bigquery_location,
        raw_data_path,
        rank_k,
        num_actions,
        batch_size,
        driver_steps,
    )


def ingest(
    project_id: str,
    bigquery_dataset_id: str,
    bigquery_location: str,
    bigquery_max_rows: int,
    examples: Output[Dataset],
) -> str:
    from app.loop.steps import run_ingester

    return run_ingester(
        project_id, bigquery_dataset_id, bigquery_location, bigquery_max_rows, examples.path
    )


def train(
    examples: Input[Dataset],
    training_artifacts_dir: str,
    raw_data_path: str,
    rank_k: int,
    num_actions: int,
    batch_size: int,
    num_epochs: int,
    tikhonov_weight: float,
    agent_alpha: float,
    model: Output[Model],
) -> str:
    from app.loop.steps import run_trainer

    del num_epochs  # linear agents: one pass is exact (see app.loop.offpolicy)
    return run_trainer(
        examples.path,
        model.path,
        training_artifacts_dir,
        raw_data_path,
        rank_k,
        num_actions,
        batch_size,
        tikhonov_weight,
        agent_alpha,
    )


def deploy(
    model: Input[Model],
    examples: Input[Dataset],
    training_artifacts_dir: str,
    project_id: str,
    bigquery_dataset_id: str,
    bigquery_location: str,
    endpoint: str,
    serving_image: str,
    region: str,
) -> str:
    from app.loop.steps import run_deployer

    return run_deployer(
        model.path,
        examples.path,
        training_artifacts_dir,
        project_id,
        bigquery_dataset_id,
        bigquery_location,
        endpoint,
        serving_image,
        region,
    )


@dataclass(frozen=True)
class Components:
    generate: Any
    ingest: Any
    train: Any
    deploy: Any


def build(image: str = DEFAULT_IMAGE) -> Components:
    component = dsl.component(base_image=image, install_kfp_package=False)
    return Components(component(generate), component(ingest), component(train), component(deploy))
