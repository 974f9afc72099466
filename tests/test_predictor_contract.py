"""The predictor's HTTP contract, in process (the ASGI app) for every request shape."""

import asyncio
import threading
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from app.predictor.policy import ServingPolicy, load_policy
from app.predictor.server import PredictorApp

RANK = 5


@pytest.fixture(scope="module")
def policy(trained_policy: Path) -> ServingPolicy:
    return load_policy(str(trained_policy))


def client_for(app: PredictorApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://predictor")


def call(app: PredictorApp, method: str, path: str, **kwargs) -> httpx.Response:
    async def go() -> httpx.Response:
        async with client_for(app) as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


@pytest.fixture
def app(policy: ServingPolicy) -> PredictorApp:
    served = PredictorApp(lambda: policy, health_route="/h", predict_route="/p")
    asyncio.run(served.load())
    return served


def observations(n: int, seed: int = 0) -> list[list[float]]:
    return np.random.default_rng(seed).normal(size=(n, RANK)).round(6).tolist()


def test_one_prediction_per_instance_in_order(app: PredictorApp, policy: ServingPolicy):
    rows = observations(25)
    response = call(app, "POST", "/p", json={"instances": [{"observation": r} for r in rows]})
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    expected = policy.actions(np.array(rows))
    assert [p["action"] for p in predictions] == expected.tolist()
    assert len({p["request_id"] for p in predictions}) == 1
    assert [p["instance_index"] for p in predictions] == list(range(25))
    for p in predictions:
        assert p["movie_id"] == p["action"] + 1
        assert p["title"] == f"Synthetic Movie {p['movie_id']} (1995)"
        assert p["policy_version"] == "v-test-1"


def test_batched_instances_of_the_vertex_sample(app: PredictorApp, policy: ServingPolicy):
    rows = observations(6, seed=1)
    body = {
        "instances": [
            {"observation": rows[:4]},
            {"observation": rows[4]},
            {"observation": rows[5:]},
        ]
    }
    predictions = call(app, "POST", "/p", json=body).json()["predictions"]
    actions = policy.actions(np.array(rows)).tolist()
    assert predictions[0]["actions"] == actions[:4]
    assert predictions[0]["movie_ids"] == [a + 1 for a in actions[:4]]
    assert predictions[1]["action"] == actions[4]
    assert predictions[2]["actions"] == actions[5:]


def test_integers_are_numbers_too(app: PredictorApp):
    response = call(app, "POST", "/p", json={"instances": [{"observation": [1, 0, 2, 0, 1]}]})
    assert response.status_code == 200


def test_health_only_once_a_policy_is_loaded(policy: ServingPolicy):
    release = threading.Event()

    def slow_loader() -> ServingPolicy:
        release.wait(10)
        return policy

    served = PredictorApp(slow_loader, health_route="/h", predict_route="/p")

    async def scenario() -> list[int]:
        async with client_for(served) as client:
            loading = asyncio.create_task(served.load())
            await asyncio.sleep(0.05)
            before = (await client.get("/h")).status_code
            refused = (
                await client.post("/p", json={"instances": [{"observation": [0.0] * RANK}]})
            ).status_code
            release.set()
            await loading
            after = (await client.get("/h")).status_code
            return [before, refused, after]

    assert asyncio.run(scenario()) == [503, 503, 200]


def test_a_policy_that_cannot_load_keeps_health_failing():
    def broken() -> ServingPolicy:
        raise FileNotFoundError("gs://nowhere/policy")

    served = PredictorApp(broken, health_route="/h", predict_route="/p")
    asyncio.run(served.load())
    response = call(served, "GET", "/h")
    assert response.status_code == 503
    assert "gs://nowhere/policy" in response.json()["reason"]


BAD_BODIES = [
    (b"", "request body is empty"),
    (b"{not json", "request body is not valid JSON"),
    (b'{"instances": [{"observation": [NaN, 1, 2, 3, 4]}]}', "not valid JSON"),
    (b'{"instances": [{"observation": [1e999, 1, 2, 3, 4]}]}', "not valid JSON"),
    (b"[1, 2]", 'expected a JSON object with an "instances" list'),
    (b'{"observations": []}', 'expected a JSON object with an "instances" list'),
    (b'{"instances": []}', '"instances" must be a non-empty list'),
    (b'{"instances": {"observation": [1]}}', '"instances" must be a non-empty list'),
    (
        b'{"instances": [[1, 2, 3, 4, 5]]}',
        'instances[0] must be an object with an "observation" list',
    ),
    (
        b'{"instances": [{"observation": []}]}',
        "instances[0].observation must be a non-empty list of 5 numbers",
    ),
    (
        b'{"instances": [{"observation": "1,2,3,4,5"}]}',
        "instances[0].observation must be a non-empty list",
    ),
    (
        b'{"instances": [{"observation": [1, 2, 3]}]}',
        "instances[0].observation has 3 values; this policy expects 5 (rank_k)",
    ),
    (
        b'{"instances": [{"observation": [1, 2, 3, 4, 5]}, {"observation": [1, 2, "x", 4, 5]}]}',
        "instances[1].observation[2] is the string 'x', not a number",
    ),
    (
        b'{"instances": [{"observation": [1, 2, null, 4, 5]}]}',
        "instances[0].observation[2] is null, not a number",
    ),
    (
        b'{"instances": [{"observation": [1, true, 3, 4, 5]}]}',
        "instances[0].observation[1] is a boolean, not a number",
    ),
    (
        b'{"instances": [{"observation": [[1, 2, 3, 4, 5], [1, 2]]}]}',
        "instances[0].observation[1] has 2 values",
    ),
    (
        b'{"instances": [{"observation": [[1, 2, 3, 4, 5], 7]}]}',
        "instances[0].observation[1] must be a list of 5 numbers",
    ),
    (
        b'{"instances": [{"observation": [1, 2, 3, 4, [5]]}]}',
        "instances[0].observation[4] is a list, not a number",
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD_BODIES)
def test_bad_bodies_get_400_naming_the_problem(app: PredictorApp, body: bytes, message: str):
    response = call(app, "POST", "/p", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert message in response.json()["error"]


@pytest.mark.parametrize(
    ("content_type", "shown"),
    [
        ("text/plain", "text/plain"),
        ("application/x-www-form-urlencoded", "application/x-www-form-urlencoded"),
    ],
)
def test_wrong_content_type_is_refused(app: PredictorApp, content_type: str, shown: str):
    body = orjson.dumps({"instances": [{"observation": [0.0] * RANK}]})
    response = call(app, "POST", "/p", content=body, headers={"content-type": content_type})
    assert response.status_code == 400
    assert response.json()["error"] == f"content type must be application/json, got {shown}"


def test_json_with_charset_is_fine(app: PredictorApp):
    body = orjson.dumps({"instances": [{"observation": [0.0] * RANK}]})
    response = call(
        app, "POST", "/p", content=body, headers={"content-type": "application/json; charset=utf-8"}
    )
    assert response.status_code == 200


def test_bodies_over_the_vertex_limit_are_refused(app: PredictorApp):
    filler = b'{"instances": [{"observation": [0,0,0,0,0]}], "pad": "' + b"x" * 1_500_000 + b'"}'
    response = call(app, "POST", "/p", content=filler, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "limit is 1500000" in response.json()["error"]


def test_routes_and_methods(app: PredictorApp):
    assert call(app, "GET", "/h").json() == {"status": "ok", "policy_version": "v-test-1"}
    assert call(app, "GET", "/p").status_code == 405
    assert call(app, "GET", "/predict").status_code == 404


def test_health_names_an_open_canary(app: PredictorApp, trained_policy: Path):
    """So that a caller (the demo) can wait until the canary serves before sending traffic."""
    candidate = load_policy(str(trained_policy))
    assert app.policy is not None
    app.policy.canary = (candidate, 0.3)
    assert call(app, "GET", "/h").json() == {
        "status": "ok",
        "policy_version": "v-test-1",
        "canary_version": candidate.version,
        "canary_share": 0.3,
    }


class RecordingSink:
    def __init__(self, fail: bool = False):
        self.fail, self.records = fail, []

    def record(self, served):
        if self.fail:
            raise ConnectionError("pubsub is down")
        self.records.append(
            (served.request_id, served.observations.tolist(), served.actions.tolist())
        )


def test_every_served_prediction_is_logged_with_its_request_id(policy: ServingPolicy):
    sink = RecordingSink()
    served = PredictorApp(lambda: policy, health_route="/h", predict_route="/p", sink=sink)
    asyncio.run(served.load())
    rows = observations(3, seed=4)
    predictions = call(
        served, "POST", "/p", json={"instances": [{"observation": r} for r in rows]}
    ).json()["predictions"]
    ((request_id, logged_rows, actions),) = sink.records
    assert request_id == predictions[0]["request_id"]
    assert logged_rows == rows and actions == [p["action"] for p in predictions]


def test_a_failing_prediction_log_never_fails_the_response(policy: ServingPolicy):
    served = PredictorApp(
        lambda: policy, health_route="/h", predict_route="/p", sink=RecordingSink(fail=True)
    )
    asyncio.run(served.load())
    response = call(served, "POST", "/p", json={"instances": [{"observation": [0.0] * RANK}]})
    assert response.status_code == 200 and len(response.json()["predictions"]) == 1


def test_a_new_deployment_is_picked_up_without_a_restart(policy: ServingPolicy):
    versions = iter(["v1", "v1", "v2"])
    loads = []

    def loader() -> ServingPolicy:
        loads.append(1)
        return policy

    served = PredictorApp(loader, marker=lambda: next(versions, "v2"), reload_seconds=0.01)

    async def scenario() -> int:
        await served.load()
        watching = asyncio.create_task(served.watch())
        await asyncio.sleep(0.2)
        watching.cancel()
        return len(loads)

    assert asyncio.run(scenario()) == 2  # loaded once at start, once when the pointer moved
