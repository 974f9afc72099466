"""Checkpoints during training, and runs that die and resume to the same result."""

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

from app.config import Settings, VertexJobConfig
from app.local.processes import PYTHON
from app.trainer import checkpoint
from app.trainer.checkpoint import Checkpoints
from app.trainer.flags import TrainingArgs
from app.trainer.run import run

SMALL = TrainingArgs(
    training_loops=30,
    rank_k=5,
    num_actions=10,
    progress=False,
    agent_alpha=2.0,
    tikhonov_weight=0.5,
    checkpoint_every=4,
    policy_version="v-ckpt",
)


def with_checkpoints(settings: Settings, directory: Path) -> Settings:
    return dataclasses.replace(settings, vertex_job=VertexJobConfig(checkpoint_dir=str(directory)))


def elsewhere(settings: Settings, tmp_path: Path, name: str) -> Settings:
    return dataclasses.replace(settings, artifacts_dir=str(tmp_path / name))


def policy_variables(policy_dir: str) -> list[np.ndarray]:
    import tensorflow as tf
    import tensorflow_probability  # noqa: F401

    saved = tf.saved_model.load(policy_dir)
    return [v.numpy() for v in saved.model_variables]


def assert_same_result(
    first_metrics: dict, first_policy: str, second_metrics: dict, second_policy: str
):
    for key in ("regret", "suboptimal_arms", "average_return", "interactions"):
        assert first_metrics[key] == second_metrics[key], key
    for a, b in zip(policy_variables(first_policy), policy_variables(second_policy), strict=True):
        np.testing.assert_array_equal(a, b)


def metrics_of(settings: Settings) -> dict:
    return json.loads((Path(settings.artifacts_dir) / "metrics.json").read_text())


def test_checkpoints_are_written_during_training_and_old_ones_removed(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    saved: list[int] = []
    original = Checkpoints.save

    def recording(self, learner, env, history):
        saved.append(len(history.loops))
        return original(self, learner, env, history)

    monkeypatch.setattr(Checkpoints, "save", recording)
    run(SMALL, with_checkpoints(settings, tmp_path / "ckpt"))
    assert saved == [4, 8, 12, 16, 20, 24, 28, 30]  # every 4 loops, and at the end
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "ckpt-00000028",
        "ckpt-00000030",
    ]
    progress = json.loads((tmp_path / "ckpt" / "ckpt-00000030" / "progress.json").read_text())
    assert progress["loops"] == 30 and len(progress["history"]["regret"]) == 30


class Died(RuntimeError):
    pass


@pytest.mark.parametrize("agent", ["linucb", "lints", "neural_epsilon_greedy", "neural_linucb"])
def test_a_run_that_dies_resumes_to_the_same_result(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, agent: str
):
    """Dies right after the checkpoint of loop 8; run again, it ends where an
    uninterrupted run ends: same metrics, same policy parameters (RNG states included)."""
    loops = 10 if agent.startswith("neural") else 30
    args = dataclasses.replace(SMALL, agent=agent, training_loops=loops)
    straight_settings = elsewhere(settings, tmp_path, "straight")
    straight = run(args, straight_settings)

    resumable = with_checkpoints(elsewhere(settings, tmp_path, "resumed"), tmp_path / "ckpt")
    original = Checkpoints.save

    def dying(self, learner, env, history):
        folder = original(self, learner, env, history)
        if len(history.loops) == 8:
            raise Died("pre-empted")
        return folder

    with monkeypatch.context() as patch:
        patch.setattr(Checkpoints, "save", dying)
        with pytest.raises(Died):
            run(args, resumable)
    resumed = run(args, resumable)
    assert resumed.resumed_from_loop == 8
    assert_same_result(
        metrics_of(straight_settings),
        straight.policy_dir,
        metrics_of(resumable),
        resumed.policy_dir,
    )


def test_a_killed_trainer_resumes_to_the_same_result(
    settings: Settings, movielens_dir: Path, tmp_path: Path
):
    """SIGKILL a real `python -m app.trainer` (as Vertex pre-empts it) after its first
    checkpoint, start the same command again: it resumes there and ends with the metrics and
    policy of a run that was never interrupted."""
    # 400k interactions, about a second of training: time enough to be killed mid-way.
    loops, every, batch, steps = 400, 20, 50, 20
    command = [
        PYTHON,
        "-m",
        "app.trainer",
        "--data-path",
        str(movielens_dir / "u.data"),
        "--artifacts-dir",
        str(tmp_path / "resumed"),
        "--training-loops",
        str(loops),
        "--checkpoint-every",
        str(every),
        "--batch-size",
        str(batch),
        "--steps-per-loop",
        str(steps),
        "--rank-k",
        "5",
        "--num-actions",
        "10",
        "--agent",
        "lints",
        "--seed",
        "3",
        "--policy-version",
        "v-killed",
        "--no-progress",
    ]
    ckpt = tmp_path / "ckpt"
    env = {**os.environ, "AIP_CHECKPOINT_DIR": str(ckpt)}
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
    assert not (tmp_path / "resumed" / "metrics.json").exists()  # it died mid-training
    (latest,) = [Checkpoints(str(ckpt), {}).latest()]
    assert latest is not None and every <= latest[0] < loops

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"resumed from the checkpoint after loop {latest[0]}" in second.stdout

    straight_settings = elsewhere(settings, tmp_path, "straight")
    args = TrainingArgs(
        data_path=str(movielens_dir / "u.data"),
        training_loops=loops,
        checkpoint_every=every,
        batch_size=batch,
        steps_per_loop=steps,
        rank_k=5,
        num_actions=10,
        agent="lints",
        seed=3,
        policy_version="v-killed",
        progress=False,
    )
    straight = run(args, straight_settings)
    resumed_metrics = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert resumed_metrics["resumed_from_loop"] == latest[0]
    assert_same_result(
        metrics_of(straight_settings),
        straight.policy_dir,
        resumed_metrics,
        str(tmp_path / "resumed" / "policy"),
    )


def test_an_unfinished_checkpoint_is_ignored(settings: Settings, tmp_path: Path):
    """What a kill while writing leaves (a staging folder; on object stores a folder with no
    progress.json) is never read, and is cleaned up by the next checkpoint."""
    ckpt = tmp_path / "ckpt"
    resumable = with_checkpoints(elsewhere(settings, tmp_path, "first"), ckpt)
    run(dataclasses.replace(SMALL, training_loops=8), resumable)
    (ckpt / f"{checkpoint.STAGING_PREFIX}dead").mkdir()
    (ckpt / f"{checkpoint.STAGING_PREFIX}dead" / "linear_state.npz").write_bytes(b"torn")
    (ckpt / "ckpt-00000020").mkdir()
    (ckpt / "ckpt-00000020" / "linear_state.npz").write_bytes(b"torn")
    resumed = run(SMALL, resumable)
    assert resumed.resumed_from_loop == 8
    straight = run(SMALL, elsewhere(settings, tmp_path, "straight")).history
    assert [m.regret for m in resumed.history.loops] == [m.regret for m in straight.loops]
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
    resumable = with_checkpoints(settings, tmp_path / "ckpt")
    run(dataclasses.replace(SMALL, training_loops=4), resumable)
    with pytest.raises(ValueError, match="belongs to another run") as refused:
        run(dataclasses.replace(SMALL, **change), resumable)
    assert named in str(refused.value)
