"""Publishing messages: through Pub/Sub (cloud or emulator), or straight to the functions.

Without the Pub/Sub emulator, `pubsub.push_endpoints` ("topic=url,topic=url") makes every
publish an HTTP POST of the `google.cloud.pubsub.topic.v1.messagePublished` CloudEvent (binary
mode) to each endpoint of the topic: the event functions-framework makes of a Pub/Sub push in
the cloud (tests/test_function_entry_points.py), so the functions' code sees the same thing.
"""

from __future__ import annotations

import base64
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from app.config import PubSubConfig

CLOUD_EVENT_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"


class Publisher(Protocol):
    def publish(self, topic: str, data: bytes, **attributes: str) -> Future[Any]: ...


class PubSubPublisher:
    def __init__(self, config: PubSubConfig, client: Any = None):
        from google.cloud import pubsub_v1  # type: ignore[attr-defined]

        self.project_id = config.project_id
        self.client = client or pubsub_v1.PublisherClient()

    def publish(self, topic: str, data: bytes, **attributes: str) -> Future[Any]:
        return self.client.publish(
            self.client.topic_path(self.project_id, topic), data, **attributes
        )


class DirectPublisher:
    """Delivers to functions over HTTP, in the background (a publish never blocks its caller).

    Like a push subscription, it delivers again, with the same message id, after an error
    answer or a broken connection, backing off up to `RETRY_FOR_S`; the functions are
    idempotent on the message's keys (tests/test_ledger.py::
    test_direct_publisher_redelivers_until_the_function_succeeds).
    """

    RETRY_FOR_S = 600.0
    BACKOFF_S = (0.1, 5.0)

    def __init__(self, config: PubSubConfig, routes: dict[str, list[str]]):
        self.project_id = config.project_id
        self.routes = routes
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="direct-publish")
        self.http = httpx.Client(timeout=120)

    def publish(self, topic: str, data: bytes, **attributes: str) -> Future[Any]:
        if topic not in self.routes:
            raise ValueError(f"no push endpoint for topic {topic!r} in pubsub.push_endpoints")
        return self.pool.submit(self._deliver, topic, data, attributes)

    def _deliver(self, topic: str, data: bytes, attributes: dict[str, str]) -> str:
        message_id = uuid.uuid4().hex
        body, headers = push_request(self.project_id, topic, data, attributes, message_id)
        for url in self.routes[topic]:
            self._post_until_accepted(url, body, headers)
        return message_id

    def _post_until_accepted(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        deadline = time.monotonic() + self.RETRY_FOR_S
        delay, longest = self.BACKOFF_S
        while True:
            try:
                self.http.post(url, json=body, headers=headers).raise_for_status()
                return
            except httpx.HTTPStatusError as err:
                status = err.response.status_code
                if (status < 500 and status != 429) or time.monotonic() + delay > deadline:
                    raise
            except httpx.TransportError:
                if time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, longest)


def push_request(
    project_id: str, topic: str, data: bytes, attributes: dict[str, str], message_id: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """The body and headers of the CloudEvent a push subscription (Eventarc) delivers."""
    now = datetime.now(UTC).isoformat()
    body = {
        "message": {
            "data": base64.b64encode(data).decode(),
            "attributes": attributes,
            "messageId": message_id,
            "publishTime": now,
        },
        "subscription": f"projects/{project_id}/subscriptions/{topic}-direct",
    }
    headers = {
        "ce-id": message_id,
        "ce-specversion": "1.0",
        "ce-type": CLOUD_EVENT_TYPE,
        "ce-source": f"//pubsub.googleapis.com/projects/{project_id}/topics/{topic}",
        "ce-time": now,
    }
    return body, headers


def parse_routes(text: str) -> dict[str, list[str]]:
    routes: dict[str, list[str]] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        topic, sep, url = item.partition("=")
        if not sep or not topic or not url.startswith(("http://", "https://")):
            raise ValueError(f"pubsub.push_endpoints: expected topic=http://…, got {item!r}")
        routes.setdefault(topic, []).append(url)
    return routes


def publisher_for(config: PubSubConfig) -> Publisher:
    if config.push_endpoints:
        return DirectPublisher(config, parse_routes(config.push_endpoints))
    return PubSubPublisher(config)
