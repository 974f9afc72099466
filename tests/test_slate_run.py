"""`make slate`'s code path end to end on synthetic ratings: report, plot, saved policy."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.config import load_settings
from app.policy_store import read_metadata
from app.slate.__main__ import main, produce
from app.slate.actor_critic import ActorCriticConfig
from app.slate.run import METHODS, SlateArgs
from tests.synthetic import write_movielens


@pytest.fixture(scope="module")
def produced(tmp_path_factory):
    folder = write_movielens(tmp_path_factory.mktemp("ml"))
    output = tmp_path_factory.mktemp("slate")
    tiny = ActorCriticConfig(
        batch_size=8, updates_per_step=1, actor_layers=(8,), critic_layers=(8,)
    )
    args = SlateArgs(
        slate_size=2, horizon=3, episodes=16, parallel_episodes=8, seed=1, actor_critic=tiny
    )
    result = produce(args, str(output), str(folder), load_settings(environ={}), progress=False)
    return result, output


def test_report_has_exactly_the_issue_s_keys_for_all_five_methods(produced):
    result, output = produced
    report = json.loads((output / "report.json").read_text())
    assert report == result.report
    assert set(report) == {"k", "test_users", "episodes", "methods"}
    assert (report["k"], report["test_users"], report["episodes"]) == (2, 12, 16)
    assert set(report["methods"]) == set(METHODS)
    for metrics in report["methods"].values():
        assert set(metrics) == {"return", "precision_at_k", "ndcg_at_k"}
        assert all(isinstance(v, float) and np.isfinite(v) for v in metrics.values())
    assert (output / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_every_method_is_evaluated_on_the_test_users_only(produced, tmp_path_factory):
    """The report's popularity and random rows (nothing trained) are what those methods earn
    on the test users, and not what they would earn on the train users."""
    from app import movielens
    from app.slate import data as slate_data
    from app.slate.baselines import PopularSlates, RandomSlates
    from app.slate.environment import SlateEnvironment
    from app.slate.run import evaluate

    result, _ = produced
    folder = write_movielens(tmp_path_factory.mktemp("ml-again"))
    data = slate_data.build(movielens.load_rating_events(folder / "u.data"), seed=1)
    fresh = {"popularity": lambda: PopularSlates(data), "random": lambda: RandomSlates(1)}
    for name, method in fresh.items():
        test, train = (
            evaluate(method(), SlateEnvironment(data, users, slate_size=2, horizon=3))
            for users in (data.test_users, data.train_users)
        )
        assert result.report["methods"][name] == pytest.approx(test.as_report()), name
        assert train.episode_return != pytest.approx(test.episode_return), name


def test_learning_methods_trained_and_the_critic_loss_is_finite(produced):
    result, _ = produced
    assert {len(c) for c in result.curves.values()} == {2}
    losses = result.methods["actor_critic"].losses
    assert losses and np.all(np.isfinite(losses))


def test_saved_actor_critic_policy_is_a_recloop_policy_choosing_the_agent_s_slates(produced):
    import tensorflow as tf
    from tf_agents.trajectories import time_step as ts

    result, output = produced
    folder = output / "actor_critic"
    metadata = read_metadata(str(folder / "policy"))
    assert (metadata.agent, metadata.num_actions, metadata.per_arm) == ("actor_critic", 30, True)
    assert json.loads((folder / "policy" / "metrics.json").read_text())["average_return"]
    assert (folder / "policy" / "training_curves.png").is_file()

    agent = result.methods["actor_critic"]
    movies = agent.items.shape[0]
    history = np.array([[30, 30, 3, 7, 11], [1, 2, 4, 5, 6]], dtype=np.int32)  # 30 pads
    loaded = tf.saved_model.load(str(folder / "policy"))
    saved = loaded.action(ts.restart(tf.constant(history), batch_size=2)).action.numpy()
    padded = np.vstack([agent.items, np.zeros((1, agent.items.shape[1]), np.float32)])
    seen = np.zeros((2, movies + 1), dtype=bool)
    seen[np.arange(2)[:, None], history] = True
    agent.exploring = False
    expected = agent.act(padded[history].reshape(2, -1), seen[:, :movies], 2)
    np.testing.assert_array_equal(saved, expected)
    assert not set(saved[1]) & set(history[1])


def test_a_missing_data_set_is_one_line_and_a_non_zero_exit(tmp_path, capsys):
    assert main(["--data-path", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("slate: ") and err.count("\n") == 1
