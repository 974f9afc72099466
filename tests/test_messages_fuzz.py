"""Property-based fuzzing of the Pub/Sub message parsers and the functions' CloudEvents.

Every message either parses into records that hold exactly what was sent, or is refused with
a MessageError/EventError naming the field; nothing else escapes (an escaping exception makes
a function answer 5xx, and Pub/Sub redelivers the message forever). The three functions,
served by functions-framework as in cloud, answer every fuzzed CloudEvent without a 5xx and
still store a good message afterwards.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import tracemalloc
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import messages
from app.config import DataConfig, LoopConfig, Settings, WarehouseConfig
from app.functions import simulator as simulator_module
from app.functions import trigger as trigger_module
from app.functions.events import EventError, pubsub_message
from app.warehouse.records import FeedbackRecord, PredictionRecord

FUZZ = settings(
    max_examples=700,
    deadline=1_000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)
NOW = datetime(2026, 11, 1, tzinfo=UTC)

# -- strategies --------------------------------------------------------------------------------
numbers = st.one_of(
    st.floats(),
    st.integers(),
    st.integers(min_value=2**63, max_value=2**70),
    st.floats(min_value=-1e3, max_value=1e3),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=30))
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=25,
)
zones = st.sampled_from([UTC, timezone(timedelta(hours=5)), timezone(timedelta(hours=-11))])
times = st.one_of(
    st.datetimes(timezones=zones).map(datetime.isoformat),
    st.datetimes().map(datetime.isoformat),  # no zone
    st.sampled_from(["0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00", "yesterday"]),
    scalars,
)
observation = st.one_of(
    st.lists(st.floats(-10, 10), min_size=1, max_size=6), st.lists(scalars, max_size=4), scalars
)
prediction_row = st.one_of(
    st.fixed_dictionaries(
        {
            "instance_index": st.integers(0, 50) | scalars,
            "observation": observation,
            "action": st.integers(0, 20) | scalars,
            "propensity": st.none() | st.floats(0.01, 1) | numbers,
        }
    ),
    json_values,
)
feedback_row = st.one_of(
    st.fixed_dictionaries({"instance_index": st.integers(0, 50) | scalars, "reward": numbers}),
    json_values,
)
message_documents = st.one_of(
    st.fixed_dictionaries(
        {
            "kind": st.just(messages.PREDICTION_LOG) | scalars,
            "request_id": st.text(max_size=12) | scalars,
            "time": times,
            "policy_version": st.text(max_size=12) | scalars,
            "predictions": st.lists(prediction_row, max_size=4) | scalars,
        }
    ),
    st.fixed_dictionaries(
        {
            "kind": st.just(messages.FEEDBACK),
            "request_id": st.text(max_size=12) | scalars,
            "time": times,
            "source": st.text(max_size=12) | scalars,
            "rewards": st.lists(feedback_row, max_size=4) | scalars,
        }
    ),
    json_values,
)
message_bodies = st.one_of(
    message_documents.map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=200),
    message_documents.map(lambda d: json.dumps(d).encode()[:-3]),
)


def check_parsed(data: bytes) -> None:
    """Parsed records carry finite numbers and zoned times; refusals say what was wrong."""
    try:
        records = messages.parse(data)
    except messages.MessageError as err:
        assert str(err) and "Traceback" not in str(err)
        return
    assert records
    for record in records:
        assert record.time.tzinfo is not None and record.instance_index >= 0
        if isinstance(record, PredictionRecord):
            assert all(math.isfinite(v) for v in record.observation) and record.action >= 0
        else:
            assert isinstance(record, FeedbackRecord) and math.isfinite(record.reward)


@FUZZ
@given(data=message_bodies)
def test_fuzzed_messages_parse_or_are_refused_with_a_reason(data: bytes):
    check_parsed(data)


@settings(FUZZ, max_examples=300)
@given(
    request_id=st.text(min_size=1, max_size=20),
    time=st.datetimes(
        timezones=zones, min_value=datetime(1900, 1, 2), max_value=datetime(9000, 1, 1)
    ),
    version=st.text(min_size=1, max_size=20),
    rows=st.lists(
        st.tuples(
            st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=6),
            st.integers(0, 1000),
            st.none() | st.floats(min_value=1e-9, max_value=1.0),
        ),
        min_size=1,
        max_size=5,
    ),
)
def test_built_messages_parse_back_exactly(request_id, time, version, rows):
    data = messages.prediction_log(
        request_id,
        time,
        version,
        [
            {"instance_index": i, "observation": np.array(o), "action": a, "propensity": p}
            for i, (o, a, p) in enumerate(rows)
        ],
    )
    parsed = messages.parse(data)
    assert [(r.request_id, r.policy_version, r.time) for r in parsed] == [
        (request_id, version, time.astimezone(UTC))
    ] * len(rows)
    assert [(r.observation, r.action, r.propensity) for r in parsed] == [
        (o, a, p) for o, a, p in rows
    ]
    rewards = [(i, o[0]) for i, (o, _, _) in enumerate(rows)]
    back = messages.parse(messages.feedback(request_id, rewards, "fuzz", time))
    assert [(r.instance_index, r.reward, r.time) for r in back] == [
        (i, r, time.astimezone(UTC)) for i, r in rewards
    ]


def test_memory_stays_flat_while_parsing_bad_and_good_messages():
    rows = [{"instance_index": 0, "observation": [1.0], "action": 1, "propensity": None}]
    corpus = [
        b"",
        b"{",
        b'{"kind": "feedback", "time": "0001-01-01T00:00:00+05:00"}',
        json.dumps({"kind": "prediction_log", "predictions": [{"observation": [1e308] * 50}]}),
        messages.prediction_log("r", NOW, "v", rows * 20),
        messages.feedback("r", [(i, 1.0) for i in range(20)], "s", NOW),
    ]
    events_ = [
        envelope(base64.b64encode(d if isinstance(d, bytes) else d.encode()).decode())
        for d in corpus
    ]
    events_ += [envelope("é"), envelope(1), {"message": None}]

    def rounds(n: int) -> None:
        for _ in range(n):
            for event in events_:
                with contextlib.suppress(EventError, messages.MessageError):
                    messages.parse(pubsub_message(event).data)

    rounds(50)
    tracemalloc.start()
    try:
        rounds(50)
        before = tracemalloc.take_snapshot()
        rounds(300)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    growth = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert growth < 128 * 1024, f"{growth} bytes kept after 2,700 more messages"


# -- CloudEvents -------------------------------------------------------------------------------
def envelope(data: Any, attributes: Any = None, message_id: Any = "1") -> dict[str, Any]:
    message: dict[str, Any] = {"data": data, "messageId": message_id}
    if attributes is not None:
        message["attributes"] = attributes
    return {"message": message, "subscription": "projects/p/subscriptions/s"}


events = st.one_of(
    json_values,
    st.builds(envelope, json_values, json_values, json_values),
    st.builds(envelope, st.binary(max_size=60).map(lambda b: base64.b64encode(b).decode())),
    st.builds(envelope, st.text(max_size=40)),  # not base64, or not ASCII at all
    st.builds(
        envelope,
        message_bodies.map(lambda b: base64.b64encode(b).decode()),
        st.none() | st.dictionaries(st.text(max_size=5), st.text(max_size=5) | scalars),
    ),
)


@FUZZ
@given(event=events)
def test_fuzzed_cloud_events_decode_or_are_refused_with_a_reason(event: Any):
    try:
        message = pubsub_message(event)
    except EventError as err:
        assert str(err)
        return
    assert isinstance(message.data, bytes) and isinstance(message.message_id, str)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in message.attributes.items())
    check_parsed(message.data)


# -- the three functions under functions-framework ---------------------------------------------
CE_HEADERS = {
    "ce-id": "1",
    "ce-specversion": "1.0",
    "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
    "ce-source": "//pubsub.googleapis.com/projects/p/topics/t",
    "content-type": "application/json",
}


class RecordingEndpoint:
    def predict(self, observations: list[list[float]]) -> list[dict[str, Any]]:
        return [
            {"action": i % 10, "request_id": "r", "instance_index": i}
            for i in range(len(observations))
        ]


class IdleLauncher:
    started = 0

    def running(self) -> bool:
        return False

    def start(self) -> None:
        self.started += 1


@pytest.fixture
def functions(
    tmp_path: Path, movielens_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """Test clients of main.py's three targets, on a DuckDB warehouse in tmp_path, with the
    endpoint, the publisher and the pipeline launcher replaced by recorders."""
    import functions_framework

    from app.functions import logger as logger_module

    warehouse_path = tmp_path / "w.duckdb"
    monkeypatch.setenv("RECLOOP__WAREHOUSE__DUCKDB_PATH", str(warehouse_path))
    monkeypatch.setenv("RECLOOP__STATE_DIR", str(tmp_path / "state"))
    logger_module._context.cache_clear()
    settings_ = Settings(
        state_dir=str(tmp_path / "state"),
        data=DataConfig(movielens_dir=str(movielens_dir), download=False),
        warehouse=WarehouseConfig(duckdb_path=str(warehouse_path)),
        loop=LoopConfig(rank_k=5, num_actions=10, simulated_users=8, min_new_examples=10**9),
    )
    published: list[bytes] = []
    monkeypatch.setattr(
        simulator_module,
        "_context",
        lambda: (settings_, RecordingEndpoint(), published.append),
    )
    launcher = IdleLauncher()
    monkeypatch.setattr(
        trigger_module, "_context", lambda: (settings_, logger_module._context()[1], launcher)
    )
    source = str(Path(simulator_module.__file__).with_name("main.py"))
    clients = {
        target: functions_framework.create_app(target, source, "cloudevent").test_client()
        for target in ("logger", "simulator", "trigger")
    }
    yield {"clients": clients, "published": published, "launcher": launcher}
    logger_module._context.cache_clear()


def test_functions_answer_fuzzed_cloud_events_without_a_5xx(functions: dict[str, Any]):
    from app.functions import logger as logger_module

    clients = functions["clients"]

    @settings(FUZZ, max_examples=100)
    @given(
        target=st.sampled_from(["logger", "simulator", "trigger"]),
        event=events,
        raw=st.none() | st.binary(max_size=100),
    )
    def fuzz(target: str, event: Any, raw: bytes | None) -> None:
        body = raw if raw is not None else json.dumps(event).encode()
        response = clients[target].post("/", data=body, headers=CE_HEADERS)
        assert response.status_code < 500, response.data[:300]

    @settings(FUZZ, max_examples=100)
    @given(
        target=st.sampled_from(["logger", "simulator", "trigger"]),
        data=st.one_of(
            message_bodies.map(lambda b: base64.b64encode(b).decode()),
            st.text(max_size=40),
        ),
        attributes=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
    )
    def fuzz_push(target: str, data: str, attributes: dict[str, str]) -> None:
        """What a Pub/Sub push subscription posts (no CloudEvent headers): functions-framework
        turns it into the CloudEvent the function reads."""
        body = {
            "message": {"data": data, "attributes": attributes, "messageId": "7"},
            "subscription": "projects/p/subscriptions/s",
        }
        response = clients[target].post("/projects/p/topics/t", json=body)
        assert response.status_code < 500, response.data[:300]

    warehouse = logger_module._context()[1]
    fuzz()
    fuzz_push()
    # Bad messages stored nothing that could be trained on; a good one is stored afterwards.
    rows = [{"instance_index": 0, "observation": [1.0, 2.0], "action": 1, "propensity": 1.0}]
    good = [
        messages.prediction_log("after-fuzz", NOW, "v1", rows),
        messages.feedback("after-fuzz", [(0, 4.0)], "fuzz", NOW),
    ]
    before = warehouse.count_untrained(rank_k=2, num_actions=3)
    prediction, feedback = (envelope(base64.b64encode(d).decode()) for d in good)
    response = clients["logger"].post("/", data=json.dumps(prediction), headers=CE_HEADERS)
    assert response.status_code == 200
    response = clients["logger"].post("/projects/p/topics/t", json=feedback)  # as pushed
    assert response.status_code == 200
    assert warehouse.count_untrained(rank_k=2, num_actions=3) == before + 1
    assert functions["launcher"].started == 0 and functions["published"]


def test_a_time_out_of_range_is_refused_not_raised(tmp_path: Path):
    """Found by the fuzz: a zoned time at the edge of the calendar cannot be moved to UTC."""
    data = json.dumps(
        {
            "kind": "feedback",
            "request_id": "r",
            "source": "s",
            "time": "0001-01-01T00:00:00+05:00",
            "rewards": [{"instance_index": 0, "reward": 1}],
        }
    ).encode()
    with pytest.raises(messages.MessageError, match="time must be an ISO 8601 time"):
        messages.parse(data)


def test_non_ascii_message_data_is_refused_not_raised():
    """Found by the fuzz: base64 decoding raises a plain ValueError on non-ASCII text."""
    with pytest.raises(EventError, match="message data is not base64"):
        pubsub_message(envelope("é"))


def test_attributes_that_are_not_strings_are_refused():
    with pytest.raises(EventError, match="message attributes must be an object of strings"):
        pubsub_message(envelope("", attributes=[1]))
