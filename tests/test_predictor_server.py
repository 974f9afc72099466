"""`python -m app.predictor` as Vertex AI runs the container: configured by AIP_* only."""

import json
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import numpy as np
import pytest
import requests
import tensorflow as tf
from hypothesis import given, settings
from tf_agents.trajectories import time_step as ts

from app.local.processes import PYTHON, free_port, running
from app.predictor.policy import load_policy
from tests.test_predictor_fuzz import FUZZ, bodies, check_answer


@pytest.fixture(scope="module")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the module's server printed (stdout and stderr)."""
    return tmp_path_factory.mktemp("predictor") / "server.log"


@pytest.fixture(scope="module")
def server(trained_policy: Path, server_log: Path):
    port = free_port()
    env = {
        "AIP_HTTP_PORT": str(port),
        "AIP_HEALTH_ROUTE": "/v1/endpoints/e/deployedModels/m",
        "AIP_PREDICT_ROUTE": "/v1/endpoints/e/deployedModels/m:predict",
        "AIP_STORAGE_URI": str(trained_policy),
    }
    base = f"http://127.0.0.1:{port}"
    ready = base + env["AIP_HEALTH_ROUTE"]
    with running([PYTHON, "-m", "app.predictor"], env, ready, log_path=server_log):
        yield base + env["AIP_PREDICT_ROUTE"]


def test_served_actions_equal_the_saved_tf_agents_policy(server: str, trained_policy: Path):
    import tensorflow_probability  # noqa: F401

    rows = np.random.default_rng(3).normal(size=(200, 5))
    response = httpx.post(server, json={"instances": [{"observation": r} for r in rows.tolist()]})
    assert response.status_code == 200
    served = [p["action"] for p in response.json()["predictions"]]
    saved = tf.saved_model.load(str(trained_policy))
    expected = saved.action(ts.restart(tf.constant(rows), batch_size=200)).action.numpy()
    assert served == expected.tolist()


def test_streamed_body_over_the_limit_is_refused_and_the_server_keeps_serving(server: str):
    def chunks():
        yield b'{"instances": [{"observation": [0,0,0,0,0]}], "pad": "'
        for _ in range(200):
            yield b"x" * 10_000
        yield b'"}'

    response = httpx.post(server, content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and "exceeds the limit" in response.json()["error"]
    for body in (b"", b"{", b'{"instances": [{"observation": [1, "a", 3, 4, 5]}]}'):
        bad = httpx.post(server, content=body, headers={"content-type": "application/json"})
        assert bad.status_code == 400
    ok = httpx.post(server, json={"instances": [{"observation": [0.1, 0.2, 0.3, 0.4, 0.5]}]})
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 1


def oversized(size: int) -> bytes:
    return b'{"instances": [{"observation": [0,0,0,0,0]}], "pad": "' + b"x" * size + b'"}'


def post_with_urllib(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.parametrize("size", [2_000_000, 20_000_000])
def test_oversized_bodies_get_a_readable_413(server: str, size: int):
    """Clients that send their whole body before reading (urllib, requests) read the 413 too:
    the server drains the refused body instead of closing on it (a reset, before)."""
    body = oversized(size)
    headers = {"content-type": "application/json"}
    answers = [
        post_with_urllib(server, body),
        (lambda r: (r.status_code, r.json()))(requests.post(server, data=body, headers=headers)),
        (lambda r: (r.status_code, r.json()))(httpx.post(server, content=body, headers=headers)),
    ]
    for status, payload in answers:
        assert status == 413
        assert payload["error"] == f"request body is {len(body)} bytes; the limit is 1500000"
    ok = httpx.post(server, json={"instances": [{"observation": [0.1, 0.2, 0.3, 0.4, 0.5]}]})
    assert ok.status_code == 200


def test_fuzzed_bodies_through_the_real_server_never_get_a_5xx(server: str, trained_policy: Path):
    """The fuzz of tests/test_predictor_fuzz.py, fewer bodies, through Granian's HTTP stack."""
    policy = load_policy(str(trained_policy))
    with httpx.Client(timeout=30) as client:

        @settings(FUZZ, max_examples=300)
        @given(body=bodies)
        def fuzz(body: bytes) -> None:
            response = client.post(
                server, content=body, headers={"content-type": "application/json"}
            )
            check_answer(policy, body, response.status_code, response.json(), limit=1_500_000)

        fuzz()
        ok = client.post(server, json={"instances": [{"observation": [0.1, 0.2, 0.3, 0.4, 0.5]}]})
        assert ok.status_code == 200


def test_observation_too_large_to_score_is_a_400_naming_the_instance(server: str, server_log: Path):
    """…and quietly: the overflow is found, not warned about (RuntimeWarnings in the log
    with the prediction, before)."""
    fine = [0.1, 0.2, 0.3, 0.4, 0.5]
    huge = [1e308] * 5
    response = httpx.post(
        server, json={"instances": [{"observation": fine}, {"observation": huge}]}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith("instances[1].observation:") and "not finite" in error
    batched = httpx.post(server, json={"instances": [{"observation": [fine, fine, huge]}]})
    assert batched.status_code == 400
    assert batched.json()["error"].startswith("instances[0].observation[2]:")
    logged = server_log.read_text()
    assert "Warning" not in logged and "overflow" not in logged, logged
