"""The pipeline steps as plain functions of plain parameters.

KFP components (pipelines/components.py) are thin wrappers around these, so every step
runs the same code under kfp.local, on Vertex Pipelines, and in tests. An empty
`project_id` selects the local counterparts: the DuckDB warehouse and local folders.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from app import movielens
from app.agents import AgentSpec
from app.config import Settings, WarehouseConfig, load_settings
from app.deployer import local
from app.environment import MovieLensBandit, factorize
from app.loop import generator, ingester, offpolicy
from app.policy_store import join
from app.warehouse.base import Warehouse
from app.warehouse.factory import open_warehouse
from app.warehouse.records import TrainingRunRecord

POLICIES = "policies"


def context(project_id: str, dataset: str, location: str) -> tuple[Settings, Warehouse]:
    settings = load_settings()
    if project_id:
        cloud = dataclasses.replace(settings.cloud, project_id=project_id)
        warehouse = WarehouseConfig(backend="bigquery", dataset=dataset, location=location)
        settings = dataclasses.replace(settings, cloud=cloud, warehouse=warehouse)
    return settings, open_warehouse(settings)


def _ratings(settings: Settings, raw_data_path: str) -> movielens.MovieLensFiles:
    return movielens.locate(
        raw_data_path or None,
        settings.data.movielens_dir,
        settings.data.cache_dir,
        settings.data.download,
    )


def run_generator(
    project_id: str,
    dataset: str,
    location: str,
    raw_data_path: str,
    rank_k: int,
    num_actions: int,
    batch_size: int,
    driver_steps: int,
    seed: int = 0,
) -> int:
    settings, warehouse = context(project_id, dataset, location)
    warehouse.ensure_tables()
    ratings = movielens.load_ratings_matrix(_ratings(settings, raw_data_path).ratings)
    env = MovieLensBandit(factorize(ratings, rank_k, num_actions), batch_size, seed)
    return generator.generate(env, warehouse, driver_steps, seed)


def run_ingester(
    project_id: str, dataset: str, location: str, max_rows: int, output_dir: str
) -> str:
    _, warehouse = context(project_id, dataset, location)
    return ingester.ingest(warehouse, output_dir, max_rows).watermark


def run_trainer(
    examples_dir: str,
    policy_dir: str,
    training_artifacts_dir: str,
    raw_data_path: str,
    rank_k: int,
    num_actions: int,
    batch_size: int,
    tikhonov_weight: float,
    agent_alpha: float,
    agent: str = "linucb",
) -> str:
    settings = load_settings()
    policies = join(training_artifacts_dir, POLICIES)
    warm_start = local.resolve(policies) if local.current_version(policies) else None
    files = _ratings(settings, raw_data_path)
    spec = AgentSpec(agent, num_actions, rank_k, agent_alpha, tikhonov_weight)
    result = offpolicy.train_offline(
        examples_dir,
        policy_dir,
        spec,
        batch_size,
        warm_start,
        movielens.load_titles(files.items, num_actions),
    )
    return result.policy_version


def run_deployer(
    policy_dir: str,
    examples_dir: str,
    training_artifacts_dir: str,
    project_id: str,
    dataset: str,
    location: str,
    endpoint: str = "",
    serving_image: str = "",
    region: str = "",
) -> str:
    """Publishes the policy under <training_artifacts_dir>/policies (the pointer the local
    predictor follows), on Vertex AI when an endpoint is given, then records the run."""
    settings, warehouse = context(project_id, dataset, location)
    policies = join(training_artifacts_dir, POLICIES)
    version = local.deploy(policy_dir, policies)
    if endpoint:
        from app.deployer import vertex

        target = vertex.VertexTarget(
            project_id=project_id,
            region=region or settings.cloud.region,
            endpoint=endpoint,
            model_display_name="recloop-policy",
            serving_image=serving_image,
        )
        vertex.deploy(join(policies, version), version, target, settings.serving)
    manifest = ingester.read_manifest(examples_dir)
    warehouse.record_training_run(
        TrainingRunRecord(
            policy_version=version,
            time=datetime.now(UTC),
            watermark=datetime.fromisoformat(manifest.watermark) if manifest.watermark else None,
            examples=manifest.examples,
            policy_uri=join(policies, version),
        )
    )
    return version
