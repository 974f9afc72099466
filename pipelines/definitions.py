"""The start-up (Generator → Ingester → Trainer → Deployer) and re-training
(Ingester → Trainer → Deployer) pipelines, with the Vertex sample's parameters and defaults."""

from dataclasses import dataclass
from typing import Any

from kfp import dsl

from pipelines.components import DEFAULT_IMAGE, build

STARTUP = "recloop-startup"
RETRAINING = "recloop-retraining"


@dataclass(frozen=True)
class Pipelines:
    startup: Any
    retraining: Any


def build_pipelines(image: str = DEFAULT_IMAGE) -> Pipelines:
    ops = build(image)

    def train_and_deploy(
        ingested: Any,
        project_id: str,
        raw_data_path: str,
        training_artifacts_dir: str,
        bigquery_dataset_id: str,
        bigquery_location: str,
        batch_size: int,
        rank_k: int,
        num_actions: int,
        num_epochs: int,
        tikhonov_weight: float,
        agent_alpha: float,
        endpoint: str,
        serving_image: str,
        region: str,
    ) -> None:
        trained = ops.train(
            examples=ingested.outputs["examples"],
            training_artifacts_dir=training_artifacts_dir,
            raw_data_path=raw_data_path,
            rank_k=rank_k,
            num_actions=num_actions,
            batch_size=batch_size,
            num_epochs=num_epochs,
            tikhonov_weight=tikhonov_weight,
            agent_alpha=agent_alpha,
        )
        ops.deploy(
            model=trained.outputs["model"],
            examples=ingested.outputs["examples"],
            training_artifacts_dir=training_artifacts_dir,
            project_id=project_id,
            bigquery_dataset_id=bigquery_dataset_id,
            bigquery_location=bigquery_location,
            endpoint=endpoint,
            serving_image=serving_image,
            region=region,
        )

    @dsl.pipeline(name=STARTUP, description="Generator → Ingester → Trainer → Deployer")
    def startup(
        project_id: str = "",
        raw_data_path: str = "",
        training_artifacts_dir: str = ".recloop/artifacts",
        bigquery_dataset_id: str = "recloop",
        bigquery_location: str = "US",
        bigquery_max_rows: int = 10000,
        batch_size: int = 8,
        rank_k: int = 20,
        num_actions: int = 20,
        driver_steps: int = 3,
        num_epochs: int = 5,
        tikhonov_weight: float = 0.01,
        agent_alpha: float = 10.0,
        endpoint: str = "",
        serving_image: str = "",
        region: str = "",
    ) -> None:
        generated = ops.generate(
            project_id=project_id,
            bigquery_dataset_id=bigquery_dataset_id,
            bigquery_location=bigquery_location,
            raw_data_path=raw_data_path,
            rank_k=rank_k,
            num_actions=num_actions,
            batch_size=batch_size,
            driver_steps=driver_steps,
        )
        ingested = ops.ingest(
            project_id=project_id,
            bigquery_dataset_id=bigquery_dataset_id,
            bigquery_location=bigquery_location,
            bigquery_max_rows=bigquery_max_rows,
        ).after(generated)
        train_and_deploy(
            ingested,
            project_id,
            raw_data_path,
            training_artifacts_dir,
            bigquery_dataset_id,
            bigquery_location,
            batch_size,
            rank_k,
            num_actions,
            num_epochs,
            tikhonov_weight,
            agent_alpha,
            endpoint,
            serving_image,
            region,
        )

    @dsl.pipeline(name=RETRAINING, description="Ingester → Trainer → Deployer")
    def retraining(
        project_id: str = "",
        raw_data_path: str = "",
        training_artifacts_dir: str = ".recloop/artifacts",
        bigquery_dataset_id: str = "recloop",
        bigquery_location: str = "US",
        bigquery_max_rows: int = 10000,
        batch_size: int = 8,
        rank_k: int = 20,
        num_actions: int = 20,
        num_epochs: int = 5,
        tikhonov_weight: float = 0.01,
        agent_alpha: float = 10.0,
        endpoint: str = "",
        serving_image: str = "",
        region: str = "",
    ) -> None:
        ingested = ops.ingest(
            project_id=project_id,
            bigquery_dataset_id=bigquery_dataset_id,
            bigquery_location=bigquery_location,
            bigquery_max_rows=bigquery_max_rows,
        )
        train_and_deploy(
            ingested,
            project_id,
            raw_data_path,
            training_artifacts_dir,
            bigquery_dataset_id,
            bigquery_location,
            batch_size,
            rank_k,
            num_actions,
            num_epochs,
            tikhonov_weight,
            agent_alpha,
            endpoint,
            serving_image,
            region,
        )

    return Pipelines(startup, retraining)
