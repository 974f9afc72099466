"""Rows of the closed loop's tables, and the one query that joins them into training examples."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from app.schemas import FEEDBACK, PREDICTIONS


@dataclass(frozen=True)
class PredictionRecord:
    request_id: str
    instance_index: int
    time: datetime
    policy_version: str
    observation: list[float]
    action: int
    propensity: float | None = None
    candidates: list[int] | None = None


@dataclass(frozen=True)
class FeedbackRecord:
    request_id: str
    instance_index: int
    time: datetime
    reward: float
    source: str


@dataclass(frozen=True)
class TrainingRunRecord:
    policy_version: str
    time: datetime
    watermark: datetime | None
    examples: int
    policy_uri: str


@dataclass(frozen=True)
class TrainingExample:
    observation: list[float]
    action: int
    reward: float
    propensity: float | None
    feedback_time: datetime


def examples_query(predictions: str, feedback: str, param: Callable[[str], str]) -> str:
    """Predictions ⋈ feedback, each side deduplicated, newer than a watermark, oldest first.

    `param` formats a named parameter (`$name` for DuckDB, `@name` for BigQuery). Deduplicating
    here as well as at insert time keeps BigQuery's best-effort streaming dedup exact.
    """
    key = ", ".join(PREDICTIONS.key)
    return f"""
WITH p AS (
  SELECT * FROM {predictions}
  QUALIFY ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY time) = 1
), f AS (
  SELECT * FROM {feedback}
  QUALIFY ROW_NUMBER() OVER (PARTITION BY {", ".join(FEEDBACK.key)} ORDER BY time) = 1
)
SELECT p.observation, p.action, f.reward, p.propensity, f.time AS feedback_time
FROM p JOIN f USING ({key})
WHERE f.time > {param("watermark")}
ORDER BY f.time, p.request_id, p.instance_index
LIMIT {param("max_rows")}
"""
