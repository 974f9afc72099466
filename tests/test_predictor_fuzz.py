"""Property-based fuzzing of the predictor's request handling (the ASGI app, in process).

Thousands of bodies — raw bytes, arbitrary JSON (NaN/Infinity literals, huge numbers, deep
nesting, unicode), near-valid requests with wrong types and lengths, and bodies over the
limit streamed in chunks — each must get a 2xx/4xx with a JSON error naming what was wrong,
never a 5xx. A reference validator written independently of app/predictor/requests.py decides
which bodies are good: those must be served with the policy's own actions. Memory stays flat
over a bounded run and good requests are still answered right afterwards. The same app
behind Granian is fuzzed in tests/test_predictor_server.py.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.predictor.policy import NonFiniteScores, ServingPolicy, load_policy
from app.predictor.server import PredictorApp

RANK = 5
LIMIT = 8_192  # a small body limit keeps oversized bodies cheap to generate
FUZZ = settings(
    max_examples=1_000,
    deadline=1_000,  # milliseconds per body: bounded, generous for a shared 2-core machine
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
JSON = [(b"content-type", b"application/json")]


@pytest.fixture(scope="module")
def policy(trained_policy: Path) -> ServingPolicy:
    return load_policy(str(trained_policy))


@pytest.fixture(scope="module")
def app(policy: ServingPolicy) -> PredictorApp:
    served = PredictorApp(lambda: policy, predict_route="/p", max_body_bytes=LIMIT)
    asyncio.run(served.load())
    return served


class ReadPastTheEnd(AssertionError):
    pass


def call(
    app: PredictorApp,
    chunks: list[bytes],
    headers: list[tuple[bytes, bytes]] = JSON,
    method: str = "POST",
    path: str = "/p",
) -> tuple[int, Any, int]:
    """Sends one request; returns (status, decoded JSON body, body chunks left unread)."""
    incoming = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks or [b""])
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if not incoming:
            raise ReadPastTheEnd("the app read past the end of the request body")
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": headers}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["type"] == "http.response.start"
    status = sent[0]["status"]
    payload = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    return status, payload, len(incoming)


# -- an independent reference of what a good request is ---------------------------------------
def _number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _vector(value: Any) -> bool:
    return isinstance(value, list) and len(value) == RANK and all(_number(v) for v in value)


def reference(body: bytes) -> tuple[list[list[float]] | None, set[int]]:
    """(rows, set()) for a servable body; (None, indices of bad instances) otherwise."""

    def refuse(constant: str) -> float:
        raise ValueError(constant)

    def finite(text: str) -> float | int:  # JSON numbers past double range are not accepted
        value = float(text) if any(c in text for c in ".eE") else int(text)
        if not math.isfinite(value if isinstance(value, float) else float(min(abs(value), 1e309))):
            raise ValueError(text)
        return value

    try:
        document = json.loads(body, parse_constant=refuse, parse_float=finite, parse_int=finite)
    except (ValueError, RecursionError, OverflowError):
        return None, set()
    if not isinstance(document, dict) or not isinstance(document.get("instances"), list):
        return None, set()
    rows: list[list[float]] = []
    bad: set[int] = set()
    for i, instance in enumerate(document["instances"]):
        observation = instance.get("observation") if isinstance(instance, dict) else None
        if not isinstance(observation, list) or not observation:
            bad.add(i)
        elif isinstance(observation[0], list):
            if all(_vector(v) for v in observation):
                rows.extend([float(x) for x in v] for v in observation)
            else:
                bad.add(i)
        elif _vector(observation):
            rows.append([float(x) for x in observation])
        else:
            bad.add(i)
    if bad or not document["instances"]:
        return None, bad
    return rows, set()


# -- strategies --------------------------------------------------------------------------------
numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(),  # NaN and ±Infinity: json.dumps writes them as the literals NaN, Infinity
    st.integers(),
    st.integers(min_value=2**62, max_value=2**65),
    st.integers(min_value=10**300, max_value=10**330),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20))
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)
good_cell = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False) | st.integers(-99, 99)
cell = st.one_of(
    good_cell, good_cell, good_cell, good_cell, scalars, st.lists(good_cell, max_size=2)
)
vector = st.one_of(
    st.lists(good_cell, min_size=RANK, max_size=RANK),
    st.lists(cell, min_size=RANK, max_size=RANK),
    st.lists(cell, min_size=0, max_size=RANK + 2),
)
instance = st.one_of(
    st.fixed_dictionaries({"observation": vector}),
    st.fixed_dictionaries({"observation": vector}),
    st.fixed_dictionaries({"observation": st.lists(vector, min_size=1, max_size=3)}),
    json_values,
    st.fixed_dictionaries({"observations": vector}),
)
documents = st.one_of(
    st.fixed_dictionaries({"instances": st.lists(instance, min_size=0, max_size=5)}),
    st.fixed_dictionaries(
        {"instances": st.lists(instance, min_size=1, max_size=3)},
        optional={"parameters": json_values, "extra": json_values},
    ),
    json_values,
)


def encode(document: Any, ascii_only: bool) -> bytes:
    return json.dumps(document, ensure_ascii=ascii_only).encode()


def nested(depth: int) -> bytes:
    return b'{"instances": [{"observation": ' + b"[" * depth + b"1" + b"]" * depth + b"}]}"


bodies = st.one_of(
    st.builds(encode, documents, st.booleans()),
    st.builds(encode, documents, st.booleans()).flatmap(
        lambda b: st.integers(0, len(b)).map(lambda n: b[:n])  # truncated JSON
    ),
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.integers(1, 4_000).map(nested),
)


def split(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(body)) for c in cuts})
    return [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]


def check_answer(
    policy: ServingPolicy, body: bytes, status: int, payload: Any, limit: int = LIMIT
) -> None:
    """The answer the reference expects: 413 over the limit, 400 naming a bad instance, or
    the policy's own actions, one version per response."""
    assert status < 500, payload
    if len(body) > limit:
        assert status == 413 and str(limit) in payload["error"]
        return
    rows, bad = reference(body)
    if rows is None:
        assert status == 400, (body[:200], payload)
        error = payload["error"]
        assert isinstance(error, str) and 10 < len(error) < 400
        named = {int(i) for i in re.findall(r"instances\[(\d+)\]", error)}
        assert named <= bad, (error, bad)  # when it names an instance, that one is bad
        return
    try:
        expected = policy.actions(np.array(rows)).tolist()
    except NonFiniteScores:  # finite values too large to score (e.g. 1e300): a 400 too
        assert status == 400 and "not finite" in payload["error"], (body[:200], payload)
        return
    assert status == 200, (body[:200], payload)
    predictions = payload["predictions"]
    served: list[int] = []
    for p in predictions:
        served.extend(p["actions"] if "actions" in p else [p["action"]])
    assert served == expected
    assert {p["policy_version"] for p in predictions} == {policy.version}


# -- the properties ----------------------------------------------------------------------------
def test_fuzzed_bodies_get_a_clear_4xx_or_the_right_answer(app: PredictorApp, policy):
    @FUZZ
    @given(body=bodies, cuts=st.lists(st.integers(0, 400), max_size=3), declared=st.booleans())
    def fuzz(body: bytes, cuts: list[int], declared: bool) -> None:
        headers = [*JSON, (b"content-length", str(len(body)).encode())] if declared else JSON
        status, payload, unread = call(app, split(body, cuts), headers)
        assert unread == 0
        check_answer(policy, body, status, payload)

    fuzz()
    assert_still_serving(app, policy)


def test_fuzzed_oversized_bodies_get_a_413_after_the_body_is_read(app: PredictorApp, policy):
    @settings(FUZZ, max_examples=200)
    @given(
        size=st.integers(LIMIT + 1, 4 * LIMIT),
        chunk=st.integers(1_000, 3 * LIMIT),
        declared=st.booleans(),
    )
    def fuzz(size: int, chunk: int, declared: bool) -> None:
        body = b'{"instances": [], "pad": "' + b"x" * size + b'"}'
        headers = [*JSON, (b"content-length", str(len(body)).encode())] if declared else JSON
        chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)]
        status, payload, unread = call(app, chunks, headers)
        assert status == 413 and "limit" in payload["error"] and str(LIMIT) in payload["error"]
        assert unread == 0  # drained, so that the client can read the answer

    fuzz()
    assert_still_serving(app, policy)


def test_fuzzed_headers_methods_and_paths_get_a_4xx(app: PredictorApp, policy):
    header = st.tuples(
        st.sampled_from([b"content-type", b"content-length", b"x-any"]) | st.binary(max_size=20),
        st.binary(max_size=40),
    )

    @settings(FUZZ, max_examples=400)
    @given(
        headers=st.lists(header, max_size=4),
        method=st.sampled_from(["POST", "GET", "PUT", "DELETE", "PATCH"]),
        path=st.sampled_from(["/p", "/health", "/", "/p/", "/predict"]) | st.text(max_size=20),
    )
    def fuzz(headers: list[tuple[bytes, bytes]], method: str, path: str) -> None:
        body = b'{"instances": [{"observation": [1, 2, 3, 4, 5]}]}'
        status, payload, _ = call(app, [body], headers, method, path)
        assert status < 500 or (path == "/health" and payload["reason"])
        if status >= 400:
            assert payload["error"]

    fuzz()
    assert_still_serving(app, policy)


def test_memory_stays_flat_over_a_bounded_fuzz_run(app: PredictorApp, policy):
    rng = np.random.default_rng(5)
    corpus = [
        b"",
        b"{",
        b"[1e999]",
        b'{"instances": [{"observation": [NaN, 1, 2, 3, 4]}]}',
        nested(3_000),
        b'{"instances": [{"observation": [[1, 2, 3, 4, 5], [1, 2]]}]}',
        json.dumps({"instances": [{"observation": ["\u00e9" * 50] * RANK}]}).encode(),
        json.dumps({"instances": [{"observation": rng.normal(size=RANK).tolist()}] * 30}).encode(),
        b'{"instances": [], "pad": "' + b"x" * (2 * LIMIT) + b'"}',
        rng.bytes(500),
    ]

    def rounds(n: int) -> None:
        for _ in range(n):
            for body in corpus:
                status, _, _ = call(app, [body])
                assert status < 500

    rounds(10)  # warm caches and allocators
    tracemalloc.start()
    try:
        rounds(30)
        before = tracemalloc.take_snapshot()
        rounds(100)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    growth = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert growth < 256 * 1024, f"{growth} bytes retained after 1,000 more requests"
    assert_still_serving(app, policy)


def assert_still_serving(app: PredictorApp, policy: ServingPolicy) -> None:
    rows = np.random.default_rng(11).normal(size=(4, RANK)).round(6).tolist()
    body = json.dumps({"instances": [{"observation": r} for r in rows]}).encode()
    status, payload, _ = call(app, [body])
    assert status == 200
    assert [p["action"] for p in payload["predictions"]] == policy.actions(np.array(rows)).tolist()
