"""The deployed functions receive Pub/Sub push requests (infra/components/function.py):
functions-framework, started as Cloud Functions starts an HTTP-triggered function, must
hand each target the push message as a `messagePublished` CloudEvent (the decorator
registers each target by name, which wins over the platform's signature type)."""

from __future__ import annotations

import base64
import importlib
from pathlib import Path

import functions_framework
import pytest

import app.functions.main as entry_points

MAIN = Path(entry_points.__file__)


@pytest.mark.parametrize("target", ["logger", "simulator", "trigger"])
def test_a_pubsub_push_request_reaches_the_target_as_a_cloudevent(target, monkeypatch):
    received: list = []
    # create_app loads main.py afresh; it imports the handler from its module.
    monkeypatch.setattr(importlib.import_module(f"app.functions.{target}"), target, received.append)
    # The platform's signature type for a function without an event trigger is "http";
    # the decorator must win over it.
    app = functions_framework.create_app(target=target, source=str(MAIN), signature_type="http")
    body = {
        "message": {
            "data": base64.b64encode(b'{"tick": 1}').decode(),
            "messageId": "7",
            "publishTime": "2026-11-23T15:00:00Z",
            "attributes": {},
        },
        "subscription": f"projects/recloop-dev/subscriptions/recloop-dev-{target}",
    }
    response = app.test_client().post("/", json=body)
    assert response.status_code == 200, response.data
    (event,) = received
    assert event["type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert base64.b64decode(event.data["message"]["data"]) == b'{"tick": 1}'


def test_logger_retry_is_one_line(monkeypatch, caplog):
    from app.config import Settings
    from app.functions import logger as logger_module
    from app.warehouse.base import WarehouseBusy

    def busy(*args, **kwargs):
        raise WarehouseBusy("w.duckdb is locked by another process")

    monkeypatch.setattr(logger_module, "_context", lambda: (Settings(), None))
    monkeypatch.setattr(logger_module, "handle", busy)
    app = functions_framework.create_app(target="logger", source=str(MAIN), signature_type="http")
    body = {
        "message": {"data": "", "messageId": "8", "publishTime": "2026-11-23T15:00:00Z"},
        "subscription": "projects/recloop-dev/subscriptions/recloop-dev-logger",
    }
    with caplog.at_level("INFO"):
        response = app.test_client().post("/", json=body)
    assert response.status_code == 503  # not acknowledged: Pub/Sub delivers it again
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    (line,) = [r.getMessage() for r in caplog.records if r.name == "recloop.logger"]
    assert line.startswith("not stored, the message will be delivered again")
