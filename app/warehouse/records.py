"""Rows of the closed loop's tables, as the warehouses take and return them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


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
    policy_kind: str | None = None  # app/schemas.py POLICY_KINDS; None: global
    slate: list[int] | None = None  # a top-k answer's movie ids, best first


@dataclass(frozen=True)
class FeedbackRecord:
    request_id: str
    instance_index: int
    time: datetime
    reward: float
    source: str


@dataclass(frozen=True)
class TrainingRunRecord:
    """A committed run (`time` is its commit time, set by the warehouse)."""

    run_id: str
    policy_version: str
    parent_run_id: str | None
    time: datetime | None
    examples: int
    rank_k: int
    num_actions: int
    policy_uri: str


@dataclass(frozen=True)
class TrainingExample:
    request_id: str
    instance_index: int
    observation: list[float]
    action: int
    reward: float
    propensity: float | None


@dataclass(frozen=True)
class PromotionRecord:
    """One promotion decision (app/schemas.py PROMOTIONS, same column order)."""

    run_id: str
    stage: str
    time: datetime
    candidate_version: str
    serving_version: str
    decision: str
    reason: str
    estimator: str
    ips: float | None
    snips: float | None
    dr: float | None
    ci_low: float | None
    ci_high: float | None
    serving_value: float | None
    difference: float | None
    difference_low: float | None
    margin: float
    confidence: float
    rows: int
