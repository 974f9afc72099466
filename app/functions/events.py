"""Reading Pub/Sub CloudEvents (`google.cloud.pubsub.topic.v1.messagePublished`).

Whatever a CloudEvent holds, reading it either gives a message or raises EventError saying
what was wrong (tests/test_messages_fuzz.py), so a function refuses it instead of failing.
"""

from __future__ import annotations

import base64
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
    encoded = message.get("data", "")
    if not isinstance(encoded, str):
        raise EventError(f"message data must be a base64 string, got {type(encoded).__name__}")
    try:
        data = base64.b64decode(encoded, validate=True)
    except ValueError as err:  # binascii.Error, or text that is not ASCII
        raise EventError(f"message data is not base64: {err}") from None
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        raise EventError(f"message attributes must be an object of strings, got {attributes!r}")
    return PubSubMessage(
        str(message.get("messageId") or message.get("message_id") or ""), data, attributes
    )
