"""The batching Logger: pulls up to a thousand messages at a time from a pull subscription
and stores them with one write per table (logger.handle_batch), for traffic a push function
(one message per call) cannot keep up with.

Messages are acknowledged only after their batch committed. A batch that fails is handed
back at once (its ack deadline set to 0) and pulled again; its rows are keyed, so the retry
stores each row once (tests/test_logger_pull.py, against the Pub/Sub emulator).
"""

from __future__ import annotations

import base64
from typing import Any

from app.functions.logger import BatchOutcome, handle_batch
from app.warehouse.base import Warehouse

MAX_MESSAGES = 1000  # the most one Pub/Sub pull returns
PULL_TIMEOUT_S = 10.0


def drain_once(
    subscriber: Any, subscription: str, warehouse: Warehouse, dead_letter=None
) -> BatchOutcome | None:
    """One pull, one batch, one acknowledgement; None when nothing was waiting."""
    response = subscriber.pull(
        request={"subscription": subscription, "max_messages": MAX_MESSAGES},
        timeout=PULL_TIMEOUT_S,
    )
    received = list(response.received_messages)
    if not received:
        return None
    events = [
        {
            "message": {
                "data": base64.b64encode(m.message.data).decode(),
                "messageId": m.message.message_id,
                "attributes": dict(m.message.attributes),
            }
        }
        for m in received
    ]
    ack_ids = [m.ack_id for m in received]
    try:
        outcome = handle_batch(events, warehouse, dead_letter)
    except Exception:
        subscriber.modify_ack_deadline(
            request={"subscription": subscription, "ack_ids": ack_ids, "ack_deadline_seconds": 0}
        )
        raise
    subscriber.acknowledge(request={"subscription": subscription, "ack_ids": ack_ids})
    return outcome
