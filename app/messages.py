"""The closed loop's Pub/Sub messages: what the predictor, the simulator and users publish.

Every message is JSON. Parsing is strict and every error names the offending field, because
the Logger must reject a malformed message with a reason rather than store half of it: any
input either parses or raises MessageError (tests/test_messages_fuzz.py).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import orjson

from app.schemas import GLOBAL, POLICY_KINDS
from app.warehouse.records import FeedbackRecord, PredictionRecord

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


def parse(data: bytes) -> list[PredictionRecord] | list[FeedbackRecord]:
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise MessageError(f"message is not valid JSON: {err}") from None
    if not isinstance(message, dict):
        raise MessageError("message must be a JSON object")
    kind = message.get("kind")
    if kind == PREDICTION_LOG:
        return _predictions(message)
    if kind == FEEDBACK:
        return _feedback(message)
    raise MessageError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")


def _predictions(m: dict[str, Any]) -> list[PredictionRecord]:
    request_id = _text(m, "request_id")
    time = _time(m, "time")
    version = _text(m, "policy_version")
    policy_kind = _policy_kind(m)
    rows = _list(m, "predictions")
    records = []
    for i, row in enumerate(rows):
        where = f"predictions[{i}]"
        if not isinstance(row, dict):
            raise MessageError(f"{where} must be an object")
        observation = row.get("observation")
        if (
            not isinstance(observation, list)
            or not observation
            or not all(_is_number(v) for v in observation)
        ):
            raise MessageError(f"{where}.observation must be a non-empty list of finite numbers")
        propensity = row.get("propensity")
        if propensity is not None and not (_is_number(propensity) and 0 < propensity <= 1):
            raise MessageError(f"{where}.propensity must be in (0, 1] or null, got {propensity!r}")
        records.append(
            PredictionRecord(
                request_id=request_id,
                instance_index=_index(row, where),
                time=time,
                policy_version=version,
                observation=[float(v) for v in observation],
                action=_int(row, "action", where),
                propensity=None if propensity is None else float(propensity),
                candidates=_candidates(row, where),
                policy_kind=policy_kind,
                slate=_slate(row, where),
            )
        )
    return records


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


def _feedback(m: dict[str, Any]) -> list[FeedbackRecord]:
    request_id = _text(m, "request_id")
    time = _time(m, "time")
    source = _text(m, "source")
    records = []
    for i, row in enumerate(_list(m, "rewards")):
        where = f"rewards[{i}]"
        if not isinstance(row, dict):
            raise MessageError(f"{where} must be an object")
        reward = row.get("reward")
        if not isinstance(reward, int | float) or not _is_number(reward):
            raise MessageError(f"{where}.reward must be a finite number, got {reward!r}")
        records.append(FeedbackRecord(request_id, _index(row, where), time, float(reward), source))
    return records


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


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


def _int(row: dict[str, Any], key: str, where: str) -> int:
    """A whole number the warehouse's INT64 columns can hold."""
    value = row.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= INT64_MAX:
        raise MessageError(f"{where}.{key} must be a whole number in 0..{INT64_MAX}, got {value!r}")
    return value


def _index(row: dict[str, Any], where: str) -> int:
    return _int(row, "instance_index", where)


def _time(m: dict[str, Any], key: str) -> datetime:
    value = m.get(key)
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: no UTC time at the calendar's edge
        pass
    raise MessageError(f"{key} must be an ISO 8601 time with a zone, got {value!r}")
