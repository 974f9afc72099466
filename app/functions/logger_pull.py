"""The batching Logger: pulls up to a thousand messages at a time from a pull subscription
and stores them with one write per table (logger.handle_batch), for traffic a push function
(one message per call) cannot keep up with.

Messages are acknowledged only after their batch committed. A batch that fails is handed
back at once (its ack deadline set to 0) and pulled again; its rows are keyed, so the retry
stores each row once (tests/test_logger_pull.py, against the Pub/Sub emulator).

`python -m app.functions.logger_pull SUBSCRIPTION…` drains pull subscriptions of the
prediction-log and feedback topics until stopped, with the Logger's settings (warehouse,
dead-letter topic; the emulator when PUBSUB_EMULATOR_HOST is set).
"""

from __future__ import annotations

import base64
import logging
import sys
import time
from typing import Any

from app.functions.logger import BatchOutcome, _context, _dead_letter_publisher, handle_batch
from app.warehouse.base import Warehouse, WarehouseBusy

log = logging.getLogger("recloop.logger")

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


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m app.functions.logger_pull SUBSCRIPTION [SUBSCRIPTION…]")
        return 2
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    logging.basicConfig(level=logging.INFO)
    settings, warehouse = _context()
    dead_letter = _dead_letter_publisher(settings)
    subscriber = pubsub_v1.SubscriberClient()
    paths = [subscriber.subscription_path(settings.pubsub.project_id, name) for name in argv]
    while True:
        idle = True
        for path in paths:
            try:
                outcome = drain_once(subscriber, path, warehouse, dead_letter)
            except WarehouseBusy as err:  # handed back; pulled again on the next round
                log.warning("batch of %s handed back: %s", path, err)
                continue
            if outcome is not None:
                idle = False
                log.info(
                    "%s: stored %d predictions, %d rewards, rejected %d",
                    path,
                    outcome.predictions,
                    outcome.feedback,
                    len(outcome.rejected),
                )
        if idle:
            time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
