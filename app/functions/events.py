"""Reading Pub/Sub CloudEvents (`google.cloud.pubsub.topic.v1.messagePublished`)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any


class EventError(ValueError):
    """The CloudEvent does not carry a Pub/Sub message."""


@dataclass(frozen=True)
class PubSubMessage:
    message_id: str
    data: bytes
    attributes: dict[str, str]


def pubsub_message(event: Any) -> PubSubMessage:
    payload = event.data if hasattr(event, "data") else event
    message = payload.get("message") if isinstance(payload, dict) else None
    if not isinstance(message, dict):
        raise EventError("CloudEvent data has no Pub/Sub 'message'")
    try:
        data = base64.b64decode(message.get("data", ""), validate=True)
    except (binascii.Error, TypeError) as err:
        raise EventError(f"message data is not base64: {err}") from None
    attributes = message.get("attributes") or {}
    return PubSubMessage(
        str(message.get("messageId") or message.get("message_id") or ""), data, attributes
    )
