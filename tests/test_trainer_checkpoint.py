"""Checkpoints during training, and runs that die and resume to the same result.

One test kills a real `python -m app.trainer` with SIGKILL; the others prove the mechanism
per agent in process, on the training loop itself, with a few loops.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from app.agents import state_from_agent
from app.config import Settings, VertexJobConfig
from app.local.processes import PYTHON
from app.policy_store import linear_state_from_variables
from app.trainer import checkpoint
from app.trainer.__main__ import main
from app.trainer.checkpoint import Checkpoints
from app.trainer.flags import TrainingArgs
from app.trainer.learners import Learner, make_learner
from app.trainer.metrics import History, LoopMetrics
from app.trainer.on_policy import train_on_policy
from app.trainer.run import agent_spec, build_environment, run, run_identity

TINY = TrainingArgs(
    training_loops=6,
    rank_k=5,
    num_actions=10,
    progress=False,
    agent_alpha=2.0,
    tikhonov_weight=0.5,
    checkpoint_every=2,
)


class Died(RuntimeError):
    pass


def train(
    args: TrainingArgs,
    settings: Settings,
    checkpoints: Checkpoints | None = None,
    die_after: int | None = None,
) -> tuple[History, Learner]:
    """The trainer's loop with checkpoints as run() wires them; dies after a checkpoint."""
    env, _ = build_environment(args, settings)
    learner = make_learner(agent_spec(args), args.seed)
    history = checkpoints.restore(learner, env) if checkpoints else History()

    def after_loop(metrics: LoopMetrics) -> None:
        if checkpoints and (metrics.loop + 1) % args.checkpoint_every == 0:
            checkpoints.save(learner, env, history)
            if metrics.loop + 1 == die_after:
                raise Died("pre-empted")

    train_on_policy(env, learner, args.training_loops, args.steps_per_loop, history, after_loop)
    return history, learner


def learned(learner: Learner) -> list[np.ndarray]:
    """Every learned parameter and, for linear agents, the sampling RNG's state."""
    model = getattr(learner, "model", None)
    if model is not None:
        s = model.state
        rng = json.dumps(model.rng.bit_generator.state)
        return [s.cov_matrix, s.data_vector, s.num_samples, np.array(rng)]
    return [v.numpy() for v in learner.export_agent().variables]


@pytest.mark.parametrize("agent", ["linucb", "lints", "neural_epsilon_greedy", "neural_linucb"])
def test_a_run_that_dies_resumes_to_the_same_result(settings: Settings, tmp_path: Path, agent: str):
    """Dies right after the checkpoint of loop 4 of 6; resumed, it ends where an uninterrupted
    run ends: same metrics, same parameters, same RNG states."""
    args = dataclasses.replace(TINY, agent=agent)
    straight, straight_learner = train(args, settings)
    checkpoints = Checkpoints(str(tmp_path / "ckpt"), run_identity(args))
    with pytest.raises(Died):
        train(args, settings, checkpoints, die_after=4)
    resumed, resumed_learner = train(args, settings, checkpoints)
    assert resumed.to_json(interactions_per_second=0) == straight.to_json(interactions_per_second=0)
    for a, b in zip(learned(resumed_learner), learned(straight_learner), strict=True):
        np.testing.assert_array_equal(a, b)


def test_run_checkpoints_during_training_and_keeps_the_newest(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    saved: list[int] = []
    original = Checkpoints.save

    def recording(self, learner, env, history):
        saved.append(len(history.loops))
        return original(self, learner, env, history)

    monkeypatch.setattr(Checkpoints, "save", recording)
    vertex = VertexJobConfig(checkpoint_dir=str(tmp_path / "ckpt"))
    args = dataclasses.replace(TINY, training_loops=10, checkpoint_every=4)
    result = run(args, dataclasses.replace(settings, vertex_job=vertex))
    assert saved == [4, 8, 10]  # every 4 loops, and at the end
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "ckpt-00000008",
        "ckpt-00000010",
    ]
    progress = json.loads((tmp_path / "ckpt" / "ckpt-00000010" / "progress.json").read_text())
    assert progress["loops"] == 10 and progress["history"]["regret"] == [
        m.regret for m in result.history.loops
    ]


def test_an_unfinished_checkpoint_is_ignored(settings: Settings, tmp_path: Path):
    """What a kill while writing leaves (a staging folder; on object stores a folder with no
    progress.json) is never read, and is cleaned up by the next checkpoint."""
    ckpt = tmp_path / "ckpt"
    checkpoints = Checkpoints(str(ckpt), run_identity(TINY))
    with pytest.raises(Died):
        train(TINY, settings, checkpoints, die_after=4)
    (ckpt / f"{checkpoint.STAGING_PREFIX}dead").mkdir()
    (ckpt / f"{checkpoint.STAGING_PREFIX}dead" / "linear_state.npz").write_bytes(b"torn")
    (ckpt / "ckpt-00000020").mkdir()
    (ckpt / "ckpt-00000020" / "linear_state.npz").write_bytes(b"torn")
    assert checkpoints.latest() == (4, str(ckpt / "ckpt-00000004"))
    resumed, _ = train(TINY, settings, checkpoints)
    straight, _ = train(TINY, settings)
    assert [m.regret for m in resumed.loops] == [m.regret for m in straight.loops]
    assert not (ckpt / f"{checkpoint.STAGING_PREFIX}dead").exists()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"rank_k": 4}, "rank_k=5 (this run: 4)"),
        ({"agent": "lints"}, "agent='linucb' (this run: 'lints')"),
        ({"seed": 1}, "seed=0 (this run: 1)"),
    ],
)
def test_a_checkpoint_of_another_run_is_refused(
    settings: Settings, tmp_path: Path, change: dict, named: str
):
    ckpt = str(tmp_path / "ckpt")
    train(
        dataclasses.replace(TINY, training_loops=2), settings, Checkpoints(ckpt, run_identity(TINY))
    )
    other = dataclasses.replace(TINY, **change)
    with pytest.raises(ValueError, match="belongs to another run") as refused:
        train(other, settings, Checkpoints(ckpt, run_identity(other)))
    assert named in str(refused.value)


def test_a_killed_trainer_resumes_to_the_same_result(
    settings: Settings,
    movielens_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    """SIGKILL a real `python -m app.trainer` (as Vertex pre-empts it) after its first
    checkpoint, run the same command line again (in this process: the entrypoint's main): it
    resumes there and ends with the metrics and policy of a run that was never interrupted."""
    import tensorflow as tf
    import tensorflow_probability  # noqa: F401

    # 400k interactions, about a second of training: time enough to be killed mid-way.
    args = TrainingArgs(
        data_path=str(movielens_dir / "u.data"),
        training_loops=400,
        checkpoint_every=20,
        batch_size=50,
        steps_per_loop=20,
        rank_k=5,
        num_actions=10,
        agent="lints",
        seed=3,
        progress=False,
    )
    artifacts = tmp_path / "resumed"
    argv = [
        f"--data-path={args.data_path}",
        f"--artifacts-dir={artifacts}",
        f"--training-loops={args.training_loops}",
        f"--checkpoint-every={args.checkpoint_every}",
        f"--batch-size={args.batch_size}",
        f"--steps-per-loop={args.steps_per_loop}",
        "--rank-k=5",
        "--num-actions=10",
        "--agent=lints",
        "--seed=3",
        "--no-progress",
    ]
    ckpt = tmp_path / "ckpt"
    env = {**os.environ, "AIP_CHECKPOINT_DIR": str(ckpt)}
    first = subprocess.Popen(
        [PYTHON, "-m", "app.trainer", *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(ckpt.glob("ckpt-*/progress.json")):
            assert first.poll() is None, "the trainer ended before its first checkpoint"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        first.send_signal(signal.SIGKILL)
    finally:
        first.wait(30)
    assert first.returncode == -signal.SIGKILL
    assert not list(artifacts.rglob("metrics.json"))  # it died mid-training
    latest = Checkpoints(str(ckpt), {}).latest()
    assert latest is not None and 20 <= latest[0] < 400

    monkeypatch.setenv("AIP_CHECKPOINT_DIR", str(ckpt))
    assert main(argv) == 0
    assert f"resumed from the checkpoint after loop {latest[0]}" in capsys.readouterr().out

    straight, learner = train(args, settings)
    metrics = json.loads((artifacts / "policy" / "metrics.json").read_text())
    assert metrics["resumed_from_loop"] == latest[0]
    assert metrics["regret"] == straight.summary()["regret"]  # per-window means
    assert metrics["interactions"] == straight.interactions == 400 * 50 * 20
    saved = tf.saved_model.load(str(artifacts / "policy"))
    served = linear_state_from_variables(saved.model_variables, 10)
    expected = state_from_agent(learner.export_agent())  # float32 in the SavedModel
    np.testing.assert_array_equal(served.cov_matrix, expected.cov_matrix)
    np.testing.assert_array_equal(served.data_vector, expected.data_vector)
