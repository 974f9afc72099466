"""Real local delivery for the chaos scenarios: the Pub/Sub emulator, the Logger under
functions-framework, and a pull-to-push forwarder whose ack decisions inject the faults.

The forwarder POSTs each pulled message to the Logger as the CloudEvent a push subscription
delivers, then acknowledges it, nacks it (the emulator redelivers it at once) or lets its ack
deadline expire (shortened to EXPIRE_AFTER_S, then the emulator redelivers it) — the
emulator, not this code, decides what comes back.
"""

from __future__ import annotations

import contextlib
import functools
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from app.chaos.harness import Loop, environment
from app.local import pubsub_emulator
from app.local.processes import PYTHON, free_port, port_open, running
from app.local.stack import FUNCTIONS_SOURCE
from app.transport import push_request

PROJECT = "recloop-chaos"
ACK_DEADLINE_S = 10  # the smallest a subscription allows
EXPIRE_AFTER_S = 1  # a message to expire gets this deadline, then is neither acked nor nacked
ACK, NACK, EXPIRE = "ack", "nack", "expire"


def available() -> bool:
    return pubsub_emulator.available()


@contextlib.contextmanager
def emulator(state: Path) -> Iterator[str]:
    with (
        pubsub_emulator.emulator(PROJECT, state / "pubsub", state / "pubsub-emulator.log") as host,
        environment({"PUBSUB_EMULATOR_HOST": host}),
    ):
        yield host


@contextlib.contextmanager
def logger_process(
    loop: Loop, port: int, lock_wait_s: float = 30.0
) -> Iterator[subprocess.Popen[bytes]]:
    """The Logger function under functions-framework on this port (url(port) reaches it)."""
    command = [
        PYTHON,
        "-m",
        "functions_framework",
        "--target=logger",
        f"--source={FUNCTIONS_SOURCE}",
        "--signature-type=cloudevent",
        "--host=127.0.0.1",
        f"--port={port}",
    ]
    log = loop.state / f"logger-{port}-{time.monotonic_ns()}.log"
    loop.state.mkdir(parents=True, exist_ok=True)
    with running(
        command, loop.env(lock_wait_s), functools.partial(port_open, port), log_path=log
    ) as process:
        yield process


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}/"


@dataclass
class Topic:
    name: str
    publisher: object
    subscriber: object
    topic_path: str
    subscription_path: str
    published: set[str] = field(default_factory=set)

    def publish(self, data: list[bytes], copies: int = 1) -> None:
        """`copies` > 1: a publisher that retried after losing the ack of a publish."""
        for message in data:
            for _ in range(copies):
                future = self.publisher.publish(self.topic_path, message)  # type: ignore[attr-defined]
                self.published.add(future.result(timeout=30))

    def pump(
        self,
        url: str,
        decide: Callable[[str, int], str] = lambda _id, _attempt: ACK,
        after_batch: Callable[[], None] = lambda: None,
        timeout: float = 120,
    ) -> dict[str, int]:
        """Delivers until every published message was acknowledged once; returns the number of
        deliveries per message id."""
        from google.api_core import exceptions

        deliveries: dict[str, int] = {}
        acked: set[str] = set()
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=60) as http:
            while not self.published <= acked:
                if time.monotonic() > deadline:
                    missing = len(self.published - acked)
                    raise TimeoutError(f"{missing} messages were never acknowledged")
                try:
                    response = self.subscriber.pull(  # type: ignore[attr-defined]
                        request={"subscription": self.subscription_path, "max_messages": 20},
                        timeout=5,
                    )
                except exceptions.DeadlineExceeded:
                    continue
                ack, nack, expire = [], [], []
                for received in response.received_messages:
                    message = received.message
                    deliveries[message.message_id] = deliveries.get(message.message_id, 0) + 1
                    body, headers = push_request(
                        PROJECT,
                        self.name,
                        message.data,
                        dict(message.attributes),
                        message.message_id,
                    )
                    try:
                        ok = http.post(url, json=body, headers=headers).status_code < 300
                    except httpx.TransportError:
                        ok = False
                    action = (
                        decide(message.message_id, deliveries[message.message_id]) if ok else NACK
                    )
                    if action == ACK:
                        ack.append(received.ack_id)
                        acked.add(message.message_id)
                    elif action == NACK:
                        nack.append(received.ack_id)
                    else:
                        expire.append(received.ack_id)
                if ack:
                    self.subscriber.acknowledge(  # type: ignore[attr-defined]
                        request={"subscription": self.subscription_path, "ack_ids": ack}
                    )
                for ack_ids, seconds in ((nack, 0), (expire, EXPIRE_AFTER_S)):
                    if ack_ids:
                        self.subscriber.modify_ack_deadline(  # type: ignore[attr-defined]
                            request={
                                "subscription": self.subscription_path,
                                "ack_ids": ack_ids,
                                "ack_deadline_seconds": seconds,
                            }
                        )
                if nack:
                    time.sleep(0.2)
                after_batch()
        return deliveries


def topic(name: str) -> Topic:
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic_path = publisher.topic_path(PROJECT, name)
    subscription_path = subscriber.subscription_path(PROJECT, f"{name}-to-logger")
    publisher.create_topic(name=topic_path)
    subscriber.create_subscription(
        name=subscription_path, topic=topic_path, ack_deadline_seconds=ACK_DEADLINE_S
    )
    return Topic(name, publisher, subscriber, topic_path, subscription_path)


def new_port() -> int:
    return free_port()
