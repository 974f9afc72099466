"""The prediction server: a small ASGI app speaking Vertex AI's custom-container contract.

Routes come from AIP_HEALTH_ROUTE and AIP_PREDICT_ROUTE. Health answers 200 only once a
policy is loaded (Vertex routes no traffic before). Every bad request gets a 4xx naming the
problem and the server never answers 5xx to input (tests/test_predictor_fuzz.py; per-arm
requests: tests/test_per_arm_serving.py); a body over
the limit gets a 413 that the client can read, because the body is drained before answering
(tests/test_predictor_server.py::test_oversized_bodies_get_a_readable_413). When a deployment
moves the policy pointer, the new version is loaded beside the old one and swapped in:
requests in flight finish on the policy they started with, and no response mixes versions
(tests/test_predictor_hot_swap.py). Served predictions go to an optional sink (the Pub/Sub
prediction log) after the response is sent, so logging never delays an answer.

Global policies answer one arm per observation; per-arm policies (policy.PerArmPolicy) the
best movie, or a top-k slate, among each instance's candidates (default: the whole catalogue).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import orjson

from app.predictor.policy import AnyPolicy, NonFiniteScores, PerArmPolicy, ServingPolicy
from app.predictor.requests import (
    SINGLE,
    BadRequest,
    ParsedRequest,
    PerArmRequest,
    parse,
    parse_per_arm,
)

log = logging.getLogger("recloop.predictor")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]
# A refused body is read and thrown away up to this size before answering: a client that
# sends its whole body before reading (urllib, requests) sees a reset, not the answer, if the
# server stops reading early. Past it the connection is closed without reading the rest.
DRAIN_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Served:
    """One answered request, as the prediction log records it: per instance the observation,
    the action (the arm; per-arm policies: the catalogue index of the first movie served),
    its exact probability (None: unknown) and, for per-arm policies, the candidate movie ids
    (None: the policy's whole catalogue) and the movie ids of each top-k answer (None: one
    movie); `policy_kind` says which of these the actions are."""

    request_id: str
    time: datetime
    policy: AnyPolicy
    observations: np.ndarray
    actions: np.ndarray
    propensities: np.ndarray | None
    candidates: list[np.ndarray | None] | None = None
    slates: list[np.ndarray | None] | None = None

    @property
    def policy_kind(self) -> str:
        return self.policy.policy_kind


class PredictionSink(Protocol):
    def record(self, served: Served) -> None: ...


class PredictorApp:
    def __init__(
        self,
        loader: Callable[[], AnyPolicy],
        health_route: str = "/health",
        predict_route: str = "/predict",
        max_body_bytes: int = 1_500_000,
        marker: Callable[[], str | None] | None = None,
        reload_seconds: float = 1.0,
        sink: PredictionSink | None = None,
        rng: np.random.Generator | None = None,
        retry_seconds: float = 2.0,
        max_retry_seconds: float = 60.0,
    ):
        """`marker` names what `loader` would load now (the deployed version); when it
        changes, the policy is reloaded. `rng` draws the exploring actions."""
        self.loader = loader
        self.rng = rng or np.random.default_rng()
        self.marker = marker
        self.reload_seconds = reload_seconds
        self.retry_seconds, self.max_retry_seconds = retry_seconds, max_retry_seconds
        self.sink = sink
        self._loaded_marker: str | None = None
        self._watching: asyncio.Task[None] | None = None
        self.health_route = health_route
        self.predict_route = predict_route
        self.max_body_bytes = max_body_bytes
        self.policy: AnyPolicy | None = None
        self.load_error: str | None = None
        self._loading: asyncio.Task[None] | None = None
        # Set by the server process (app/predictor/worker.py): a stop before the first policy
        # is loaded ends the process at once (tests/test_cli.py::
        # test_serve_stops_on_ctrl_c_while_starting).
        self.exit_if_stopped_before_loaded = False

    # -- lifecycle --------------------------------------------------------------------------
    async def load(self) -> bool:
        """Loads what `loader` gives now; False (and `load_error` set) if it cannot."""
        try:
            marker = await asyncio.to_thread(self.marker) if self.marker else None
            policy = await asyncio.to_thread(self.loader)
        except Exception as err:  # reported by the health route; the process stays up
            reason = " ".join(str(err).split())  # TensorFlow's messages span lines
            self.load_error = f"{type(err).__name__}: {reason}"
            return False
        first = self.policy is None
        self.policy, self._loaded_marker, self.load_error = policy, marker, None
        if first:
            # TensorFlow leaves millions of long-lived objects behind; moving them out of the
            # collector's sight keeps full collections, and so tail latency, short. Only once:
            # frozen objects are never collected, so freezing on every reload would keep each
            # replaced policy (and whatever else was alive then) forever
            # (tests/test_predictor_hot_swap.py::test_reloads_do_not_leak).
            gc.collect()
            gc.freeze()
        log.info("serving policy %s from %s", policy.version, policy.uri)
        return True

    async def load_until_loaded(self) -> None:
        """The first load, retried with exponential backoff (one log line per attempt, the
        wait doubling up to `max_retry_seconds`); health answers 503 with the reason until
        then, so Vertex AI routes no traffic. Proved by
        tests/test_serve_cli.py::test_container_retries_with_backoff_until_a_policy_appears."""
        delay = self.retry_seconds
        while not await self.load():
            self.load_error = f"{self.load_error} (retrying in {delay:.0f} s)"
            log.error("could not load the policy: %s", self.load_error)
            await asyncio.sleep(delay)
            delay = min(2 * delay, self.max_retry_seconds)

    async def watch(self) -> None:
        """Follows the deployment pointer; a failed reload keeps the current policy serving.
        A problem (unreadable pointer, unloadable version) is logged once, not every second
        (tests/test_serve_cli.py::test_container_retries_with_backoff_until_a_policy_appears).

        Starts once the first load has finished: loading the same policy twice at once would
        double start-up time and memory (tests/test_predictor_hot_swap.py)."""
        assert self.marker is not None
        if self._loading is not None:
            await self._loading
        reported: str | None = None
        while True:
            await asyncio.sleep(self.reload_seconds)
            problem = None
            try:
                marker = await asyncio.to_thread(self.marker)
            except Exception as err:
                problem = f"cannot read the deployment pointer (still serving): {err}"
            else:
                if marker is not None and marker != self._loaded_marker and not await self.load():
                    problem = f"could not load policy {marker} (still serving): {self.load_error}"
            if problem is not None and problem != reported:
                log.warning("%s", problem)
            reported = problem

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._loading = asyncio.create_task(self.load_until_loaded())
                if self.marker is not None:
                    self._watching = asyncio.create_task(self.watch())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.exit_if_stopped_before_loaded and self.policy is None:
                    # The first load runs in a thread nothing can cancel (TensorFlow's import,
                    # a SavedModel restore, TF's GCS retries), and Python waits for it at exit:
                    # a stop took until the load ended or the 3 s kill. Nothing is served yet.
                    os._exit(0)
                for task in (self._watching, self._loading):
                    if task is not None:
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- HTTP -------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        body = RequestBody(receive)
        served: Served | None = None
        status: int
        payload: dict[str, Any] | bytes
        if path == self.predict_route:
            if scope["method"] != "POST":
                status, payload = 405, {"error": f"{path} takes POST"}
            else:
                status, payload, served = await self._answer(scope, body)
        elif path == self.health_route:
            if self.policy is not None:
                status, payload = 200, {"status": "ok", "policy_version": self.policy.version}
                if self.policy.canary is not None:  # what a caller waits for (app/demo.py)
                    candidate, share = self.policy.canary
                    payload |= {"canary_version": candidate.version, "canary_share": share}
            else:
                reason = self.load_error or "loading"
                status, payload = 503, {"status": "unavailable", "reason": reason}
        else:
            status, payload = 404, {"error": f"no route {path}"}
        await body.drain(DRAIN_BYTES)
        await _respond(send, status, payload)
        if served is not None and self.sink is not None:
            try:
                self.sink.record(served)
            except Exception as err:  # the answer is out; logging must not matter to it
                log.warning("prediction log failed: %s", err)

    async def _answer(
        self, scope: Scope, body: RequestBody
    ) -> tuple[int, dict[str, Any] | bytes, Served | None]:
        """One policy is read once per request: every prediction of a response comes from
        the same version, whatever a reload does meanwhile. The canary split is drawn only
        for a request that parses, so refused requests never shift it
        (tests/test_per_arm_serving.py::test_refused_requests_do_not_draw_the_canary_split)."""
        deployed = self.policy
        if deployed is None:
            return 503, {"error": "no policy loaded yet"}, None
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if content_type != b"application/json":
            shown = content_type.decode("latin-1") or "none"
            return 400, {"error": f"content type must be application/json, got {shown}"}, None
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            error = f"request body is {declared.decode()} bytes; the limit is {self.max_body_bytes}"
            return 413, {"error": error}, None
        content = await body.read(self.max_body_bytes)
        if content is None:
            error = f"request body exceeds the limit of {self.max_body_bytes} bytes"
            return 413, {"error": error}, None
        try:
            # A canary reads requests as the serving policy does (policy.open_canary).
            if isinstance(deployed, PerArmPolicy):
                request: ParsedRequest | PerArmRequest = parse_per_arm(
                    content, deployed.rank_k, deployed.index_of
                )
            else:
                request = parse(content, deployed.rank_k)
        except BadRequest as err:
            return 400, {"error": str(err)}, None
        policy = deployed.for_request(self.rng)
        request_id = uuid.uuid4().hex
        try:
            if isinstance(request, PerArmRequest):
                assert isinstance(policy, PerArmPolicy)
                return _serve_per_arm(policy, request, request_id, self.rng)
            assert isinstance(policy, ServingPolicy)
            actions, propensities = policy.choose(request.observations, self.rng)
        except NonFiniteScores as err:
            layout = None if isinstance(request, PerArmRequest) else request.layout
            return (
                400,
                {
                    "error": f"{_instance_of(err.rows[0], layout)}: the policy's scores for "
                    "this observation are not finite numbers (its values are too large)"
                },
                None,
            )
        response = _predictions(policy, actions, request.layout, request_id)
        served = Served(
            request_id, datetime.now(UTC), policy, request.observations, actions, propensities
        )
        return 200, response, served


def _serve_per_arm(
    policy: PerArmPolicy, request: PerArmRequest, request_id: str, rng: np.random.Generator
) -> tuple[int, bytes, Served]:
    slates = policy.choose(request.contexts, request.candidates, request.ks, rng)
    ids, titles, version = policy.movie_id_list, policy.titles, policy.version
    out: list[dict[str, Any]] = []
    for i, (actions, scores) in enumerate(zip(slates.actions, slates.scores, strict=True)):
        chosen, values = actions.tolist(), scores.tolist()
        if len(chosen) == 1:
            a = chosen[0]
            out.append(
                {"action": a, "movie_id": ids[a], "title": titles[a], "score": values[0]}
                | {"policy_version": version, "request_id": request_id, "instance_index": i}
            )
        else:
            out.append(
                {
                    "actions": chosen,
                    "movie_ids": [ids[a] for a in chosen],
                    "titles": [titles[a] for a in chosen],
                    "scores": values,
                    "policy_version": version,
                    "request_id": request_id,
                    "instance_index": i,
                }
            )
    served = Served(
        request_id,
        datetime.now(UTC),
        policy,
        request.contexts,
        slates.first,
        slates.propensities,
        [None if c is None else policy.movie_ids[c] for c in request.candidates],
        [policy.movie_ids[a] if len(a) > 1 else None for a in slates.actions],
    )
    return 200, orjson.dumps({"predictions": out}), served


def _instance_of(row: int, layout: list[int] | None) -> str:
    """Names the instance (and, in the batched form, the vector) holding observation `row`."""
    if layout is None:
        return f"instances[{row}].observation"
    start = 0
    for i, count in enumerate(layout):
        if count == SINGLE:
            if row == start:
                return f"instances[{i}].observation"
            start += 1
        elif row < start + count:
            return f"instances[{i}].observation[{row - start}]"
        else:
            start += count
    return f"observation row {row}"


_INDEX_CLOSED = [b"%d}" % i for i in range(1024)]  # "<instance_index>}" for the usual batches


def _predictions(
    policy: ServingPolicy, actions: np.ndarray, layout: list[int] | None, request_id: str
) -> bytes:
    """The response body. Each action's JSON is serialised once per policy; a response
    only appends the request id and index to it (the hot path of every request)."""
    chosen = actions.tolist()
    if layout is None:
        # One join over prepared pieces: no formatting per instance (batches of 100).
        middle = b',"request_id":"' + request_id.encode() + b'","instance_index":'
        fragments, parts = policy.fragments, [b'{"predictions":[']
        for i, a in enumerate(chosen):
            parts += (
                fragments[a],
                middle,
                _INDEX_CLOSED[i] if i < len(_INDEX_CLOSED) else b"%d}" % i,
                b",",
            )
        parts[-1] = b"]}"
        return b"".join(parts)
    table = policy.predictions
    out: list[Any] = []
    row = 0
    for count in layout:
        if count == SINGLE:
            out.append({**table[chosen[row]], "request_id": request_id, "instance_index": row})
            row += 1
        else:
            picked = chosen[row : row + count]
            out.append(
                {
                    "actions": picked,
                    "movie_ids": [table[a]["movie_id"] for a in picked],
                    "titles": [table[a]["title"] for a in picked],
                    "policy_version": policy.version,
                    "request_id": request_id,
                    "instance_indices": list(range(row, row + count)),
                }
            )
            row += count
    return orjson.dumps({"predictions": out})


class RequestBody:
    """The request body as the server hands it over, read at most once to its end."""

    def __init__(self, receive: Receive):
        self.receive = receive
        self.ended = False

    async def _next(self) -> bytes:
        message = await self.receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.ended = True  # the last chunk, or the client went away
        return bytes(message.get("body", b""))

    async def read(self, limit: int) -> bytes | None:
        """The whole body, or None as soon as it grows past `limit` bytes."""
        chunks: list[bytes] = []
        size = 0
        while not self.ended:
            chunk = await self._next()
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def drain(self, limit: int) -> None:
        """Reads and drops what is left of the body, up to `limit` bytes."""
        drained = 0
        while not self.ended and drained <= limit:
            drained += len(await self._next())


async def _respond(send: Send, status: int, payload: dict[str, Any] | bytes) -> None:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    await send({"type": "http.response.start", "status": status, "headers": JSON_HEADERS})
    await send({"type": "http.response.body", "body": body})
