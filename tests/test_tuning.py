import dataclasses
import json
import os
import subprocess
from pathlib import Path

import pytest

from app.config import CloudConfig, Settings
from app.local.processes import PYTHON
from app.rehearsal.fakes import FakeVertex
from app.trainer.flags import TrainingArgs, parse_args
from app.trainer.run import run
from app.tuning import space
from app.tuning.local import tune
from app.tuning.vertex import build_tuning_job, run_tuning_job
from app.wiring import WiringError

SMALL = TrainingArgs(training_loops=20, rank_k=5, num_actions=10, progress=False)
CLOUD = Settings(
    cloud=CloudConfig(
        project_id="recloop-dev",
        region="europe-west4",
        staging_bucket="gs://recloop-dev-artifacts/staging",
        trainer_image="europe-west4-docker.pkg.dev/recloop-dev/recloop/trainer@sha256:abc",
        machine_type="n1-standard-4",
        pipelines_service_account="recloop-dev-pipelines@recloop-dev.iam.gserviceaccount.com",
    )
)


@pytest.fixture
def fake_vertex() -> FakeVertex:
    return FakeVertex(project="recloop-dev", location="europe-west4")


@pytest.mark.parametrize(
    "parameter", [*space.BANDIT_SPACE, *space.ACTOR_CRITIC_SPACE], ids=lambda p: p.name
)
def test_every_tuned_name_is_a_trainer_flag_in_both_spellings(parameter: space.DoubleParameter):
    value = (parameter.low + parameter.high) / 2
    for spelling in (
        f"--{parameter.name}={value}",
        f"--{parameter.name.replace('_', '-')}={value}",
    ):
        agent = "actor_critic" if parameter in space.ACTOR_CRITIC_SPACE else "linucb"
        assert getattr(parse_args([spelling, f"--agent={agent}"]), parameter.name) == value


def test_local_tuning_writes_the_best_trial_and_training_uses_it(settings: Settings):
    result = tune(SMALL, settings, trials=4, parallel=2, progress=False)
    assert len(result.trials) == 4
    assert result.best_value == min(value for _, value in result.trials)
    written = json.loads(Path(result.best_path).read_text())
    assert written["hyperparameters"] == result.best
    trained = run(dataclasses.replace(SMALL, train_with_best_hyperparameters=True), settings)
    assert trained.args.agent_alpha == result.best["agent_alpha"]
    assert trained.args.tikhonov_weight == result.best["tikhonov_weight"]


def test_vertex_tuning_job_request(fake_vertex):
    """What Vertex receives: the trainer image and flags, staging under the bucket, the
    pipelines account, the search space (request built by the real SDK)."""
    args = dataclasses.replace(
        SMALL, data_path="gs://recloop-dev-data/ml-100k/u.data", agent="lints", agent_alpha=3.0
    )
    with fake_vertex.install():
        build_tuning_job(args, CLOUD, "recloop-tune-1", max_trials=12, parallel_trials=3).run(
            service_account=CLOUD.cloud.pipelines_service_account, sync=True
        )

    (create,) = fake_vertex.sent("JobService/CreateHyperparameterTuningJob")
    job = create.hyperparameter_tuning_job
    assert create.parent == "projects/recloop-dev/locations/europe-west4"
    assert (job.display_name, job.max_trial_count, job.parallel_trial_count) == (
        "recloop-tune-1",
        12,
        3,
    )
    (pool,) = job.trial_job_spec.worker_pool_specs
    assert pool.machine_spec.machine_type == "n1-standard-4"
    assert pool.container_spec.image_uri == CLOUD.cloud.trainer_image
    assert list(pool.container_spec.command) == ["python", "-m", "app.trainer"]
    assert list(pool.container_spec.args) == [
        "--data-path=gs://recloop-dev-data/ml-100k/u.data",
        "--training-loops=20",
        "--rank-k=5",
        "--num-actions=10",
        "--agent=lints",
        "--no-progress",
        "--run-hyperparameter-tuning",
    ]
    assert job.trial_job_spec.service_account == CLOUD.cloud.pipelines_service_account
    assert job.trial_job_spec.base_output_directory.output_uri_prefix.startswith(
        "gs://recloop-dev-artifacts/staging/"
    )
    (metric,) = job.study_spec.metrics
    assert (metric.metric_id, metric.goal.name) == ("final_regret", "MINIMIZE")
    specs = {
        p.parameter_id: (
            p.double_value_spec.min_value,
            p.double_value_spec.max_value,
            p.scale_type.name,
        )
        for p in job.study_spec.parameters
    }
    assert specs == {
        "agent_alpha": (0.1, 20.0, "UNIT_LOG_SCALE"),
        "tikhonov_weight": (1e-4, 10.0, "UNIT_LOG_SCALE"),
    }


def test_vertex_best_trial_reaches_the_trainer(fake_vertex, settings: Settings):
    fake_vertex.tuning_trials = [
        ({"agent_alpha": 1.0, "tikhonov_weight": 0.1}, 0.30),
        ({"agent_alpha": 4.5, "tikhonov_weight": 0.02}, 0.12),
    ]
    Path(settings.artifacts_dir).mkdir(parents=True)
    with fake_vertex.install():
        path = run_tuning_job(SMALL, CLOUD, settings.artifacts_dir, "recloop-tune-2", 3, 3)

    assert json.loads(Path(path).read_text()) == {
        "agent": "linucb",
        "hyperparameters": {"agent_alpha": 4.5, "tikhonov_weight": 0.02},
        "final_regret": 0.12,
    }
    (create,) = fake_vertex.sent("JobService/CreateHyperparameterTuningJob")
    assert create.hyperparameter_tuning_job.trial_job_spec.service_account == (
        CLOUD.cloud.pipelines_service_account
    )
    trained = run(dataclasses.replace(SMALL, train_with_best_hyperparameters=True), settings)
    assert (trained.args.agent_alpha, trained.args.tikhonov_weight) == (4.5, 0.02)


@pytest.mark.parametrize("missing", ["project_id", "staging_bucket", "trainer_image"])
def test_vertex_tuning_names_missing_settings(missing: str):
    cloud = dataclasses.replace(CLOUD.cloud, **{missing: None})
    with pytest.raises(WiringError, match=f"cloud.{missing} \\(RECLOOP__CLOUD__{missing.upper()}"):
        build_tuning_job(SMALL, dataclasses.replace(CLOUD, cloud=cloud), "x", 1, 1)


def test_best_values_record_the_agent_and_yield_to_flags(movielens_dir: Path, tmp_path: Path):
    """Through `recloop tune --agent lints` then `recloop train`: the file records the agent
    and the values, which tuning prints; they are refused for LinUCB in one line; an explicit
    flag beats the tuned value; the values used are printed."""
    env = {**os.environ, "MOVIELENS_DIR": str(movielens_dir)}
    small = ["--artifacts-dir", str(tmp_path), "--no-progress", "--training-loops", "3"]
    small += ["--rank-k", "5", "--num-actions", "6"]
    tuned = subprocess.run(
        [PYTHON, "-m", "app.cli", "tune", "--trials", "2", "--parallel", "1", "--agent", "lints",
         *small],
        capture_output=True, text=True, env=env, timeout=180,
    )  # fmt: skip
    assert tuned.returncode == 0, tuned.stderr
    best = tmp_path / "best_hyperparameters.json"
    written = json.loads(best.read_text())
    assert written["agent"] == "lints"
    alpha, tikhonov = (written["hyperparameters"][k] for k in ("agent_alpha", "tikhonov_weight"))
    assert tuned.stdout.splitlines() == [
        f"best of 2 lints trials: agent_alpha={alpha:.4g}, tikhonov_weight={tikhonov:.4g} "
        f"(final regret {written['final_regret']:.4f}); written to {best}"
    ]
    train = [PYTHON, "-m", "app.cli", "train", *small, "--train-with-best-hyperparameters"]
    refused = subprocess.run(train, capture_output=True, text=True, env=env, timeout=120)
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert "tuned for --agent lints, not linucb" in line
    used = subprocess.run(
        [*train, "--agent", "lints", "--agent-alpha", "5"],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert used.returncode == 0, used.stderr
    assert (
        f"lints: agent_alpha=5, tikhonov_weight={tikhonov:.4g} (tuned: tikhonov_weight from"
        in used.stdout
    )
    meta = json.loads((tmp_path / "policy" / "recloop_policy.json").read_text())
    assert (meta["alpha"], meta["tikhonov_weight"]) == (5.0, tikhonov)


def test_pipelines_take_best_hyperparameters(tmp_path: Path):
    """The pipelines look for the tuned values where `recloop tune` writes them; `recloop
    pipeline run` prints them, and refuses values tuned for another agent in one line (the
    file it found, or the one it was given)."""
    from app.loop.parameters import STARTUP, PipelineParameters

    artifacts = tmp_path / "artifacts"
    values = PipelineParameters.from_settings(Settings(artifacts_dir=str(artifacts)))
    assert (
        values.values(STARTUP)["best_hyperparameters"] == f"{artifacts}/best_hyperparameters.json"
    )
    artifacts.mkdir()
    best = artifacts / "best_hyperparameters.json"
    best.write_text(space.dumps_best("lints", {"agent_alpha": 0.5, "tikhonov_weight": 3.0}, 0.1))
    env = {**os.environ, "RECLOOP__ARTIFACTS_DIR": str(artifacts)}
    pipeline = [PYTHON, "-m", "app.cli", "pipeline", "run", "startup"]
    for given in ([], ["--best-hyperparameters", str(best)]):
        refused = subprocess.run(
            [*pipeline, *given], capture_output=True, text=True, env=env, timeout=120
        )
        assert refused.returncode == 2
        (line,) = refused.stderr.strip().splitlines()
        assert f"{best} was tuned for --agent lints, not linucb" in line
    missing = subprocess.run(
        [*pipeline, "--best-hyperparameters", str(tmp_path / "none.json")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert missing.returncode == 2
    assert (
        missing.stderr.strip()
        == f"error: --best-hyperparameters: {tmp_path}/none.json does not exist"
    )


def test_the_trainer_step_trains_with_the_tuned_values(
    movielens_dir: Path, tmp_path: Path, monkeypatch
):
    """The Trainer step of both pipelines, on real files: the tuned values when the file
    exists, the parameters' otherwise, and a file tuned for another agent is refused."""
    from app.loop.parameters import PipelineParameters
    from app.loop.steps import run_generator, run_ingester, run_trainer
    from app.policy_store import read_metadata

    monkeypatch.chdir(tmp_path)  # the local warehouse and state
    monkeypatch.setenv("RECLOOP__DATA__MOVIELENS_DIR", str(movielens_dir))
    best = tmp_path / "artifacts" / "best_hyperparameters.json"
    parameters = PipelineParameters(
        training_artifacts_dir=str(tmp_path / "artifacts"),
        rank_k=5,
        num_actions=10,
        driver_steps=4,
        agent_alpha=2.0,
        tikhonov_weight=0.7,
        best_hyperparameters=str(best),
    )
    run_generator(parameters=parameters)
    run_ingester(output_dir=str(tmp_path / "examples"), parameters=parameters, run_id="r1")

    def trained(folder: str) -> tuple[float, float]:
        policy = tmp_path / folder
        run_trainer(
            examples_dir=str(tmp_path / "examples"), policy_dir=str(policy), parameters=parameters
        )
        meta = read_metadata(str(policy))
        return meta.alpha, meta.tikhonov_weight

    assert trained("untuned") == (2.0, 0.7)
    best.parent.mkdir(exist_ok=True)
    best.write_text(space.dumps_best("linucb", {"agent_alpha": 0.5, "tikhonov_weight": 3.0}, 0.1))
    assert trained("tuned") == (0.5, 3.0)
    best.write_text(space.dumps_best("lints", {"agent_alpha": 0.5, "tikhonov_weight": 3.0}, 0.1))
    with pytest.raises(ValueError, match="tuned for --agent lints, not linucb"):
        trained("refused")
