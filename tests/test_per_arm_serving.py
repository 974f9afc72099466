"""Per-arm serving: the predictor chooses among any candidate set of the saved catalogue (all
of it by default), returns the chosen movie or a top-k slate, and logs what it served."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
from pathlib import Path

import httpx
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tf_agents.trajectories import time_step as ts

from app import messages
from app.agents import LINUCB, AgentSpec, linear_bandit
from app.config import DataConfig, Settings
from app.environment import GLOBAL_KEY, PER_ARM_KEY, interaction_features
from app.exploration import EPSILON_GREEDY, SOFTMAX, Exploration
from app.policy_store import (
    METADATA_FILE,
    TRAINED_DIR,
    TRAINED_PER_ARM_DIR,
    PolicyStoreError,
    read_catalogue,
)
from app.predictor.location import default_location
from app.predictor.policy import (
    PerArmPolicy,
    ServingPolicy,
    load_for_serving,
    load_per_arm_policy,
    load_policy,
    open_canary,
)
from app.predictor.server import PredictorApp, Served
from app.predictor.sink import PredictionLogSink
from app.schemas import PER_ARM
from tests.synthetic import NUM_MOVIES

RANK = 5
TRAINED_CANDIDATES = 6  # the SavedModel's arm count: the per-arm observation it was built for


@pytest.fixture(scope="module")
def per_arm_dir(movielens_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from app.trainer.flags import TrainingArgs
    from app.trainer.run import run

    settings = Settings(
        artifacts_dir=str(tmp_path_factory.mktemp("per-arm")),
        data=DataConfig(movielens_dir=str(movielens_dir), download=False),
    )
    args = TrainingArgs(
        training_loops=40,
        rank_k=RANK,
        num_actions=TRAINED_CANDIDATES,
        per_arm=True,
        agent_alpha=1.0,
        tikhonov_weight=1.0,
        progress=False,
        policy_version="v-arm-1",
    )
    return Path(run(args, settings).policy_dir)


@pytest.fixture(scope="module")
def policy(per_arm_dir: Path) -> PerArmPolicy:
    return load_per_arm_policy(str(per_arm_dir))


def users(n: int, seed: int = 0) -> np.ndarray:
    """Contexts of the size of the catalogue's features (float32, as the environment's)."""
    return np.random.default_rng(seed).normal(scale=0.3, size=(n, RANK)).astype(np.float32)


def call(app: PredictorApp, body: object, path: str = "/predict") -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://p") as client:
            return await client.post(path, json=body)

    return asyncio.run(go())


def app_for(policy, **kwargs) -> PredictorApp:
    app = PredictorApp(lambda: policy, **kwargs)
    asyncio.run(app.load())
    return app


def test_choices_equal_the_saved_tf_agents_policy(per_arm_dir: Path, policy: PerArmPolicy):
    """The SavedModel takes exactly its trained number of arms: over 400 users, each with its
    own random candidate set of that size, the predictor picks what TF-Agents' policy picks."""
    saved = tf.saved_model.load(str(per_arm_dir))
    features = read_catalogue(str(per_arm_dir)).features
    rng = np.random.default_rng(1)
    contexts = users(400, seed=1)
    candidates = np.stack(
        [rng.choice(NUM_MOVIES, TRAINED_CANDIDATES, replace=False) for _ in contexts]
    )
    observation = {
        GLOBAL_KEY: tf.constant(contexts),
        PER_ARM_KEY: tf.constant(
            interaction_features(contexts, features[candidates].astype(np.float32))
        ),
    }
    theirs = saved.action(ts.restart(observation, batch_size=len(contexts))).action.numpy()
    slates = policy.choose(contexts.astype(np.float64), list(candidates), [1] * len(contexts), rng)
    np.testing.assert_array_equal(slates.first, candidates[np.arange(len(contexts)), theirs])
    assert len(set(theirs.tolist())) > 1 and len(set(slates.first.tolist())) > 5


def test_the_one_matmul_equals_the_direct_linucb_over_the_whole_catalogue(
    per_arm_dir: Path, policy: PerArmPolicy
):
    """Scores over all movies equal app.linear's per-arm LinUCB on the joint features
    [u, u ⊙ v] of every movie, and a top-k slate is the k best of them in order."""
    from app.policy_store import linear_state_from_variables

    meta = policy.metadata
    spec = AgentSpec(LINUCB, NUM_MOVIES, RANK, meta.alpha, meta.tikhonov_weight, per_arm=True)
    reference = linear_bandit(spec)
    reference.set_state(
        linear_state_from_variables(tf.saved_model.load(str(per_arm_dir)).model_variables, 1)
    )
    contexts = users(50, seed=2).astype(np.float64)
    features = policy.catalogue.features
    expected = reference.scores(
        {
            GLOBAL_KEY: contexts,
            PER_ARM_KEY: interaction_features(
                contexts, np.broadcast_to(features, (50, *features.shape))
            ),
        }
    )
    np.testing.assert_allclose(policy.scorer.scores(contexts, None), expected, rtol=1e-9, atol=1e-9)
    slates = policy.choose(contexts, [None] * 50, [4] * 50, np.random.default_rng(0))
    for row, served in enumerate(slates.actions):
        assert served.tolist() == np.argsort(-expected[row], kind="stable")[:4].tolist()
        np.testing.assert_allclose(slates.scores[row], expected[row][served], rtol=1e-9)


def test_a_request_gets_the_chosen_movie_or_a_top_k_slate(policy: PerArmPolicy):
    app = app_for(policy)
    u = users(3, seed=3).astype(np.float64)
    some = [3, 7, 11, 19, 25]
    body = {
        "instances": [
            {"observation": u[0].tolist()},
            {"observation": u[1].tolist(), "k": 3},
            {"observation": u[2].tolist(), "candidates": some, "k": 2},
        ]
    }
    response = call(app, body)
    assert response.status_code == 200, response.text
    first, slate, among = response.json()["predictions"]
    everything = policy.scorer.scores(u, None)
    assert first["movie_id"] == int(np.argmax(everything[0])) + 1
    assert first["title"] == f"Synthetic Movie {first['movie_id']} (1995)"
    assert first["score"] == pytest.approx(everything[0].max())
    assert first["policy_version"] == "v-arm-1" and first["instance_index"] == 0
    assert slate["movie_ids"] == (np.argsort(-everything[1], kind="stable")[:3] + 1).tolist()
    assert slate["scores"] == sorted(slate["scores"], reverse=True)
    assert len(slate["titles"]) == 3 and slate["instance_index"] == 1
    best_of_some = sorted(some, key=lambda m: -everything[2][m - 1])[:2]
    assert among["movie_ids"] == best_of_some
    assert len({p["request_id"] for p in (first, slate, among)}) == 1


@pytest.mark.parametrize(
    ("instance", "message"),
    [
        ({"candidates": [1, 2, 999]}, "instances[0].candidates holds movie ids not in the"),
        ({"candidates": [1, -4]}, "not in the policy's catalogue of 30 movies: -4"),
        ({"candidates": []}, "instances[0].candidates must be a non-empty list of movie ids"),
        ({"candidates": [1, 2, 2]}, "instances[0].candidates repeats movie id 2"),
        ({"candidates": [1, "2"]}, "must hold whole-number movie ids, found the string '2'"),
        ({"candidates": [1, True]}, "must hold whole-number movie ids, found a boolean"),
        ({"k": 0}, "instances[0].k must be a whole number from 1 to 30"),
        ({"k": 31}, "instances[0].k must be a whole number from 1 to 30"),
        ({"k": 3, "candidates": [4, 5]}, "from 1 to 2 (the number of candidates), got 3"),
        (
            {"k": 2.5},
            "(the number of candidates), got float",
        ),
        ({"observation": [[0.1] * RANK]}, "a per-arm policy takes one user per instance"),
        ({"observation": [0.1] * (RANK + 1)}, "has 6 values; this policy expects 5 (rank_k)"),
        ({"observation": [1e200] * RANK}, "instances[0].observation: the policy's scores"),
    ],
)
def test_bad_requests_get_a_400_naming_what_was_wrong(
    policy: PerArmPolicy, instance: dict, message: str
):
    app = app_for(policy)
    response = call(app, {"instances": [{"observation": [0.1] * RANK} | instance]})
    assert response.status_code == 400
    assert message in response.json()["error"]


class RecordingSink:
    def __init__(self) -> None:
        self.served: list[Served] = []

    def record(self, served: Served) -> None:
        self.served.append(served)


@pytest.mark.parametrize(
    "exploration",
    [Exploration(EPSILON_GREEDY, epsilon=0.3), Exploration(SOFTMAX, temperature=0.5)],
    ids=["epsilon_greedy", "softmax"],
)
def test_served_distribution_equals_the_logged_propensities(
    per_arm_dir: Path, exploration: Exploration
):
    """Two users, one over the whole catalogue and one over five candidates, asked 3,000 times
    each: every movie's frequency lies within 4.5 binomial standard deviations of its logged
    propensity, the logged propensities are the policy's distribution, and the logged
    candidates are the ones asked about."""
    policy = load_per_arm_policy(str(per_arm_dir), exploration=exploration)
    sink = RecordingSink()
    app = app_for(policy, sink=sink, rng=np.random.default_rng(11))
    u = users(2, seed=5).astype(np.float64)
    some = np.array([2, 9, 14, 21, 30])
    requests = 3000
    body = {
        "instances": [
            {"observation": u[0].tolist()},
            {"observation": u[1].tolist(), "candidates": some.tolist(), "k": 2},
        ]
        * 100
    }
    for _ in range(requests // 100):
        assert call(app, body).status_code == 200
    actions = np.concatenate([s.actions for s in sink.served]).reshape(-1, 2)
    logged = np.concatenate([s.propensities for s in sink.served]).reshape(-1, 2)
    for s in sink.served:
        assert s.candidates is not None
        assert s.candidates[0] is None and s.candidates[1].tolist() == some.tolist()
    for column, chosen_from in ((0, None), (1, some - 1)):
        expected = policy.distribution(u[column : column + 1], chosen_from)[0]
        assert expected.sum() == pytest.approx(1.0)
        positions = (
            actions[:, column]
            if chosen_from is None
            else np.searchsorted(chosen_from, actions[:, column])
        )
        assert chosen_from is None or np.all(chosen_from[positions] == actions[:, column])
        np.testing.assert_allclose(logged[:, column], expected[positions], atol=1e-12)
        counts = np.bincount(positions, minlength=len(expected))
        spread = np.sqrt(requests * expected * (1 - expected))
        assert np.all(np.abs(counts - requests * expected) <= 4.5 * spread + 1e-9)
        assert len(set(positions.tolist())) > 1  # the exploration explores


def test_greedy_logs_propensity_one(policy: PerArmPolicy):
    sink = RecordingSink()
    app = app_for(policy, sink=sink)
    u = users(4, seed=6).astype(np.float64)
    call(app, {"instances": [{"observation": r} for r in u.tolist()]})
    (served,) = sink.served
    assert served.propensities.tolist() == [1.0] * 4
    assert served.actions.tolist() == np.argmax(policy.scorer.scores(u, None), axis=1).tolist()


class CapturingPublisher:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    def publish(self, topic, data, kind):
        self.messages.append(data)
        future = __import__("concurrent.futures").futures.Future()
        future.set_result("id")
        return future


def test_the_prediction_log_records_candidates_and_the_warehouse_stores_them(
    policy: PerArmPolicy, tmp_path: Path
):
    from app.warehouse.duckdb_store import DuckDBWarehouse

    publisher = CapturingPublisher()
    app = app_for(policy, sink=PredictionLogSink(publisher, "predictions"))
    u = users(3, seed=7).astype(np.float64).tolist()
    body = {
        "instances": [
            {"observation": u[0], "candidates": [5, 3, 8]},
            {"observation": u[1]},
            {"observation": u[2], "k": 3},
        ]
    }
    predictions = call(app, body).json()["predictions"]
    (data,) = publisher.messages
    records = messages.parse(data)
    assert [r.candidates for r in records] == [[5, 3, 8], None, None]  # None: whole catalogue
    first = [p["movie_id"] for p in predictions[:2]] + [predictions[2]["movie_ids"][0]]
    assert [r.action + 1 for r in records] == first
    assert [r.propensity for r in records] == [1.0, 1.0, 1.0]
    top_k = predictions[2]["movie_ids"]
    assert [r.slate for r in records] == [None, None, top_k]  # the whole top-k answer
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    warehouse.insert_predictions(records)
    with warehouse._connect() as db:
        stored = db.execute(
            "SELECT candidates, policy_kind, slate FROM predictions ORDER BY instance_index"
        ).fetchall()
    # the kind keeps a whole-catalogue row (candidates NULL) apart from a global one
    assert stored == [([5, 3, 8], PER_ARM, None), (None, PER_ARM, None), (None, PER_ARM, top_k)]


def canary_pair(trained_policy: Path) -> ServingPolicy:
    serving = load_policy(str(trained_policy))
    metadata = dataclasses.replace(serving.metadata, policy_version="v-canary")
    open_canary(serving, ServingPolicy(metadata, serving.scorer, serving.uri), 0.5)
    return serving


def test_refused_requests_do_not_draw_the_canary_split(trained_policy: Path):
    """The split is drawn only for a request that will be answered: with bad requests in
    between, the good ones see the same versions as without them."""
    good = {"instances": [{"observation": [0.1] * RANK}]}

    def versions(with_bad: bool) -> list[str]:
        app = app_for(canary_pair(trained_policy), rng=np.random.default_rng(3))
        seen = []
        for _ in range(30):
            if with_bad:
                assert call(app, {"instances": []}).status_code == 400
                assert call(app, {"instances": [{"observation": [1]}]}).status_code == 400
            seen.append(call(app, good).json()["predictions"][0]["policy_version"])
        return seen

    plain = versions(with_bad=False)
    assert set(plain) == {"v-test-1", "v-canary"}
    assert versions(with_bad=True) == plain


def test_a_canary_must_read_requests_as_the_serving_policy(
    trained_policy: Path, policy: PerArmPolicy
):
    with pytest.raises(PolicyStoreError, match="cannot share traffic"):
        open_canary(load_policy(str(trained_policy)), policy, 0.1)


def test_health_and_hot_reload_serve_per_arm_like_global(per_arm_dir: Path):
    """load_for_serving picks the kind from the metadata; a new per-arm version is swapped in
    when the marker moves, and health names what serves."""
    first = load_for_serving(str(per_arm_dir))
    assert isinstance(first, PerArmPolicy)
    second = load_for_serving(str(per_arm_dir))
    second.metadata = dataclasses.replace(second.metadata, policy_version="v-arm-2")
    markers = iter(["1", "2"])
    loaded = iter([first, second])
    app = PredictorApp(lambda: next(loaded), marker=lambda: next(markers, "2"), reload_seconds=0.01)

    async def scenario() -> list[str]:
        await app.load()
        before = app.policy.version
        watching = asyncio.create_task(app.watch())
        await asyncio.sleep(0.2)
        watching.cancel()
        return [before, app.policy.version]

    assert asyncio.run(scenario()) == ["v-arm-1", "v-arm-2"]

    async def health() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://p") as client:
            return await client.get("/health")

    assert asyncio.run(health()).json() == {"status": "ok", "policy_version": "v-arm-2"}


def test_serve_defaults_to_the_policy_trained_last(tmp_path: Path):
    for name, when in ((TRAINED_DIR, 100), (TRAINED_PER_ARM_DIR, 200)):
        (tmp_path / name).mkdir()
        (tmp_path / name / METADATA_FILE).write_text(json.dumps({}))
        os.utime(tmp_path / name / METADATA_FILE, (when, when))
    assert default_location(str(tmp_path)) == f"{tmp_path}/{TRAINED_PER_ARM_DIR}"
    os.utime(tmp_path / TRAINED_DIR / METADATA_FILE, (300, 300))
    assert default_location(str(tmp_path)) == f"{tmp_path}/{TRAINED_DIR}"


def test_the_catalogue_is_the_movies_as_training_observed_them(
    per_arm_dir: Path, movielens_dir: Path
):
    """A served request scores movies with the features the policy was trained on (scaled as
    the environment observes them), in movie-id order, with their titles."""
    from app import movielens
    from app.environment import MovieLensPerArmBandit, factorize_per_arm

    ratings = movielens.load_ratings_matrix(movielens_dir / "u.data")
    env = MovieLensPerArmBandit(factorize_per_arm(ratings, RANK), 1, TRAINED_CANDIDATES)
    catalogue = read_catalogue(str(per_arm_dir))
    np.testing.assert_array_equal(catalogue.features, env.movie_features)
    assert catalogue.movie_ids.tolist() == list(range(1, NUM_MOVIES + 1))
    assert catalogue.titles[2] == "Synthetic Movie 3 (1995)"


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)
MOVIE_IDS = st.lists(st.integers(-3, NUM_MOVIES + 3) | JSON_VALUES, max_size=8)


def _finite(value: float) -> bool:
    """A JSON number as a float: integers beyond int64 are finite too (np.isfinite refuses
    them: found by this fuzz test), those beyond float's range are not."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


@pytest.fixture(scope="module")
def fuzzed_app(policy: PerArmPolicy) -> PredictorApp:
    return app_for(policy)


@settings(max_examples=250, deadline=1_000, database=None)
@given(
    observation=st.lists(st.floats(-10, 10) | JSON_VALUES, min_size=0, max_size=RANK + 1)
    | JSON_VALUES,
    candidates=st.none() | MOVIE_IDS | JSON_VALUES,
    k=st.none() | st.integers(-2, NUM_MOVIES + 2) | JSON_VALUES,
)
@example(observation=[0.0] * (RANK - 1) + [-(2**63) - 1], candidates=None, k=None)
def test_fuzzed_per_arm_instances_get_a_400_or_a_valid_answer(
    fuzzed_app: PredictorApp, observation, candidates, k
):
    """Whatever the observation, candidates and k hold: a 400 naming the instance, or the
    answer a reference reading of the instance expects, never a 5xx."""
    instance = {"observation": observation}
    if candidates is not None:
        instance["candidates"] = candidates
    if k is not None:
        instance["k"] = k
    response = call(fuzzed_app, {"instances": [instance]})
    ids = candidates if candidates is not None else list(range(1, NUM_MOVIES + 1))
    good = (
        isinstance(observation, list)
        and len(observation) == RANK
        and all(type(v) in (int, float) and _finite(v) for v in observation)
        and isinstance(ids, list)
        and 0 < len(ids) == len(set(map(repr, ids)))
        and all(type(v) is int and 1 <= v <= NUM_MOVIES for v in ids)
        and (k is None or (type(k) is int and 1 <= k <= len(ids)))
    )
    if good and max(abs(v) for v in observation) > 1e6:  # may be too large to score
        assert response.status_code in (200, 400), response.text
    elif good:
        assert response.status_code == 200, response.text
        (prediction,) = response.json()["predictions"]
        served = prediction.get("movie_ids", [prediction.get("movie_id")])
        assert len(served) == (k or 1) and set(served) <= set(ids)
    else:
        assert response.status_code == 400, (instance, response.text)
        assert "instances[0]" in response.json()["error"] or "JSON" in response.json()["error"]


def test_a_worker_runs_one_blas_thread(per_arm_dir: Path):
    """What Granian's worker factory builds limits numpy's BLAS to one thread."""
    import subprocess
    import sys

    code = (
        "from threadpoolctl import threadpool_info\n"
        "from app.predictor.worker import create\n"
        "before = {i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'}\n"
        "create()\n"
        "after = {i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'}\n"
        "print(before, after)\n"
    )
    env = {**os.environ, "AIP_STORAGE_URI": str(per_arm_dir), "OPENBLAS_NUM_THREADS": "2"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "{2} {1}"


def test_lints_serves_a_posterior_sample_with_unknown_propensity(
    per_arm_dir: Path, policy: PerArmPolicy
):
    """Per-arm LinTS: its deterministic scores are the posterior mean; served greedily, the
    choice is a posterior draw (as TF-Agents samples), so the logged propensity is unknown."""
    from app.agents import LINTS
    from app.policy_store import linear_state_from_variables
    from app.predictor.policy import LinearArmScorer

    metadata = dataclasses.replace(policy.metadata, agent=LINTS, alpha=20.0)  # wide draws
    state = linear_state_from_variables(tf.saved_model.load(str(per_arm_dir)).model_variables, 1)
    lints = PerArmPolicy(
        metadata, LinearArmScorer(metadata, state, policy.catalogue), policy.catalogue, "memory"
    )
    contexts = np.repeat(users(1, seed=9).astype(np.float64), 200, axis=0)
    mean, _ = policy.scorer.mean_and_variance(contexts, None)
    np.testing.assert_allclose(lints.scorer.scores(contexts, None), mean)
    slates = lints.choose(contexts, [None] * 200, [1] * 200, np.random.default_rng(0))
    assert slates.propensities is None
    assert len(set(slates.first.tolist())) > 1  # one user, many draws: several movies


def test_a_per_arm_canary_serves_its_share_and_health_names_it(per_arm_dir: Path):
    serving = load_per_arm_policy(str(per_arm_dir))
    candidate = load_per_arm_policy(str(per_arm_dir))
    candidate.metadata = dataclasses.replace(candidate.metadata, policy_version="v-arm-canary")
    open_canary(serving, candidate, 0.5)
    app = app_for(serving, rng=np.random.default_rng(4))
    body = {"instances": [{"observation": [0.1] * RANK, "k": 2}]}
    seen = [call(app, body).json()["predictions"][0]["policy_version"] for _ in range(40)]
    assert set(seen) == {"v-arm-1", "v-arm-canary"}

    async def health() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://p") as client:
            return await client.get("/health")

    assert asyncio.run(health()).json() == {
        "status": "ok",
        "policy_version": "v-arm-1",
        "canary_version": "v-arm-canary",
        "canary_share": 0.5,
    }


def test_a_deployed_per_arm_policy_is_served_from_the_pointer(per_arm_dir: Path, tmp_path: Path):
    """What `recloop serve` does with a deployment folder: follow CURRENT to a per-arm policy
    (its catalogue copied with it) and answer over the whole catalogue."""
    from app.config import ServingConfig
    from app.deployer import pointer
    from app.predictor.asgi import build_app

    policies = str(tmp_path / "policies")
    assert pointer.deploy(str(per_arm_dir), policies) == "v-arm-1"
    app = build_app(ServingConfig(), policies)
    asyncio.run(app.load())
    assert isinstance(app.policy, PerArmPolicy)
    response = call(app, {"instances": [{"observation": [0.1] * RANK, "k": NUM_MOVIES}]})
    assert sorted(response.json()["predictions"][0]["movie_ids"]) == list(range(1, NUM_MOVIES + 1))
