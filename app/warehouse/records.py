"""Rows of the closed loop's tables, as the warehouses take and return them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any


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


PREDICTION_COLUMNS = tuple(f.name for f in fields(PredictionRecord))
FEEDBACK_COLUMNS = tuple(f.name for f in fields(FeedbackRecord))


@dataclass
class LogBatch:
    """Prediction and feedback rows of many Logger messages, column by column (each
    record's fields, which are its table's columns but `ingested_at`): how the Logger hands
    rows to a warehouse in bulk without a Python object per row (benchmarks/quick.py)."""

    predictions: dict[str, list[Any]] = field(
        default_factory=lambda: {name: [] for name in PREDICTION_COLUMNS}
    )
    feedback: dict[str, list[Any]] = field(
        default_factory=lambda: {name: [] for name in FEEDBACK_COLUMNS}
    )

    @classmethod
    def of(
        cls, predictions: Iterable[PredictionRecord] = (), feedback: Iterable[FeedbackRecord] = ()
    ) -> LogBatch:
        batch = cls()
        for columns, records in ((batch.predictions, predictions), (batch.feedback, feedback)):
            for record in records:
                for name, values in columns.items():
                    values.append(getattr(record, name))
        return batch

    @property
    def prediction_rows(self) -> int:
        return len(self.predictions["request_id"])

    @property
    def feedback_rows(self) -> int:
        return len(self.feedback["request_id"])

    def prediction_records(self) -> list[PredictionRecord]:
        return [PredictionRecord(**row) for row in _rows(self.predictions)]

    def feedback_records(self) -> list[FeedbackRecord]:
        return [FeedbackRecord(**row) for row in _rows(self.feedback)]


def _rows(columns: dict[str, list[Any]]) -> list[dict[str, Any]]:
    n = len(columns["request_id"])
    return [{name: values[i] for name, values in columns.items()} for i in range(n)]


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
