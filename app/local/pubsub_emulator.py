"""The Google Pub/Sub emulator (`gcloud beta emulators pubsub start`) and its topics.

Push subscriptions to functions-framework, as in the cloud (infra/components/messaging.py):
functions-framework hands each function the push as a `messagePublished` CloudEvent.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from app.local.processes import free_port, running

ACK_DEADLINE_S = 120


def available() -> bool:
    """gcloud with the emulator component (Debian: google-cloud-cli-pubsub-emulator)."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return False
    sdk = Path(gcloud).resolve().parent.parent
    return (sdk / "platform" / "pubsub-emulator").is_dir()


@contextlib.contextmanager
def emulator(project_id: str, data_dir: Path, log_path: Path) -> Iterator[str]:
    """Starts the emulator in its own process group; yields its host:port."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    host = f"127.0.0.1:{port}"
    command = [
        "gcloud",
        "beta",
        "emulators",
        "pubsub",
        "start",
        f"--host-port={host}",
        f"--project={project_id}",
        f"--data-dir={data_dir}",
        "--quiet",
    ]
    with running(command, {}, f"http://{host}/", timeout=120, log_path=log_path):
        yield host


def create_topics(project_id: str, topics: list[str]) -> None:
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    publisher = pubsub_v1.PublisherClient()
    for topic in topics:
        publisher.create_topic(name=publisher.topic_path(project_id, topic))


def push(project_id: str, topic: str, subscription: str, endpoint: str) -> None:
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    subscriber = pubsub_v1.SubscriberClient()
    with subscriber:
        subscriber.create_subscription(
            name=subscriber.subscription_path(project_id, subscription),
            topic=f"projects/{project_id}/topics/{topic}",
            push_config={"push_endpoint": endpoint},
            ack_deadline_seconds=ACK_DEADLINE_S,
        )
