"""The actor-critic's slate policy on the predictor's per-arm path: numpy scoring with parity
to the saved PolicySaver policy, the request/response contract, logging and hot reload."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.config import DataConfig, Settings
from app.policy_store import METADATA_FILE, TRAINED_DIR, TRAINED_SLATE_DIR
from app.predictor.location import default_location
from app.predictor.policy import PerArmPolicy, load_for_serving
from app.predictor.server import PredictorApp, Served
from app.slate.serving import scorer_from_saved, state_of
from app.trainer.flags import parse_args
from app.trainer.run import run
from tests.synthetic import write_movielens

MOVIES, K = 300, 10


@pytest.fixture(scope="module")
def slate_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = write_movielens(tmp_path_factory.mktemp("ml300"), movies=MOVIES)
    artifacts = tmp_path_factory.mktemp("slate-policy")
    settings = Settings(
        artifacts_dir=str(artifacts), data=DataConfig(movielens_dir=str(data), download=False)
    )
    args = parse_args(["--agent=actor_critic", "--training-loops=2", "--batch-size=4"])
    return Path(run(args, settings).policy_dir)


def test_served_scores_rank_as_the_saved_policy_chooses(slate_policy: Path):
    import tensorflow as tf
    from tf_agents.trajectories import time_step as ts

    saved = tf.saved_model.load(str(slate_policy))
    items = saved.model_variables[0].numpy()[:MOVIES]  # the policy's embeddings, pad row last
    scorer = scorer_from_saved(saved, items)
    rng = np.random.default_rng(0)
    histories = np.array(
        [
            [MOVIES, MOVIES, MOVIES, MOVIES, MOVIES],
            [MOVIES, MOVIES, 3, 7, 11],
            *rng.choice(MOVIES, size=(6, 5), replace=False).tolist(),
        ]
    )
    chosen = saved.action(ts.restart(tf.constant(histories, tf.int32), len(histories))).action
    scores = scorer.scores(state_of(histories, items), None)
    for row, history in enumerate(histories):
        scores[row, history[history < MOVIES]] = -np.inf  # the saved policy excludes them
    served = np.argsort(-scores, axis=1, kind="stable")[:, :K]
    np.testing.assert_array_equal(served, chosen.numpy())


def test_a_policy_saved_with_the_tanh_actor_is_refused():
    import tensorflow as tf
    from tf_agents.agents.ddpg import actor_network
    from tf_agents.specs import tensor_spec

    from app.slate.serving import actor_layers

    old = actor_network.ActorNetwork(
        tf.TensorSpec([10], tf.float32),
        tensor_spec.BoundedTensorSpec([2], tf.float32, -1.0, 1.0),
        fc_layer_params=(4,),
    )
    old.create_variables()
    with pytest.raises(ValueError, match="tanh ActorNetwork"):
        actor_layers(old.variables)


def call(app: PredictorApp, body: object, path: str = "/predict") -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://p") as client:
            return await (client.post(path, json=body) if body else client.get(path))

    return asyncio.run(go())


class RecordingSink:
    def __init__(self) -> None:
        self.served: list[Served] = []

    def record(self, served: Served) -> None:
        self.served.append(served)


def test_the_predictor_serves_the_saved_policy_s_slates(slate_policy: Path):
    """Request: the user's state (the last 5 liked movies' embeddings) and the candidates
    (the catalogue minus what the user has seen), k = 10. Response: the 10 movies the
    PolicySaver policy chooses for that history, best first; the log holds what was served."""
    import tensorflow as tf
    from tf_agents.trajectories import time_step as ts

    policy = load_for_serving(str(slate_policy))
    assert (
        isinstance(policy, PerArmPolicy) and policy.rank_k == 5 * policy.catalogue.features.shape[1]
    )
    sink = RecordingSink()
    app = PredictorApp(lambda: policy, sink=sink)
    asyncio.run(app.load())
    items = policy.catalogue.features
    histories = np.array([[MOVIES, MOVIES, 3, 7, 11], [20, 40, 60, 80, 100]])
    instances = []
    for history in histories:
        seen = set(history[history < MOVIES].tolist())
        instances.append(
            {
                "observation": state_of(history[None], items)[0].tolist(),
                "candidates": [m + 1 for m in range(MOVIES) if m not in seen],
                "k": K,
            }
        )
    response = call(app, {"instances": instances})
    assert response.status_code == 200, response.text
    saved = tf.saved_model.load(str(slate_policy))
    chosen = saved.action(ts.restart(tf.constant(histories, tf.int32), 2)).action.numpy()
    predictions = response.json()["predictions"]
    assert [p["movie_ids"] for p in predictions] == (chosen + 1).tolist()
    assert {p["policy_version"] for p in predictions} == {policy.version}
    (served,) = sink.served
    np.testing.assert_array_equal(served.actions, chosen[:, 0])
    np.testing.assert_array_equal(served.propensities, [1.0, 1.0])

    wrong = call(app, {"instances": [{"observation": [0.1] * 17, "k": K}]})
    assert wrong.status_code == 400
    assert f"has 17 values; this policy expects {items.size // MOVIES * 5}" in wrong.json()["error"]


def test_a_new_slate_version_is_hot_swapped(slate_policy: Path):
    first, second = load_for_serving(str(slate_policy)), load_for_serving(str(slate_policy))
    second.metadata = dataclasses.replace(second.metadata, policy_version="v-slate-2")
    markers, loaded = iter(["1", "2"]), iter([first, second])
    app = PredictorApp(lambda: next(loaded), marker=lambda: next(markers, "2"), reload_seconds=0.01)

    async def scenario() -> list[str]:
        await app.load()
        before = app.policy.version
        watching = asyncio.create_task(app.watch())
        await asyncio.sleep(0.2)
        watching.cancel()
        return [before, app.policy.version]

    assert asyncio.run(scenario())[1] == "v-slate-2"
    assert call(app, None, "/health").json()["policy_version"] == "v-slate-2"


def test_serve_defaults_to_a_slate_policy_trained_last(tmp_path: Path):
    for name, when in ((TRAINED_DIR, 100), (TRAINED_SLATE_DIR, 200)):
        (tmp_path / name).mkdir()
        (tmp_path / name / METADATA_FILE).write_text("{}")
        os.utime(tmp_path / name / METADATA_FILE, (when, when))
    assert default_location(str(tmp_path)) == f"{tmp_path}/{TRAINED_SLATE_DIR}"


def test_a_slate_version_deployed_behind_the_pointer_is_reloaded(slate_policy: Path, tmp_path):
    """The predictor built from configuration (`build_app`: the pointer's marker and loader)
    follows a deployment folder's CURRENT from one slate version to the next and serves it."""
    import json
    import shutil

    from app.config import ServingConfig
    from app.deployer.pointer import deploy
    from app.predictor.asgi import build_app

    second = tmp_path / "second"
    shutil.copytree(slate_policy, second)
    metadata = json.loads((second / METADATA_FILE).read_text())
    first_version, metadata["policy_version"] = metadata["policy_version"], "v-slate-2"
    (second / METADATA_FILE).write_text(json.dumps(metadata))
    policies = tmp_path / "policies"
    deploy(str(slate_policy), str(policies))
    app = build_app(ServingConfig(), str(policies))
    app.reload_seconds = 0.02

    async def scenario() -> list[str]:
        await app.load()
        seen = [app.policy.version]
        watching = asyncio.create_task(app.watch())
        deploy(str(second), str(policies))
        for _ in range(500):
            await asyncio.sleep(0.02)
            if app.policy.version != seen[0]:
                break
        watching.cancel()
        return [*seen, app.policy.version]

    assert asyncio.run(scenario()) == [first_version, "v-slate-2"]
    items = app.policy.catalogue.features
    state = state_of(np.array([[MOVIES, MOVIES, 3, 7, 11]]), items)[0].tolist()
    response = call(app, {"instances": [{"observation": state, "k": K}]})
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    assert prediction["policy_version"] == "v-slate-2" and len(set(prediction["movie_ids"])) == K
