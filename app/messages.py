"""The closed loop's Pub/Sub messages: what the predictor, the simulator and users publish.

Every message is JSON. Parsing is strict and every error names the offending field, because
the Logger must reject a malformed message with a reason rather than store half of it: any
input either parses or raises MessageError (tests/test_messages_fuzz.py).
"""

from __future__ import annotations

import itertools
import sys
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from app.schemas import GLOBAL, POLICY_KINDS
from app.warehouse.records import FeedbackRecord, LogBatch, PredictionRecord

PREDICTION_LOG = "prediction_log"
FEEDBACK = "feedback"
KINDS = (PREDICTION_LOG, FEEDBACK)


class MessageError(ValueError):
    """A message that cannot be stored; the text says why."""


def prediction_log(
    request_id: str,
    time: datetime,
    policy_version: str,
    rows: list[dict[str, Any]],
    policy_kind: str = GLOBAL,
) -> bytes:
    """rows: {"instance_index", "observation", "action", "propensity"} per served instance,
    and "candidates" (movie ids) for a per-arm policy that chose among some of its movies,
    "slate" (movie ids, best first) when it served a top-k answer;
    `policy_kind` (app/schemas.py POLICY_KINDS) says what the actions index."""
    return orjson.dumps(
        {
            "kind": PREDICTION_LOG,
            "request_id": request_id,
            "time": time.isoformat(),
            "policy_version": policy_version,
            "policy_kind": policy_kind,
            "predictions": rows,
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def feedback(
    request_id: str, rewards: list[tuple[int, float]], source: str, time: datetime | None = None
) -> bytes:
    return orjson.dumps(
        {
            "kind": FEEDBACK,
            "request_id": request_id,
            "source": source,
            "time": (time or datetime.now(UTC)).isoformat(),
            "rewards": [{"instance_index": i, "reward": r} for i, r in rewards],
        }
    )


INT64_MAX = 2**63 - 1  # the warehouse's INTEGER/INT64 columns
_FLOAT64_MAX = sys.float_info.max


def parse(data: bytes) -> list[PredictionRecord] | list[FeedbackRecord]:
    """One message's rows as records."""
    batch = LogBatch()
    if add(batch, data) == PREDICTION_LOG:
        return batch.prediction_records()
    return batch.feedback_records()


def add(batch: LogBatch, data: bytes) -> str:
    """Parses one message into `batch`'s columns and returns its kind. A malformed message
    raises MessageError and adds nothing."""
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise MessageError(f"message is not valid JSON: {err}") from None
    if not isinstance(message, dict):
        raise MessageError("message must be a JSON object")
    kind = message.get("kind")
    if kind == PREDICTION_LOG:
        _extend(batch.predictions, _predictions(message))
    elif kind == FEEDBACK:
        _extend(batch.feedback, _feedback(message))
    else:
        raise MessageError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return kind


def _extend(columns: dict[str, list[Any]], more: dict[str, list[Any]]) -> None:
    for name, values in columns.items():
        values.extend(more[name])


def _predictions(m: dict[str, Any]) -> dict[str, list[Any]]:
    """The message's rows, column by column (LogBatch.predictions), validated a column at a
    time with C-level checks (the Logger's hot path: benchmarks/quick.py); the error names
    the first row that fails a column's check."""
    request_id = _text(m, "request_id")
    time = _time(m, "time")
    version = _text(m, "policy_version")
    policy_kind = _policy_kind(m)
    rows = _rows(m, "predictions")
    observations: list[Any] = [row.get("observation") for row in rows]
    if (
        not (set(map(type, observations)) == {list} and all(observations))
        or not set(map(type, itertools.chain.from_iterable(observations))) <= _NUMBER_TYPES
    ):
        bad = next(i for i, o in enumerate(observations) if not _numbers(o))
        raise MessageError(f"predictions[{bad}]{_NOT_AN_OBSERVATION}")
    propensities = [row.get("propensity") for row in rows]
    if not _propensities(propensities):
        bad, value = next((i, p) for i, p in enumerate(propensities) if not _propensities([p]))
        raise MessageError(
            f"predictions[{bad}].propensity must be in (0, 1] or null, got {value!r}"
        )
    candidates = [row.get("candidates") for row in rows]
    if candidates.count(None) != len(rows):
        candidates = [_candidates(row, f"predictions[{i}]") for i, row in enumerate(rows)]
    slates = [row.get("slate") for row in rows]
    if slates.count(None) != len(rows):
        slates = [_slate(row, f"predictions[{i}]") for i, row in enumerate(rows)]
    n = len(rows)
    return {
        "request_id": [request_id] * n,
        "instance_index": _whole_numbers(rows, "predictions", "instance_index"),
        "time": [time] * n,
        "policy_version": [version] * n,
        "observation": _finite_floats(observations),
        "action": _whole_numbers(rows, "predictions", "action"),
        "propensity": [None if p is None else float(p) for p in propensities],
        "candidates": candidates,
        "policy_kind": [policy_kind] * n,
        "slate": slates,
    }


def _rows(m: dict[str, Any], key: str) -> list[dict[str, Any]]:
    rows = _list(m, key)
    if set(map(type, rows)) != {dict}:
        bad = next(i for i, row in enumerate(rows) if not isinstance(row, dict))
        raise MessageError(f"{key}[{bad}] must be an object")
    return rows


def _whole_numbers(rows: list[dict[str, Any]], where: str, key: str) -> list[int]:
    """A column of whole numbers the warehouse's INT64 columns can hold."""
    values: list[Any] = [row.get(key) for row in rows]
    if not (set(map(type, values)) == {int} and min(values) >= 0 and max(values) <= INT64_MAX):
        bad, value = next(
            (i, v)
            for i, v in enumerate(values)
            if not (type(v) is int and 0 <= v <= INT64_MAX)  # exactly int: not a bool
        )
        raise MessageError(
            f"{where}[{bad}].{key} must be a whole number in 0..{INT64_MAX}, got {value!r}"
        )
    return values


def _propensities(values: list[Any]) -> bool:
    """Each value null or a number in (0, 1] (nan fails both comparisons)."""
    if not set(map(type, values)) <= _PROPENSITY_TYPES:
        return False
    given = [p for p in values if p is not None]
    try:
        array = np.array(given, dtype=np.float64)
    except OverflowError:  # an integer past float64's range
        return False
    return bool(((array > 0) & (array <= 1)).all())


_NUMBER_TYPES = frozenset((int, float))  # exactly: bool is an int, and is not a number here
_PROPENSITY_TYPES = _NUMBER_TYPES | {type(None)}
_NOT_AN_OBSERVATION = ".observation must be a non-empty list of finite numbers"


def _numbers(values: Any) -> bool:
    """A non-empty list of ints and floats (one C-level pass, no call per value)."""
    return isinstance(values, list) and bool(values) and set(map(type, values)) <= _NUMBER_TYPES


def _finite_floats(observations: list[list[int | float]]) -> list[list[float]]:
    """The observations as floats, checked finite in one numpy pass over the whole message:
    the observations are most of a prediction log, and this is the Logger's hot path
    (benchmarks/quick.py: logger_rows_per_s). The error names the first bad row."""
    try:
        flat = np.array(list(itertools.chain.from_iterable(observations)), dtype=np.float64)
        finite = bool(np.isfinite(flat).all())
    except OverflowError:  # an integer past float64's range
        finite = False
    if not finite:  # name the row (nan fails the comparison; ints compare exactly)
        bad = next(
            (i for i, o in enumerate(observations) if not all(abs(v) <= _FLOAT64_MAX for v in o)),
            0,
        )
        raise MessageError(f"predictions[{bad}]{_NOT_AN_OBSERVATION}")
    values = flat.tolist()
    out, start = [], 0
    for observation in observations:
        end = start + len(observation)
        out.append(values[start:end])
        start = end
    return out


def _candidates(row: dict[str, Any], where: str) -> list[int] | None:
    """A per-arm prediction's candidate movie ids (absent: the policy's whole catalogue)."""
    return _movie_ids(row, "candidates", where)


def _slate(row: dict[str, Any], where: str) -> list[int] | None:
    """A per-arm top-k answer's movie ids, best first (absent: one movie was served)."""
    return _movie_ids(row, "slate", where)


def _movie_ids(row: dict[str, Any], key: str, where: str) -> list[int] | None:
    value = row.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise MessageError(f"{where}.{key} must be a non-empty list of movie ids or absent")
    for v in value:
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= INT64_MAX:
            raise MessageError(
                f"{where}.{key} must hold whole numbers in 0..{INT64_MAX}, got {v!r}"
            )
    return value


def _policy_kind(m: dict[str, Any]) -> str | None:
    """Which kind of policy served (absent: a predictor from before the field; stored NULL,
    which the ledger reads as global)."""
    value = m.get("policy_kind")
    if value is not None and value not in POLICY_KINDS:
        raise MessageError(
            f"policy_kind must be one of {', '.join(POLICY_KINDS)} or absent, got {value!r}"
        )
    return value


def _feedback(m: dict[str, Any]) -> dict[str, list[Any]]:
    """The message's rows, column by column (LogBatch.feedback), validated as _predictions."""
    request_id = _text(m, "request_id")
    time = _time(m, "time")
    source = _text(m, "source")
    rows = _rows(m, "rewards")
    rewards: list[Any] = [row.get("reward") for row in rows]
    finite = set(map(type, rewards)) <= _NUMBER_TYPES
    if finite:
        try:
            finite = bool(np.isfinite(np.array(rewards, dtype=np.float64)).all())
        except OverflowError:  # an integer past float64's range
            finite = False
    if not finite:
        bad, value = next((i, r) for i, r in enumerate(rewards) if not _is_finite_number(r))
        raise MessageError(f"rewards[{bad}].reward must be a finite number, got {value!r}")
    n = len(rows)
    return {
        "request_id": [request_id] * n,
        "instance_index": _whole_numbers(rows, "rewards", "instance_index"),
        "time": [time] * n,
        "reward": [float(r) for r in rewards],
        "source": [source] * n,
    }


def _is_finite_number(value: Any) -> bool:
    return type(value) in _NUMBER_TYPES and abs(value) <= _FLOAT64_MAX


def _text(m: dict[str, Any], key: str) -> str:
    value = m.get(key)
    if not isinstance(value, str) or not value:
        raise MessageError(f"{key} must be a non-empty string, got {value!r}")
    return value


def _list(m: dict[str, Any], key: str) -> list[Any]:
    value = m.get(key)
    if not isinstance(value, list) or not value:
        raise MessageError(f"{key} must be a non-empty list")
    return value


def _time(m: dict[str, Any], key: str) -> datetime:
    value = m.get(key)
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: no UTC time at the calendar's edge
        pass
    raise MessageError(f"{key} must be an ISO 8601 time with a zone, got {value!r}")
