import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from app.config import Settings, VertexJobConfig
from app.policy_store import read_metadata
from app.trainer.__main__ import main
from app.trainer.flags import TrainingArgs, parse_args
from app.trainer.run import run

SMALL = TrainingArgs(
    training_loops=30,
    rank_k=5,
    num_actions=10,
    progress=False,
    agent_alpha=2.0,
    tikhonov_weight=0.5,
)


def test_trainer_writes_policy_metrics_plot_and_summaries(settings: Settings):
    result = run(SMALL, settings)
    artifacts = Path(settings.artifacts_dir)
    metrics = json.loads((artifacts / "policy" / "metrics.json").read_text())
    for key in ("regret", "suboptimal_arms", "average_return"):
        assert len(metrics[key]) == 30
    assert metrics["interactions"] == 30 * 8 * 2
    assert metrics["interactions_per_second"] > 0
    assert metrics["hyperparameters"] == {"agent_alpha": 2.0, "tikhonov_weight": 0.5}
    assert (artifacts / "policy" / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (run_folder,) = (artifacts / "tensorboard").iterdir()  # one folder per run
    assert run_folder.name == read_metadata(str(artifacts / "policy")).policy_version
    (events,) = run_folder.glob("events.out.tfevents.*")
    import tensorflow as tf

    records = tf.compat.v1.train.summary_iterator(str(events))
    tags = {v.tag for e in records for v in e.summary.value}
    assert tags == {"regret", "suboptimal_arms", "average_return"}
    meta = read_metadata(str(artifacts / "policy"))
    assert (meta.agent, meta.num_actions, meta.rank_k, meta.alpha) == ("linucb", 10, 5, 2.0)
    assert meta.titles[0] == "Synthetic Movie 1 (1995)" and meta.movie_ids[:2] == [1, 2]
    assert (artifacts / "policy" / "saved_model.pb").is_file()
    assert result.history.interactions == 480


def test_metrics_json_is_summarised_per_window(settings: Settings):
    result = run(dataclasses.replace(SMALL, training_loops=450), settings)
    metrics = json.loads(Path(result.metrics_path).read_text())
    assert (metrics["loops"], metrics["window_loops"], len(metrics["regret"])) == (450, 3, 150)
    regret = [m.regret for m in result.history.loops]
    assert metrics["regret"][-1] == pytest.approx(np.mean(regret[-3:]))


def test_interrupted_training_leaves_the_last_policy(settings: Settings, monkeypatch):
    """Ctrl-C while saving: the earlier policy stays whole; no half-written one appears."""
    from tf_agents.policies import policy_saver

    first = run(SMALL, settings)
    before = read_metadata(first.policy_dir).policy_version

    class Interrupted:  # PolicySaver stopped half-way through writing `directory`
        def __init__(self, *args, **kwargs):
            pass

        def save(self, directory: str) -> None:
            Path(directory).mkdir(parents=True, exist_ok=True)
            (Path(directory) / "saved_model.pb").write_bytes(b"half")
            raise KeyboardInterrupt

    monkeypatch.setattr(policy_saver, "PolicySaver", Interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(dataclasses.replace(SMALL, policy_version="v-never"), settings)
    assert read_metadata(first.policy_dir).policy_version == before
    assert (Path(first.policy_dir) / "saved_model.pb").read_bytes() != b"half"


def test_an_interrupted_object_store_save_does_not_look_complete(settings: Settings, monkeypatch):
    """gs:// has no rename: a save stopped half-way over an earlier policy must not leave the
    earlier metadata beside new files (it looked complete and mixed two policies). TF's
    ram:// filesystem stands in for the object store: the same non-local code path."""
    import tensorflow as tf
    from tf_agents.policies import policy_saver

    from app.policy_store import PolicyStoreError

    store = "ram://bucket/model"
    vertex = dataclasses.replace(settings, vertex_job=VertexJobConfig(model_dir=store))
    assert read_metadata(run(SMALL, vertex).policy_dir).policy_version

    class Interrupted:  # PolicySaver stopped half-way through writing `directory`
        def __init__(self, *args, **kwargs):
            pass

        def save(self, directory: str) -> None:
            with tf.io.gfile.GFile(f"{directory}/saved_model.pb", "w") as f:
                f.write("half")
            raise KeyboardInterrupt

    monkeypatch.setattr(policy_saver, "PolicySaver", Interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(dataclasses.replace(SMALL, policy_version="v-never"), vertex)
    with pytest.raises(PolicyStoreError, match=r"recloop_policy\.json is missing"):
        read_metadata(store)


def test_learning_beats_uniform_choice(settings: Settings):
    result = run(dataclasses.replace(SMALL, training_loops=150), settings)
    regret = [m.regret for m in result.history.loops]
    assert np.mean(regret[-30:]) < 0.6 * np.mean(regret[:10])


def test_same_seed_same_numbers(settings: Settings, tmp_path: Path):
    first = run(SMALL, settings).history
    other = dataclasses.replace(settings, artifacts_dir=str(tmp_path / "again"))
    second = run(SMALL, other).history
    third = run(
        dataclasses.replace(SMALL, seed=1),
        dataclasses.replace(settings, artifacts_dir=str(tmp_path / "s1")),
    ).history
    assert [m.regret for m in first.loops] == [m.regret for m in second.loops]
    assert [m.regret for m in first.loops] != [m.regret for m in third.loops]


@pytest.mark.parametrize("agent", ["lints", "neural_epsilon_greedy", "neural_linucb"])
def test_other_agents_train_and_save(settings: Settings, agent: str):
    args = dataclasses.replace(SMALL, agent=agent, training_loops=4)
    result = run(args, settings)
    assert len(result.history.loops) == 4
    assert read_metadata(result.policy_dir).agent == agent


@pytest.mark.parametrize("agent", ["linucb", "neural_epsilon_greedy"])
def test_per_arm_variant_trains(settings: Settings, agent: str):
    args = dataclasses.replace(SMALL, agent=agent, per_arm=True, training_loops=5, num_actions=6)
    result = run(args, settings)
    assert read_metadata(result.policy_dir).per_arm
    assert len(result.history.loops) == 5


def test_per_arm_regret_falls_like_the_global_agents(settings: Settings, tmp_path: Path):
    """Per-arm LinUCB learns (u ⊙ v features): late regret well under early regret, as for
    the global agent. Over concatenated [u, v] it stayed flat (0.86 vs 1.01 on this data)."""
    for per_arm in (False, True):
        args = dataclasses.replace(SMALL, per_arm=per_arm, training_loops=150, num_actions=6)
        where = dataclasses.replace(settings, artifacts_dir=str(tmp_path / str(per_arm)))
        regret = [m.regret for m in run(args, where).history.loops]
        assert np.mean(regret[-30:]) < 0.6 * np.mean(regret[:10]), (per_arm, regret)


def test_per_arm_run_keeps_the_servable_policy(settings: Settings):
    """A per-arm run replaces neither the global policy nor its reports (they shared
    <artifacts_dir>/metrics.json and the curves: a per-arm run overwrote them)."""
    served = run(SMALL, settings)
    plot = (Path(served.policy_dir) / "training_curves.png").read_bytes()
    per_arm = run(dataclasses.replace(SMALL, per_arm=True, training_loops=3), settings)
    assert per_arm.policy_dir != served.policy_dir and read_metadata(per_arm.policy_dir).per_arm
    assert not read_metadata(served.policy_dir).per_arm
    for result in (served, per_arm):
        metrics = json.loads(Path(result.metrics_path).read_text())
        assert (metrics["policy_dir"], metrics["policy_version"], metrics["loops"]) == (
            result.policy_dir,
            read_metadata(result.policy_dir).policy_version,
            result.args.training_loops,
        )
    assert (Path(served.policy_dir) / "training_curves.png").read_bytes() == plot


def test_vertex_directories_are_honoured(settings: Settings, tmp_path: Path):
    vertex = VertexJobConfig(
        model_dir=str(tmp_path / "model"),
        checkpoint_dir=str(tmp_path / "ckpt"),
        tensorboard_log_dir=str(tmp_path / "tb"),
    )
    result = run(SMALL, dataclasses.replace(settings, vertex_job=vertex))
    assert result.policy_dir == str(tmp_path / "model")
    assert (tmp_path / "model" / "saved_model.pb").is_file()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert (tmp_path / "ckpt" / "ckpt-00000030" / "progress.json").is_file()


def test_resumes_from_a_checkpoint(settings: Settings, tmp_path: Path):
    vertex = VertexJobConfig(checkpoint_dir=str(tmp_path / "ckpt"))
    resumable = dataclasses.replace(settings, vertex_job=vertex)
    run(dataclasses.replace(SMALL, training_loops=10), resumable)
    resumed = run(dataclasses.replace(SMALL, training_loops=25), resumable).history
    straight = run(dataclasses.replace(SMALL, training_loops=25), settings).history
    # A longer run continues the shorter one's checkpoint exactly (model, RNG states, metrics).
    assert [m.regret for m in resumed.loops] == [m.regret for m in straight.loops]


def test_hypertune_metric_is_reported(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    metric_file = tmp_path / "hypertune" / "output.metrics"
    monkeypatch.setenv("CLOUD_ML_HP_METRIC_FILE", str(metric_file))
    result = run(dataclasses.replace(SMALL, run_hyperparameter_tuning=True), settings)
    reported = json.loads(metric_file.read_text().strip().splitlines()[-1])
    assert float(reported["final_regret"]) == pytest.approx(result.objective)
    assert int(reported["global_step"]) == 30


def test_train_with_best_hyperparameters_uses_the_winner(settings: Settings):
    artifacts = Path(settings.artifacts_dir)
    artifacts.mkdir(parents=True)
    (artifacts / "best_hyperparameters.json").write_text(
        json.dumps(
            {
                "agent": "linucb",
                "hyperparameters": {"agent_alpha": 0.37, "tikhonov_weight": 2.5},
                "final_regret": 0.1,
            }
        )
    )
    result = run(dataclasses.replace(SMALL, train_with_best_hyperparameters=True), settings)
    assert (result.args.agent_alpha, result.args.tikhonov_weight) == (0.37, 2.5)
    meta = read_metadata(result.policy_dir)
    assert (meta.alpha, meta.tikhonov_weight) == (0.37, 2.5)
    metrics = json.loads(Path(result.metrics_path).read_text())
    assert metrics["hyperparameters"] == {"agent_alpha": 0.37, "tikhonov_weight": 2.5}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {"agent": "linucb", "hyperparameters": {"alpha": 1.0, "tikhonov_weight": 1.0}},
            "'alpha' is not a tuned hyper-parameter",
        ),
        ({"agent": "linucb", "hyperparameters": {"agent_alpha": 1.0}}, "missing tikhonov_weight"),
        (
            {"agent": "linucb", "hyperparameters": {"agent_alpha": "1", "tikhonov_weight": 1.0}},
            "agent_alpha must be a finite number",
        ),
        ({"best": {}}, "must hold an object with a 'hyperparameters' object"),
        (
            {"hyperparameters": {"agent_alpha": 1.0, "tikhonov_weight": 1.0}},
            "does not record the agent it was tuned for",
        ),
        (
            {"agent": "lints", "hyperparameters": {"agent_alpha": 1.0, "tikhonov_weight": 1.0}},
            "was tuned for --agent lints, not linucb",
        ),
    ],
)
def test_bad_best_hyperparameters_are_refused(settings: Settings, document, message):
    artifacts = Path(settings.artifacts_dir)
    artifacts.mkdir(parents=True)
    (artifacts / "best_hyperparameters.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match=message):
        run(dataclasses.replace(SMALL, train_with_best_hyperparameters=True), settings)
    assert not (artifacts / "policy").exists()


def test_missing_best_hyperparameters_file_is_explained(settings: Settings):
    with pytest.raises(FileNotFoundError, match="run `recloop tune` first"):
        run(dataclasses.replace(SMALL, train_with_best_hyperparameters=True), settings)


def test_sample_flags_and_vertex_spelling_parse():
    args = parse_args(
        [
            "--data-path",
            "/d/u.data",
            "--artifacts-dir",
            "gs://b/a",
            "--profiler-dir",
            "/p",
            "--batch-size",
            "4",
            "--training-loops",
            "7",
            "--steps-per-loop",
            "3",
            "--rank-k",
            "10",
            "--num-actions",
            "15",
            "--tikhonov-weight",
            "0.2",
            "--agent-alpha",
            "5",
            "--run-hyperparameter-tuning",
            "--agent",
            "lints",
            "--seed",
            "9",
            "--agent_alpha=6.5",
        ]
    )
    assert (
        args.batch_size,
        args.training_loops,
        args.steps_per_loop,
        args.rank_k,
        args.num_actions,
    ) == (4, 7, 3, 10, 15)
    assert (args.tikhonov_weight, args.agent_alpha, args.agent, args.seed) == (0.2, 6.5, "lints", 9)
    assert args.run_hyperparameter_tuning and args.artifacts_dir == "gs://b/a"


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--batch-size=0", "'--batch-size': must be a whole number ≥ 1"),
        ("--tikhonov-weight=-1", "'--tikhonov-weight': must be a finite number > 0"),
        ("--agent-alpha=nan", "'--agent-alpha': must be a finite number ≥ 0"),
        ("--agent=dqn", "'--agent': choose one of linucb, lints"),
    ],
)
def test_bad_flags_are_named(flag: str, message: str, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit):
        parse_args([flag])
    assert message in capsys.readouterr().err


def test_cli_reports_bad_data_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    bad = tmp_path / "u.data"
    bad.write_text("1,2,3,4\n")
    code = main(["--data-path", str(bad), "--artifacts-dir", str(tmp_path / "a"), "--no-progress"])
    assert code == 2
    assert "line 1: expected 4 tab-separated fields" in capsys.readouterr().err


def test_many_runs_in_one_process_print_no_retracing_warning(tmp_path: Path):
    """Tuning and `make bench` write TensorBoard summaries for many runs in one process; each
    traces its own tf.function by design, which TensorFlow reported as retracing."""
    import logging

    import tensorflow as tf

    from app.trainer.metrics import History, LoopMetrics
    from app.trainer.report import write_tensorboard

    said: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.append(record.getMessage())

    handler = Collect(logging.WARNING)
    tf.get_logger().addHandler(handler)
    try:
        for run_index in range(7):
            history = History(loops=[LoopMetrics(i, 0.5, 0.1, 3.0) for i in range(3 + run_index)])
            write_tensorboard(str(tmp_path / f"run{run_index}"), history)
    finally:
        tf.get_logger().removeHandler(handler)
    assert not [line for line in said if "retracing" in line], said
    assert len(list(tmp_path.glob("run*/events.out.tfevents.*"))) == 7
