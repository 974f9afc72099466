"""One way to publish a policy (app/publish.py), for every trainer and any TF-Agents policy."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from app import movielens, publish
from app.agents import LINUCB, AgentSpec, create_agent
from app.environment import MovieLensBandit, factorize
from app.loop import generator, ingester, offpolicy
from app.policy_store import read_metadata
from app.warehouse.duckdb_store import DuckDBWarehouse

RANK, ACTIONS = 5, 10
SPEC = AgentSpec(LINUCB, ACTIONS, RANK, alpha=1.0, tikhonov_weight=0.5)


@pytest.fixture
def examples(movielens_dir: Path, tmp_path: Path) -> str:
    ratings = movielens.load_ratings_matrix(movielens_dir / "u.data")
    env = MovieLensBandit(factorize(ratings, RANK, ACTIONS), batch_size=8, seed=0)
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    generator.generate(env, warehouse, driver_steps=3)
    ingester.ingest(warehouse, str(tmp_path / "examples"), "r", 100, RANK, ACTIONS)
    return str(tmp_path / "examples")


def _metrics(folder: Path) -> dict:
    return json.loads((folder / publish.METRICS_FILE).read_text())


def test_both_trainers_write_metrics_naming_their_policy(
    trained_policy: Path, examples: str, tmp_path: Path
):
    """The on-policy and the off-policy trainer's metrics.json (inside the policy folder)
    name the agent, the version and the folder they describe."""
    offline = offpolicy.train_offline(examples, str(tmp_path / "policy"), SPEC, 16, None, [], "v-1")
    for policy_dir, metrics in (
        (trained_policy, _metrics(trained_policy)),
        (Path(offline.policy_dir), _metrics(Path(offline.policy_dir))),
    ):
        meta = read_metadata(str(policy_dir))
        assert (metrics["agent"], metrics["policy_version"], metrics["policy_dir"]) == (
            meta.agent,
            meta.policy_version,
            str(policy_dir),
        )
        assert meta.movie_ids == list(range(1, 11))


def test_offpolicy_metrics_are_published_with_their_policy(
    examples: str, tmp_path: Path, monkeypatch
):
    """A re-training that fails while writing metrics.json leaves the previous policy and its
    own metrics.json in place, never a new policy without its metrics."""
    policy_dir = tmp_path / "policy"
    offpolicy.train_offline(examples, str(policy_dir), SPEC, 16, None, [], "v-1")
    real_open = tf.io.gfile.GFile

    def failing(path, mode="r"):
        if str(path).endswith(publish.METRICS_FILE) and mode.startswith("w"):
            raise OSError("disk full")
        return real_open(path, mode)

    monkeypatch.setattr(tf.io.gfile, "GFile", failing)
    with pytest.raises(OSError, match="disk full"):
        offpolicy.train_offline(examples, str(policy_dir), SPEC, 16, None, [], "v-2")
    monkeypatch.undo()
    assert read_metadata(str(policy_dir)).policy_version == "v-1"
    assert _metrics(policy_dir)["policy_version"] == "v-1"


def test_any_tf_agents_policy_publishes_with_its_reports_inside(tmp_path: Path):
    """Agent-agnostic: a policy, its metadata, metrics and curves, the reports written into
    the policy's folder with it; `also` before the policy, each step heard by `say`."""
    agent = create_agent(SPEC)
    metadata = publish.bandit_metadata(SPEC, "v-any", ["a"] * ACTIONS, 0)
    heard: list[str] = []
    plot = publish.Plot("t", [publish.Panel("loss", [3.0, 2.0, 1.0], "step", smooth=False)])
    published = publish.publish(
        agent.policy,
        str(tmp_path / "policy"),
        metadata,
        {"loss": [3.0, 2.0, 1.0]},
        plot=plot,
        also=[("extra", lambda: (tmp_path / "extra").write_text("x"))],
        say=heard.append,
    )
    policy = tmp_path / "policy"
    assert published.metrics_path == str(policy / publish.METRICS_FILE)
    assert _metrics(policy)["loss"] == [3.0, 2.0, 1.0]
    assert (policy / publish.PLOT_FILE).read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["extra", "policy"]
    assert heard == [
        "saving 1/2: extra",
        f"saving 2/2: the policy with {publish.METRICS_FILE} and {publish.PLOT_FILE} ({policy})",
    ]
    assert read_metadata(str(tmp_path / "policy")) == metadata


def test_reports_are_rendered_after_their_step_is_announced(tmp_path: Path, monkeypatch):
    """No silence after the progress bar: the curves (seconds to draw for a long run) are drawn
    after "saving …" is said, not before the first line (before: all reports rendered first)."""
    agent = create_agent(SPEC)
    heard: list[str] = []
    real_plot_png = publish.plot_png

    def drawing(plot: publish.Plot) -> bytes:
        heard.append("drawn")
        return real_plot_png(plot)

    monkeypatch.setattr(publish, "plot_png", drawing)
    publish.publish(
        agent.policy,
        str(tmp_path / "policy"),
        publish.bandit_metadata(SPEC, "v-any", ["a"] * ACTIONS, 0),
        {"loss": [1.0]},
        plot=publish.Plot("t", [publish.Panel("loss", [1.0, 0.5], "step", smooth=False)]),
        say=heard.append,
    )
    drawn_after = heard[heard.index("drawn") - 1]
    assert heard[0].startswith("saving 1/")
    assert drawn_after.endswith(f"({tmp_path / 'policy'})")
    folder = tmp_path / "policy"
    assert (folder / publish.PLOT_FILE).read_bytes()[:4] == b"\x89PNG"
    assert _metrics(folder)["policy_version"] == "v-any"


def test_versions_made_in_one_second_differ(monkeypatch):
    """The pointer deployer stages a version once: two runs must never share a label."""
    frozen = time.gmtime(0)
    monkeypatch.setattr(time, "gmtime", lambda *_: frozen)
    first, second = publish.new_version(), publish.new_version()
    assert first.startswith("v19700101T000000Z-") and first != second


def test_a_deferred_policy_is_built_as_a_step(tmp_path: Path):
    """A linear learner's TF-Agents policy takes seconds to build: it is built after its
    step is said, first, never silently before "saving 1/…"."""
    heard: list[str] = []

    def build():
        heard.append("built")
        return create_agent(SPEC).policy

    publish.publish(
        publish.Deferred("the agent", build),
        str(tmp_path / "policy"),
        publish.bandit_metadata(SPEC, "v-any", ["a"] * ACTIONS, 0),
        {"loss": [1.0]},
        say=heard.append,
    )
    assert heard[:2] == ["saving 1/2: the agent", "built"]
    assert heard[2].startswith("saving 2/2: the policy")
    assert read_metadata(str(tmp_path / "policy")).policy_version == "v-any"


def _trained(spec: AgentSpec, seed: int):
    """A TF-Agents LinUCB agent whose variables hold the statistics of random examples."""
    from app.agents import copy_state_to_agent
    from app.linear import LinearState

    rng = np.random.default_rng(seed)
    state = LinearState.zeros(spec.num_actions, spec.context_dim)
    for k in range(spec.num_actions):
        x = rng.normal(size=(40, spec.context_dim))
        state.cov_matrix[k], state.data_vector[k] = x.T @ x, rng.normal(size=40) @ x
        state.num_samples[k] = 40
    agent = create_agent(spec)
    copy_state_to_agent(state, agent)
    return agent


def test_a_policy_saved_like_its_warm_start_is_the_policy_saver_policy(tmp_path: Path):
    """Published `like` a policy of the same spec (its saved graph reused, only a checkpoint
    of the variables written, as PolicySaver.save_checkpoint writes one), the folder is the
    SavedModel a fresh PolicySaver.save writes: it loads with tf.saved_model.load and with
    the predictor's loader, holds the same variables, and both choose the same actions on
    many contexts; a warm start of another spec is not reused (PolicySaver.save instead)."""
    from tf_agents.policies import policy_saver
    from tf_agents.trajectories import time_step as ts

    from app.predictor.policy import load_policy

    meta = publish.bandit_metadata(SPEC, "v0", [], 0)
    publish.publish(create_agent(SPEC).policy, str(tmp_path / "warm"), meta, {})
    agent = _trained(SPEC, 0)
    new = publish.bandit_metadata(SPEC, "v1", [], 400)
    publish.publish(agent.policy, str(tmp_path / "fast"), new, {}, like=str(tmp_path / "warm"))
    publish.publish(agent.policy, str(tmp_path / "full"), new, {})
    fast, full = tmp_path / "fast", tmp_path / "full"
    assert (fast / "saved_model.pb").read_bytes() == (tmp_path / "warm/saved_model.pb").read_bytes()
    assert (fast / "saved_model.pb").read_bytes() != (full / "saved_model.pb").read_bytes()
    saver = policy_saver.PolicySaver(agent.policy, batch_size=None)
    saver.save_checkpoint(str(tmp_path / "checkpoint"))
    prefixes = [str(p / "variables" / "variables") for p in (fast, tmp_path / "checkpoint")]
    readers = [tf.train.load_checkpoint(p) for p in prefixes]
    keys = [{k for k in r.get_variable_to_shape_map() if "OBJECT_GRAPH" not in k} for r in readers]
    assert keys[0] == keys[1] and len(keys[0]) == 3 * ACTIONS + 2  # a, b, n per arm; θ; step
    for key in keys[0]:
        np.testing.assert_array_equal(readers[0].get_tensor(key), readers[1].get_tensor(key))

    loaded = {name: tf.saved_model.load(str(tmp_path / name)) for name in ("fast", "full")}
    variables = {n: {v.name: v.numpy() for v in m.model_variables} for n, m in loaded.items()}
    assert variables["fast"].keys() == variables["full"].keys()
    for name, value in variables["full"].items():
        np.testing.assert_array_equal(variables["fast"][name], value)
    assert float(variables["fast"]["num_samples_0:0"]) == 40
    contexts = np.random.default_rng(1).normal(size=(500, RANK))
    step = ts.restart(tf.constant(contexts), batch_size=len(contexts))
    chosen = {n: m.action(step).action.numpy() for n, m in loaded.items()}
    np.testing.assert_array_equal(chosen["fast"], chosen["full"])
    assert len(set(chosen["fast"].tolist())) > 1  # the contexts tell the arms apart
    served = load_policy(str(fast), fast_path=False)  # the predictor, through the SavedModel
    np.testing.assert_array_equal(served.actions(contexts), chosen["full"])
    np.testing.assert_array_equal(load_policy(str(fast)).actions(contexts), chosen["full"])
    assert read_metadata(str(fast)).policy_version == "v1"

    other = AgentSpec(
        LINUCB, ACTIONS, RANK, alpha=2.0, tikhonov_weight=0.5
    )  # alpha is in the graph
    moved = publish.bandit_metadata(other, "v2", [], 400)
    publish.publish(_trained(other, 2).policy, str(tmp_path / "other"), moved, {}, like=str(fast))
    assert (tmp_path / "other/saved_model.pb").read_bytes() != (
        fast / "saved_model.pb"
    ).read_bytes()
    assert tf.saved_model.load(str(tmp_path / "other")).action(step).action.shape == (500,)


def test_a_warm_start_is_read_from_its_checkpoint_as_the_saved_model_holds_it(tmp_path: Path):
    """The off-policy trainer reads the warm start's statistics from its checkpoint (no
    tf.saved_model.load): the same values as the loaded SavedModel's variables."""
    from app.policy_store import linear_state_from_variables, read_linear_state

    agent = _trained(SPEC, 3)
    publish.publish(
        agent.policy, str(tmp_path / "p"), publish.bandit_metadata(SPEC, "v", [], 1), {}
    )
    read = read_linear_state(str(tmp_path / "p"), ACTIONS)
    loaded = tf.saved_model.load(str(tmp_path / "p")).model_variables
    expected = linear_state_from_variables(loaded, ACTIONS)
    for name in ("cov_matrix", "data_vector", "num_samples"):
        np.testing.assert_array_equal(getattr(read, name), getattr(expected, name))
    assert read.num_samples.tolist() == [40.0] * ACTIONS
