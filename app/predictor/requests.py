"""Parsing and validating prediction request bodies.

The common case (well-formed instances) takes one `orjson.loads` and one `np.array`; only
when that fails or looks suspicious does a slower walk find and name the exact problem.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

SINGLE = -1  # layout marker: the instance held one observation


class BadRequest(ValueError):
    """The request body cannot be served; the message says what was wrong."""


@dataclass(frozen=True)
class ParsedRequest:
    observations: np.ndarray  # rows × rank_k, every instance's observations in order
    layout: list[int] | None  # per instance: SINGLE, or how many rows a batched one holds


def _instances(body: bytes) -> list[Any]:
    """The Vertex envelope every request has: a JSON object with a non-empty "instances"."""
    if not body:
        raise BadRequest('request body is empty; expected JSON {"instances": [...]}')
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise BadRequest(f"request body is not valid JSON: {err}") from None
    if not isinstance(document, dict) or "instances" not in document:
        raise BadRequest('expected a JSON object with an "instances" list')
    instances = document["instances"]
    if not isinstance(instances, list) or not instances:
        raise BadRequest('"instances" must be a non-empty list')
    return instances


def parse(body: bytes, rank_k: int) -> ParsedRequest:
    instances = _instances(body)

    fast = _fast_rows(instances, body, rank_k)
    if fast is not None:
        return ParsedRequest(fast, None)
    return _slow_parse(instances, body, rank_k)


# What a well-formed body holds besides its keys: numbers, JSON structure and whitespace.
_NUMERIC = b"0123456789.-+eE[]{}:, \t\n\r"
_INSTANCES_KEY = b'"instances"'.translate(None, _NUMERIC)
_OBSERVATION_KEY = b'"observation"'.translate(None, _NUMERIC)


def _fast_rows(instances: list[Any], body: bytes, rank_k: int) -> np.ndarray | None:
    """The common case, every instance one well-formed observation, in a few C-level calls.

    None sends the request down the slow path, which serves the batched form and finds
    and names whatever is wrong.
    """
    # One pass over the body: nothing but numbers besides the keys ("instances" once,
    # "observation" once per instance), so no booleans (they would pass as 1.0 and 0.0), nulls,
    # strings or other keys, and the conversion below needs no type discovery.
    if body.translate(None, _NUMERIC) != _INSTANCES_KEY + _OBSERVATION_KEY * len(instances):
        return None
    try:
        array = np.array([instance["observation"] for instance in instances], dtype=np.float64)
    except (TypeError, KeyError, ValueError):
        return None
    # Nested or ragged lists show up as another shape.
    if array.shape != (len(instances), rank_k) or not np.isfinite(array).all():
        return None
    return array


def _slow_parse(instances: list[Any], body: bytes, rank_k: int) -> ParsedRequest:
    rows: list[Any] = []
    layout: list[int] = []
    for i, instance in enumerate(instances):
        if not isinstance(instance, dict) or "observation" not in instance:
            raise BadRequest(f'instances[{i}] must be an object with an "observation" list')
        observation = instance["observation"]
        if not isinstance(observation, list) or not observation:
            raise BadRequest(
                f"instances[{i}].observation must be a non-empty list of {rank_k} numbers"
            )
        if isinstance(observation[0], list):  # the Vertex sample's batched form
            rows.extend(observation)
            layout.append(len(observation))
        else:
            rows.append(observation)
            layout.append(SINGLE)

    try:
        array = np.array(rows)
    except ValueError:
        array = None
    if (
        array is None
        or array.dtype.kind not in "fi"
        or array.shape != (len(rows), rank_k)
        or b"true" in body
        or b"false" in body
    ):
        array = _diagnose(instances, rank_k)
    array = array.astype(np.float64, copy=False)
    if not np.isfinite(array).all():
        raise BadRequest("observations must be finite numbers")
    return ParsedRequest(array, None if all(n == SINGLE for n in layout) else layout)


def _diagnose(instances: list[Any], rank_k: int) -> np.ndarray:
    """Walks the instances to name the first bad value; returns the rows if all are fine."""
    rows: list[list[float]] = []
    for i, instance in enumerate(instances):
        observation = instance["observation"]
        batched = isinstance(observation[0], list)
        vectors = observation if batched else [observation]
        for j, vector in enumerate(vectors):
            where = f"instances[{i}].observation" + (f"[{j}]" if batched else "")
            if not isinstance(vector, list):
                raise BadRequest(f"{where} must be a list of {rank_k} numbers, got {_kind(vector)}")
            if len(vector) != rank_k:
                raise BadRequest(
                    f"{where} has {len(vector)} values; this policy expects {rank_k} (rank_k)"
                )
            for m, value in enumerate(vector):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise BadRequest(f"{where}[{m}] is {_kind(value)}, not a number")
                if not math.isfinite(float(value)):
                    raise BadRequest(f"{where}[{m}] is not a finite number")
            rows.append([float(v) for v in vector])
    return np.array(rows, dtype=np.float64)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return f"the string {value[:20]!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


@dataclass(frozen=True)
class PerArmRequest:
    contexts: np.ndarray  # instances × rank_k: each instance's user vector
    candidates: list[np.ndarray | None]  # per instance: catalogue indices, None = all
    ks: list[int]  # per instance: how many movies to return (1: the chosen movie alone)


def parse_per_arm(body: bytes, rank_k: int, index_of: np.ndarray) -> PerArmRequest:
    """`{"instances": [{"observation": [rank_k numbers], "candidates": [movie ids], "k": n}]}`;
    `candidates` (default: the whole catalogue) and `k` (default 1) are optional.
    `index_of` maps a movie id to its catalogue index (−1: not in the catalogue)."""
    instances = _instances(body)
    catalogue = int((index_of >= 0).sum())
    candidates: list[np.ndarray | None] = []
    ks: list[int] = []
    for i, instance in enumerate(instances):
        if not isinstance(instance, dict) or "observation" not in instance:
            raise BadRequest(f'instances[{i}] must be an object with an "observation" list')
        observation = instance["observation"]
        if not isinstance(observation, list) or not observation:
            raise BadRequest(
                f"instances[{i}].observation must be a non-empty list of {rank_k} numbers"
            )
        if isinstance(observation[0], list):
            raise BadRequest(
                f"instances[{i}].observation must be one list of {rank_k} numbers "
                "(a per-arm policy takes one user per instance)"
            )
        chosen = _candidates(instance.get("candidates"), index_of, catalogue, i)
        candidates.append(chosen)
        ks.append(_k(instance.get("k", 1), catalogue if chosen is None else len(chosen), i))
    contexts = _fast_rows(instances, body, rank_k)
    if contexts is None:
        contexts = _diagnose(instances, rank_k)
    return PerArmRequest(contexts, candidates, ks)


def _candidates(value: Any, index_of: np.ndarray, catalogue: int, i: int) -> np.ndarray | None:
    where = f"instances[{i}].candidates"
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise BadRequest(f"{where} must be a non-empty list of movie ids (omit it for all)")
    if set(map(type, value)) != {int}:  # bool is not int here: true would pass as movie 1
        bad = next(v for v in value if type(v) is not int)
        raise BadRequest(f"{where} must hold whole-number movie ids, found {_kind(bad)}")
    try:
        ids = np.array(value, dtype=np.int64)
    except OverflowError:
        huge = next(v for v in value if not -(2**63) <= v < 2**63)
        raise BadRequest(
            f"{where} holds movie ids not in the policy's catalogue of {catalogue} movies: {huge}"
        ) from None
    known = (ids >= 0) & (ids < len(index_of))
    indices = np.full(len(ids), -1, dtype=np.int64)
    indices[known] = index_of[ids[known]]
    if (indices < 0).any():
        unknown = ids[indices < 0][:5].tolist()
        raise BadRequest(
            f"{where} holds movie ids not in the policy's catalogue of {catalogue} movies: "
            f"{', '.join(map(str, unknown))}"
        )
    if len(np.unique(indices)) != len(indices):
        values, counts = np.unique(ids, return_counts=True)
        raise BadRequest(f"{where} repeats movie id {int(values[counts > 1][0])}")
    return indices


def _k(value: Any, available: int, i: int) -> int:
    if type(value) is not int or not 1 <= value <= available:
        raise BadRequest(
            f"instances[{i}].k must be a whole number from 1 to {available} "
            f"(the number of candidates), got {_kind(value) if type(value) is not int else value}"
        )
    return int(value)
