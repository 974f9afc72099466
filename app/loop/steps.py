"""The pipeline steps as plain functions of plain parameters.

KFP components (pipelines/components.py) are thin wrappers around these, so every step
runs the same code under kfp.local, on Vertex Pipelines, and in tests. The `profile`
parameter selects the warehouse: local, DuckDB and local folders; dev/prod, BigQuery.
"""

from __future__ import annotations

from datetime import UTC, datetime

from app import movielens, wiring
from app.agents import AgentSpec
from app.config import Settings
from app.deployer import local
from app.environment import MovieLensBandit, factorize
from app.loop import generator, ingester, offpolicy
from app.loop.parameters import PipelineParameters
from app.policy_store import join
from app.warehouse.base import Warehouse
from app.warehouse.factory import open_warehouse
from app.warehouse.records import TrainingRunRecord

POLICIES = "policies"


def step_settings(parameters: PipelineParameters) -> Settings:
    """The step's settings from its parameters; in a cloud profile, everything the pipeline
    steps need must be there (wiring.PIPELINES), or the step fails naming what is missing."""
    return wiring.require_in_cloud(parameters.settings(), wiring.PIPELINES)


def context(parameters: PipelineParameters) -> tuple[Settings, Warehouse]:
    settings = step_settings(parameters)
    return settings, open_warehouse(settings)


def _ratings(settings: Settings, raw_data_path: str) -> movielens.MovieLensFiles:
    return movielens.locate(
        raw_data_path or None,
        settings.data.movielens_dir,
        settings.data.cache_dir,
        settings.data.download,
    )


def run_generator(*, parameters: PipelineParameters, seed: int = 0) -> int:
    """Writes the first random interactions. The tables must exist: DuckDB creates its own;
    in BigQuery infra creates them and this only checks (tests/test_warehouse.py)."""
    p = parameters
    settings, warehouse = context(p)
    warehouse.ensure_tables()
    ratings = movielens.load_ratings_matrix(_ratings(settings, p.raw_data_path).ratings)
    env = MovieLensBandit(factorize(ratings, p.rank_k, p.num_actions), p.batch_size, seed)
    return generator.generate(env, warehouse, p.driver_steps, seed)


def run_ingester(*, output_dir: str, parameters: PipelineParameters) -> str:
    _, warehouse = context(parameters)
    return ingester.ingest(warehouse, output_dir, parameters.bigquery_max_rows).watermark


def run_trainer(
    *, examples_dir: str, policy_dir: str, parameters: PipelineParameters, agent: str = "linucb"
) -> str:
    p = parameters
    settings = step_settings(p)
    policies = join(p.training_artifacts_dir, POLICIES)
    warm_start = local.resolve(policies) if local.current_version(policies) else None
    files = _ratings(settings, p.raw_data_path)
    spec = AgentSpec(agent, p.num_actions, p.rank_k, p.agent_alpha, p.tikhonov_weight)
    result = offpolicy.train_offline(
        examples_dir,
        policy_dir,
        spec,
        p.batch_size,
        warm_start,
        movielens.load_titles(files.items, p.num_actions),
    )
    return result.policy_version


def run_deployer(*, policy_dir: str, examples_dir: str, parameters: PipelineParameters) -> str:
    """Publishes the policy under <training_artifacts_dir>/policies (the pointer the local
    predictor follows), on Vertex AI when an endpoint is configured, then records the run."""
    settings, warehouse = context(parameters)
    policies = join(parameters.training_artifacts_dir, POLICIES)
    version = local.deploy(policy_dir, policies)
    if settings.loop.vertex_endpoint:
        from app.deployer import vertex

        vertex.deploy(join(policies, version), version, settings)
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
