"""The pipeline steps as plain functions of plain parameters.

KFP components (pipelines/components.py) are thin wrappers around these, so every step
runs the same code under kfp.local, on Vertex Pipelines, and in tests. The `profile`
parameter selects the warehouse: local, DuckDB and local folders; dev/prod, BigQuery.
"""

from __future__ import annotations

from datetime import UTC, datetime

from app import movielens, publish, wiring
from app.agents import ACTOR_CRITIC, LINEAR_AGENTS, AgentSpec
from app.config import Settings
from app.deployer import canary, pointer
from app.environment import MovieLensBandit, factorize
from app.evaluation.gate import PROMOTED
from app.loop import evaluator, generator, ingester, offpolicy
from app.loop.parameters import PipelineParameters
from app.paths import join
from app.policy_store import DEPLOYED_DIR, read_metadata
from app.warehouse.base import Warehouse
from app.warehouse.factory import open_warehouse
from app.warehouse.records import TrainingRunRecord

POLICIES = DEPLOYED_DIR


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


def run_ingester(*, output_dir: str, parameters: PipelineParameters, run_id: str) -> int:
    """Claims the run's examples in the ledger; for linear agents the warehouse sums them into
    the agent's statistics (one SQL aggregation), for the others they are written as
    TFRecords. Returns how many the run claimed. The actor-critic does not learn from them
    (they are single-movie bandit logs), but they are claimed all the same, so the ledger, the
    Evaluator's hold-out and the commit work as for any run."""
    p = parameters
    settings, warehouse = context(p)
    summed = (*LINEAR_AGENTS, ACTOR_CRITIC)  # the cheap form for the agent that ignores them
    form = ingester.STATISTICS if p.agent in summed else ingester.RECORDS
    result = ingester.ingest(
        warehouse,
        output_dir,
        run_id,
        p.bigquery_max_rows,
        p.rank_k,
        p.num_actions,
        form,
        holdout_every=settings.gate.holdout_every,
        corrupt_rewards=settings.gate.corrupt_rewards,
    )
    return result.examples


def run_trainer(*, examples_dir: str, policy_dir: str, parameters: PipelineParameters) -> str:
    """Warm-starts from the policy of the last *committed* run (named in the Ingester's
    manifest), never from the served pointer, so a publish that failed halfway is never
    counted twice (tests/test_ledger.py::test_publish_fault_then_restart). A per-arm warm
    start (its metadata, the one source of that fact) trains a per-arm policy of its shapes,
    with its catalogue (tests/test_per_arm_offpolicy.py).

    `agent` actor_critic trains from the slate environment built from the MovieLens ratings
    (`raw_data_path`), from scratch each run: recloop logs single-movie bandit interactions,
    not slates, so there is no logged slate replay to learn from
    (tests/test_slate_pipeline.py::test_the_trainer_step_trains_the_actor_critic). It takes
    `best_hyperparameters` as the bandits do (refused if tuned for another agent;
    tests/test_slate_pipeline.py::test_the_actor_critic_trainer_step_takes_tuned_values)."""
    p = parameters
    settings = step_settings(p)
    manifest = ingester.read_manifest(examples_dir)
    if manifest.committed_version:  # a restart after the commit: nothing to train
        return manifest.committed_version
    version = publish.version_for_run(manifest.run_id)
    if p.agent == ACTOR_CRITIC:
        from app.slate.trainer import train_and_save
        from app.tuning.space import read_best

        tuned = read_best(p.best_hyperparameters, p.agent) if p.best_hyperparameters else None
        return train_and_save(
            p.raw_data_path or None,
            p.batch_size,
            p.training_loops,
            policy_dir,
            version,
            settings,
            tuned,
        )
    alpha, tikhonov = tuned_values(p, p.agent)
    warm = read_metadata(manifest.warm_start) if manifest.warm_start else None
    if warm is not None and ingester.continues_per_arm(warm):  # its catalogue: the titles
        spec = AgentSpec(p.agent, warm.num_actions, warm.rank_k, alpha, tikhonov, per_arm=True)
        titles: list[str] = []
    else:
        spec = AgentSpec(p.agent, p.num_actions, p.rank_k, alpha, tikhonov)
        titles = movielens.load_titles(_ratings(settings, p.raw_data_path).items, p.num_actions)
    result = offpolicy.train_offline(
        examples_dir,
        policy_dir,
        spec,
        p.batch_size,
        manifest.warm_start or None,
        titles,
        version,
        holdout_every=settings.gate.holdout_every,
        corrupt_rewards=settings.gate.corrupt_rewards,
    )
    return result.policy_version


def tuned_values(parameters: PipelineParameters, agent: str) -> tuple[float, float]:
    """(agent_alpha, tikhonov_weight): from `best_hyperparameters` when that file exists
    (a ValueError names it if it was tuned for another agent), else the parameters'.
    Proved by tests/test_tuning.py::test_the_trainer_step_trains_with_the_tuned_values."""
    from app.tuning.space import read_best

    p = parameters
    tuned = read_best(p.best_hyperparameters, agent) if p.best_hyperparameters else None
    if tuned is None:
        print(
            f"training {agent} with agent_alpha={p.agent_alpha:.4g}, "
            f"tikhonov_weight={p.tikhonov_weight:.4g} (no tuned values)"
        )
        return p.agent_alpha, p.tikhonov_weight
    print(
        f"training {agent} with agent_alpha={tuned['agent_alpha']:.4g}, "
        f"tikhonov_weight={tuned['tikhonov_weight']:.4g} from {p.best_hyperparameters}"
    )
    return tuned["agent_alpha"], tuned["tikhonov_weight"]


def run_evaluator(
    *, policy_dir: str, examples_dir: str, output_dir: str, parameters: PipelineParameters
) -> str:
    """The gate: promoted or blocked, recorded with its numbers (warehouse `promotions`,
    <output_dir>/decision.json); a restart after the commit is promoted (it was already)."""
    settings, warehouse = context(parameters)
    manifest = ingester.read_manifest(examples_dir)
    if manifest.committed_version:
        return PROMOTED
    policies = join(parameters.training_artifacts_dir, POLICIES)
    return evaluator.evaluate(
        settings, warehouse, manifest, policy_dir, policies, output_dir
    ).decision


def run_deployer(
    *, policy_dir: str, examples_dir: str, parameters: PipelineParameters, decision: str = PROMOTED
) -> str:
    """Publishes the run's policy, if the Evaluator promoted it (else the serving policy
    stays, nothing is committed, and the run's examples stay for the next run), in one step
    that completes or changes nothing served:

    1. stage the policy under <training_artifacts_dir>/policies/<version> (idempotent);
    2. commit ledger + run record in one warehouse transaction (the commit point; a run that
       lost its parent or its examples to another run fails here, changing nothing);
    3. roll forward, if this run is still the latest committed: CURRENT → version, then the
       Vertex AI endpoint. Re-running the step after any failure completes steps 2 and 3.

    tests/test_ledger.py::test_publish_fault_then_restart injects a failure at each point.
    """
    settings, warehouse = context(parameters)
    policies = join(parameters.training_artifacts_dir, POLICIES)
    if decision != PROMOTED:
        return pointer.current_version(policies) or ""
    manifest = ingester.read_manifest(examples_dir)
    run = warehouse.find_run(manifest.run_id)
    if run is None:
        version = pointer.stage(policy_dir, policies)
        run = TrainingRunRecord(
            run_id=manifest.run_id,
            policy_version=version,
            parent_run_id=manifest.parent_run_id or None,
            time=None,
            examples=manifest.examples,
            rank_k=manifest.rank_k,
            num_actions=manifest.num_actions,
            policy_uri=join(policies, version),
        )
        share = settings.gate.canary_share
        if share and pointer.current_version(policies):
            # A canary first (app/deployer/canary.py): committed only if it wins online.
            if (opened := canary.read(policies)) is None or opened.version != version:
                canary.start(policies, run, share, settings, datetime.now(UTC))
            return version
        warehouse.commit(run)
    latest = warehouse.latest_run()
    if latest is None or latest.run_id != run.run_id:
        return run.policy_version  # a newer run committed; it publishes its own policy
    pointer.point(policies, run.policy_version)
    if settings.loop.vertex_endpoint:
        from app.deployer import vertex

        vertex.deploy(run.policy_uri, run.policy_version, settings)
    return run.policy_version
