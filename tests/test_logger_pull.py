"""The batching Logger on the real Pub/Sub emulator: every published row stored exactly once,
through a failed batch and a duplicate publish."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from app import messages
from app.functions.logger_pull import drain_once, main
from app.local import pubsub_emulator
from app.warehouse.base import WarehouseBusy
from app.warehouse.duckdb_store import DuckDBWarehouse
from tests.test_messages_and_logger import FailingFeedbackWrites

needs_emulator = pytest.mark.skipif(
    not pubsub_emulator.available(),
    reason="Pub/Sub emulator not installed (apt-get install google-cloud-cli-pubsub-emulator)",
)
PROJECT, TOPIC, SUBSCRIPTION = "recloop-test", "logs", "logger-pull"
NOW = datetime(2026, 11, 1, tzinfo=UTC)


def test_without_subscriptions_it_prints_its_usage_and_fails(capsys):
    assert main([]) == 2
    assert capsys.readouterr().out.startswith("usage: python -m app.functions.logger_pull")


@needs_emulator
def test_pulled_batches_store_every_row_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    with pubsub_emulator.emulator(PROJECT, tmp_path / "ps", tmp_path / "ps.log") as host:
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", host)
        pubsub_emulator.create_topics(PROJECT, [TOPIC])
        subscriber = pubsub_v1.SubscriberClient()
        subscription = subscriber.subscription_path(PROJECT, SUBSCRIPTION)
        subscriber.create_subscription(
            name=subscription, topic=f"projects/{PROJECT}/topics/{TOPIC}"
        )
        publisher = pubsub_v1.PublisherClient()
        topic = publisher.topic_path(PROJECT, TOPIC)
        data = []
        for r in range(40):
            rows = [{"instance_index": i, "observation": [0.5, 1.0], "action": i} for i in range(4)]
            data.append(messages.prediction_log(f"q{r}", NOW, "v1", rows))
            data.append(messages.feedback(f"q{r}", [(i, 1.0) for i in range(4)], "s", NOW))
        data += [data[0], b"not json"]  # a duplicate publish and a malformed message
        for payload in data:
            publisher.publish(topic, payload).result(timeout=30)

        warehouse = FailingFeedbackWrites(tmp_path / "w.duckdb")
        with pytest.raises(WarehouseBusy):  # the first batch fails: nothing of it is stored
            drain_once(subscriber, subscription, warehouse)
        rejected = 0
        while (outcome := drain_once(subscriber, subscription, warehouse)) is not None:
            rejected += len(outcome.rejected)
        assert rejected == 1
        assert warehouse.query("SELECT count(*) FROM predictions") == [(160,)]
        assert warehouse.query("SELECT count(*) FROM feedback") == [(160,)]
        assert warehouse.count_untrained(rank_k=2, num_actions=4) == 160


@needs_emulator
def test_one_write_takes_many_pulls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The emulator answers a pull with at most 100 messages: one batch keeps pulling while
    messages wait, so a backlog is written at once, not 100 messages per write."""
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    with pubsub_emulator.emulator(PROJECT, tmp_path / "ps", tmp_path / "ps.log") as host:
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", host)
        pubsub_emulator.create_topics(PROJECT, [TOPIC])
        subscriber = pubsub_v1.SubscriberClient()
        subscription = subscriber.subscription_path(PROJECT, SUBSCRIPTION)
        subscriber.create_subscription(
            name=subscription, topic=f"projects/{PROJECT}/topics/{TOPIC}"
        )
        publisher = pubsub_v1.PublisherClient()
        topic = publisher.topic_path(PROJECT, TOPIC)
        rows = [{"instance_index": 0, "observation": [0.5, 1.0], "action": 1}]
        futures = [
            publisher.publish(topic, messages.prediction_log(f"q{r}", NOW, "v1", rows))
            for r in range(350)
        ]
        for future in futures:
            future.result(timeout=30)
        warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
        outcome = drain_once(subscriber, subscription, warehouse)
        assert outcome is not None and outcome.predictions == 350
        assert warehouse.query("SELECT count(*) FROM predictions") == [(350,)]
        assert drain_once(subscriber, subscription, warehouse) is None  # all acknowledged
