"""The list-wise actor-critic as an agent of recloop's trainer (`recloop train --agent
actor_critic`, `python -m app.trainer`), its tuning space and its regret, on synthetic ratings."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from app.config import DataConfig, Settings, VertexJobConfig
from app.hyperparameters import ACTOR_CRITIC_DEFAULTS
from app.policy_store import read_metadata
from app.rehearsal.fakes import FakeVertex
from app.slate import run as slate_run
from app.slate.actor_critic import ActorCriticConfig
from app.slate.baselines import RandomSlates
from app.slate.environment import SlateEnvironment
from app.trainer.__main__ import main
from app.trainer.flags import TrainingArgs, parse_args
from app.tuning import space
from app.tuning.local import evaluate
from app.tuning.vertex import build_tuning_job
from tests.synthetic import write_movielens
from tests.test_tuning import CLOUD

TINY = ["--agent", "actor_critic", "--training-loops", "3", "--batch-size", "4", "--no-progress"]


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough movies for 10 lists of 10 unseen movies per user (the trainer's K and horizon)."""
    return write_movielens(tmp_path_factory.mktemp("ml300"), movies=300)


@pytest.fixture
def settings(catalogue: Path, tmp_path: Path) -> Settings:
    return Settings(
        artifacts_dir=str(tmp_path / "artifacts"),
        data=DataConfig(movielens_dir=str(catalogue), download=False),
    )


def where(settings: Settings) -> list[str]:
    assert settings.data.movielens_dir
    return ["--artifacts-dir", settings.artifacts_dir, "--data-path", settings.data.movielens_dir]


def test_recloop_train_writes_every_artifact_for_the_actor_critic(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """The Vertex entrypoint's main: metrics.json, plot, TensorBoard, and the slate policy in
    AIP_MODEL_DIR when Vertex gives one (else <artifacts>/policy-slate)."""
    import tensorflow as tf
    from tf_agents.trajectories import time_step as ts

    from app.trainer.run import run

    artifacts = Path(settings.artifacts_dir)
    assert main([*TINY, *where(settings), "--gamma=0.5", "--policy-version=v-slate-1"]) == 0
    assert "trained actor_critic" in capsys.readouterr().out
    metrics = json.loads((artifacts / "policy-slate" / "metrics.json").read_text())
    for key in ("regret", "suboptimal_arms", "average_return"):
        assert len(metrics[key]) == 3 and np.all(np.isfinite(metrics[key]))
    assert metrics["hyperparameters"] == {
        "gamma": 0.5,
        "actor_learning_rate": ACTOR_CRITIC_DEFAULTS.actor_learning_rate,
        "critic_learning_rate": ACTOR_CRITIC_DEFAULTS.critic_learning_rate,
        "exploration_std": ACTOR_CRITIC_DEFAULTS.exploration_std,
    }
    assert metrics["objective"]["name"] == "final_regret"
    assert metrics["loss"] and np.all(np.isfinite(metrics["loss"]))
    assert set(metrics["test"]) == {"return", "precision_at_k", "ndcg_at_k"}
    assert metrics["interactions"] == 3 * 4 * 10 * 10  # batches × users × lists × K
    assert (artifacts / "policy-slate" / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert list((artifacts / "tensorboard" / "v-slate-1").glob("events.out.tfevents.*"))
    meta = read_metadata(str(artifacts / "policy-slate"))
    assert (meta.agent, meta.num_actions, meta.policy_version) == ("actor_critic", 300, "v-slate-1")
    assert not (artifacts / "policy").exists()  # the bandit predictor's policy is untouched
    loaded = tf.saved_model.load(str(artifacts / "policy-slate"))
    history = tf.constant([[300, 300, 0, 1, 2]], tf.int32)  # 300 pads
    slate = loaded.action(ts.restart(history, batch_size=1)).action.numpy()[0]
    assert len(set(slate)) == 10 and not set(slate) & {0, 1, 2}

    vertex = VertexJobConfig(model_dir=str(tmp_path / "model"))
    result = run(parse_args(TINY), dataclasses.replace(settings, vertex_job=vertex))
    assert result.policy_dir == str(tmp_path / "model")
    assert read_metadata(str(tmp_path / "model")).agent == "actor_critic"


@pytest.mark.parametrize("flag", ["--num-actions=5", "--per-arm", "--agent-alpha=2"])
def test_bandit_flags_are_refused_for_the_actor_critic(
    flag: str, capsys: pytest.CaptureFixture[str]
):
    with pytest.raises(SystemExit) as exit_:
        parse_args([*TINY, flag])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert f"{flag.split('=')[0]} does not apply to --agent actor_critic" in err


def test_actor_critic_flags_are_refused_for_a_bandit(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit):
        parse_args(["--agent", "linucb", "--gamma", "0.5"])
    assert "--gamma does not apply to --agent linucb" in capsys.readouterr().err


def test_actor_critic_defaults_have_one_source():
    args, config = TrainingArgs(), ActorCriticConfig()
    for parameter in space.search_space("actor_critic"):
        default = getattr(ACTOR_CRITIC_DEFAULTS, parameter.name)
        assert getattr(args, parameter.name) == getattr(config, parameter.name) == default
        assert parameter.low <= default <= parameter.high


def test_regret_is_measured_against_the_oracle_list(movielens_dir: Path):
    """The shared 30-movie set: short episodes of 3-movie lists."""
    from app import movielens
    from app.slate import data as slate_data

    data = slate_data.build(movielens.load_rating_events(movielens_dir / "u.data"), seed=0)
    args = slate_run.SlateArgs(slate_size=3, horizon=4, episodes=8, parallel_episodes=4)

    def environment() -> SlateEnvironment:
        return SlateEnvironment(data, data.train_users, slate_size=3, horizon=4, seed=0)

    class Oracle:
        def __init__(self, env: SlateEnvironment):
            self.env = env

        def act(self, observations, excluded, k):
            return self.env.best_slates()

        def learn(self, *transition) -> None:
            pass

    env = environment()
    oracle = slate_run.train(Oracle(env), env, args)
    assert [(m.regret, m.suboptimal_arms) for m in oracle] == [(0.0, 0.0), (0.0, 0.0)]
    random = slate_run.train(RandomSlates(0), environment(), args)
    assert all(m.regret > 0 and m.suboptimal_arms > 0.5 for m in random)
    assert all(m.average_return < o.average_return for m, o in zip(random, oracle, strict=True))


def test_a_local_tuning_trial_trains_the_actor_critic(settings: Settings):
    args = dataclasses.replace(parse_args(TINY), training_loops=2)
    values = {"gamma": 0.0, "actor_learning_rate": 1e-3, "critic_learning_rate": 1e-3}
    objective = evaluate(args, settings, {**values, "exploration_std": 0.1})
    assert np.isfinite(objective) and objective > 0


def test_vertex_tuning_job_searches_the_actor_critic_space():
    fake_vertex = FakeVertex(project="recloop-dev", location="europe-west4")
    args = dataclasses.replace(parse_args(TINY), data_path="gs://b/u.data")
    with fake_vertex.install():
        build_tuning_job(args, CLOUD, "recloop-tune-ac", max_trials=4, parallel_trials=2).run(
            service_account=CLOUD.cloud.pipelines_service_account, sync=True
        )
    (create,) = fake_vertex.sent("JobService/CreateHyperparameterTuningJob")
    job = create.hyperparameter_tuning_job
    (pool,) = job.trial_job_spec.worker_pool_specs
    assert "--agent=actor_critic" in pool.container_spec.args
    specs = {p.parameter_id: p.scale_type.name for p in job.study_spec.parameters}
    assert specs == {
        "gamma": "UNIT_LINEAR_SCALE",
        "actor_learning_rate": "UNIT_LOG_SCALE",
        "critic_learning_rate": "UNIT_LOG_SCALE",
        "exploration_std": "UNIT_LINEAR_SCALE",
    }
