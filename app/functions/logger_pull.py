"""The batching Logger: pulls up to BATCH_MESSAGES messages (for at most BATCH_WINDOW_S)
from a pull subscription and stores them with one write (logger.handle_batch), for traffic a
push function (one message per call) cannot keep up with.

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
import warnings
from typing import Any

from app.functions.logger import BatchOutcome, _context, _dead_letter_publisher, handle_batch
from app.warehouse.base import Warehouse, WarehouseBusy

log = logging.getLogger("recloop.logger")

MAX_MESSAGES = 1000  # the most one Pub/Sub pull returns (the emulator returns at most 100)
BATCH_MESSAGES = 20_000  # the most one write takes
BATCH_WINDOW_S = 1.0  # how long a batch keeps pulling after its first message
PULL_TIMEOUT_S = 30.0  # a pull that returns at once: only a broken connection takes this long
IDLE_S = 0.2  # when no subscription had anything


def drain_once(
    subscriber: Any, subscription: str, warehouse: Warehouse, dead_letter=None
) -> BatchOutcome | None:
    """Pulls until nothing more is waiting, BATCH_MESSAGES or BATCH_WINDOW_S, then one batch,
    one write and the acknowledgements; None when nothing was waiting. One write for many
    pulls is what keeps up with single-instance traffic: opening the local warehouse costs
    tens of ms, once per write (benchmarks/soak.py)."""
    received = _pull(subscriber, subscription)
    started = time.monotonic()
    while received and len(received) < BATCH_MESSAGES:
        if time.monotonic() - started > BATCH_WINDOW_S:
            break
        more = _pull(subscriber, subscription)
        if not more:
            break
        received += more
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
        for chunk in _chunks(ack_ids):
            subscriber.modify_ack_deadline(
                request={"subscription": subscription, "ack_ids": chunk, "ack_deadline_seconds": 0}
            )
        raise
    for chunk in _chunks(ack_ids):  # a request's size is limited: a pull's worth at a time
        subscriber.acknowledge(request={"subscription": subscription, "ack_ids": chunk})
    return outcome


def _pull(subscriber: Any, subscription: str) -> list[Any]:
    """One pull of what is waiting now (`return_immediately`): a pull that waits would hold
    up the Logger's other subscription, and cutting it short with a client deadline loses
    what the server handed it until the ack deadline (the soak saw 120 s of lag that way).
    When nothing waits, `main` sleeps IDLE_S before it asks again."""
    with warnings.catch_warnings():  # deprecated for pulls that should wait, as these do not
        warnings.simplefilter("ignore", DeprecationWarning)
        response = subscriber.pull(
            request={
                "subscription": subscription,
                "max_messages": MAX_MESSAGES,
                "return_immediately": True,
            },
            timeout=PULL_TIMEOUT_S,
        )
    return list(response.received_messages)


def _chunks(ack_ids: list[str]) -> list[list[str]]:
    return [ack_ids[i : i + MAX_MESSAGES] for i in range(0, len(ack_ids), MAX_MESSAGES)]


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
            time.sleep(IDLE_S)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
