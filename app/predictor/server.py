"""The prediction server: a small ASGI app speaking Vertex AI's custom-container contract.

Routes come from AIP_HEALTH_ROUTE and AIP_PREDICT_ROUTE. Health answers 200 only once a
policy is loaded (Vertex routes no traffic before). Every bad request gets a 400 naming the
problem; the server itself never falls over on input.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import orjson

from app.predictor.policy import ServingPolicy
from app.predictor.requests import SINGLE, BadRequest, parse

log = logging.getLogger("recloop.predictor")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]


class PredictorApp:
    def __init__(
        self,
        loader: Callable[[], ServingPolicy],
        health_route: str = "/health",
        predict_route: str = "/predict",
        max_body_bytes: int = 1_500_000,
    ):
        self.loader = loader
        self.health_route = health_route
        self.predict_route = predict_route
        self.max_body_bytes = max_body_bytes
        self.policy: ServingPolicy | None = None
        self.load_error: str | None = None
        self._loading: asyncio.Task[None] | None = None

    # -- lifecycle --------------------------------------------------------------------------
    async def load(self) -> None:
        try:
            self.policy = await asyncio.to_thread(self.loader)
            log.info("serving policy %s from %s", self.policy.version, self.policy.uri)
        except Exception as err:  # reported by the health route; the process stays up
            self.load_error = f"{type(err).__name__}: {err}"
            log.error("could not load the policy: %s", self.load_error)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._loading = asyncio.create_task(self.load())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
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
        if path == self.predict_route:
            if scope["method"] != "POST":
                await _respond(send, 405, {"error": f"{path} takes POST"})
                return
            status, payload = await self._predict(scope, receive)
            await _respond(send, status, payload)
        elif path == self.health_route:
            if self.policy is not None:
                await _respond(send, 200, {"status": "ok", "policy_version": self.policy.version})
            else:
                reason = self.load_error or "loading"
                await _respond(send, 503, {"status": "unavailable", "reason": reason})
        else:
            await _respond(send, 404, {"error": f"no route {path}"})

    async def _predict(self, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:
        policy = self.policy
        if policy is None:
            return 503, {"error": "no policy loaded yet"}
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if content_type != b"application/json":
            shown = content_type.decode("latin-1") or "none"
            return 400, {"error": f"content type must be application/json, got {shown}"}
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return 400, {
                "error": f"request body is {declared.decode()} bytes; "
                f"the limit is {self.max_body_bytes}"
            }
        body = await _read_body(receive, self.max_body_bytes)
        if body is None:
            return 400, {"error": f"request body exceeds the limit of {self.max_body_bytes} bytes"}
        try:
            request = parse(body, policy.rank_k)
        except BadRequest as err:
            return 400, {"error": str(err)}
        actions = policy.actions(request.observations)
        return 200, {"predictions": _predictions(policy, actions, request.layout)}


def _predictions(policy: ServingPolicy, actions: np.ndarray, layout: list[int] | None) -> list[Any]:
    table = policy.predictions
    chosen = actions.tolist()
    if layout is None:
        return [table[a] for a in chosen]
    out: list[Any] = []
    row = 0
    for count in layout:
        if count == SINGLE:
            out.append(table[chosen[row]])
            row += 1
        else:
            picked = chosen[row : row + count]
            out.append(
                {
                    "actions": picked,
                    "movie_ids": [table[a]["movie_id"] for a in picked],
                    "titles": [table[a]["title"] for a in picked],
                    "policy_version": policy.version,
                }
            )
            row += count
    return out


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = orjson.dumps(payload)
    await send({"type": "http.response.start", "status": status, "headers": JSON_HEADERS})
    await send({"type": "http.response.body", "body": body})
