"""The canary's online comparison: reward by `policy_version` from the warehouse, and a
sequential decision that promotes or rolls back the candidate by itself.

At each look (after every `look_every` further rewarded interactions of the candidate, up to
`max_looks`), with D̂ = mean(candidate) − mean(serving) over the interactions each served
since the canary started and se = √(s²_c/n_c + s²_s/n_s), at z for (1 − confidence)/max_looks
(Bonferroni over the looks, so the error rate over the whole canary is at most
1 − confidence):

    promote      ⇔ D̂ − z·se ≥ −margin       (not worse by more than the margin)
    roll back    ⇔ D̂ + z·se < −margin, or the last look is reached undecided, or
                   `gate.canary_max_hours` pass without a decision (`out_of_time`)

Proved by tests/test_canary.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

from app.evaluation.gate import PROMOTED, ROLLED_BACK
from app.schemas import FEEDBACK, PREDICTIONS
from app.warehouse import ledger

CONTINUE = "continue"


@dataclass(frozen=True)
class RewardStats:
    """Online reward of one policy version: count, mean and sample variance."""

    version: str
    n: int
    mean: float
    variance: float

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        z = NormalDist().inv_cdf(0.5 + confidence / 2)
        half = z * (self.variance / self.n) ** 0.5 if self.n > 0 else float("inf")
        return self.mean - half, self.mean + half


def rewards_by_version_sql(d: ledger.Dialect) -> str:
    """Rewarded interactions since `since`, per version (each side deduplicated by key).
    Both sides read only the partitions stored since then (a row served after `since` is
    stored after it): tests/test_bigquery_requests.py::
    test_every_read_of_the_logged_tables_filters_their_partition_column."""
    key = ", ".join(PREDICTIONS.key)
    first = ledger._first_by_key  # the ledger's one definition of "deduplicated by key"
    recent = ledger._recent
    return f"""SELECT p.policy_version, COUNT(*) AS n, AVG(f.reward) AS mean,
       COALESCE(VAR_SAMP(f.reward), 0) AS variance
FROM ({first(d, PREDICTIONS, "ingested_at, time", recent(d, PREDICTIONS))}) AS p
JOIN ({first(d, FEEDBACK, "ingested_at, time", recent(d, FEEDBACK))}) AS f USING ({key})
WHERE p.time >= {d.param("since")}
GROUP BY p.policy_version ORDER BY p.policy_version"""


@dataclass(frozen=True)
class Verdict:
    decision: str  # promoted, rolled_back or continue
    difference: float
    low: float
    high: float
    reason: str


def judge(
    candidate: RewardStats,
    serving: RewardStats,
    margin: float,
    confidence: float,
    look: int,
    max_looks: int,
) -> Verdict:
    """The decision at `look` (1-based) of at most `max_looks`."""
    if candidate.n < 2 or serving.n < 2:
        return Verdict(CONTINUE, 0.0, float("-inf"), float("inf"), "too few rewards yet")
    d, low, high = _difference(candidate, serving, confidence, max_looks)
    numbers = f"{_numbers(candidate, serving, d, low, high)} at look {look}/{max_looks}"
    if low >= -margin:
        return Verdict(PROMOTED, d, low, high, f"{numbers}: not worse than −{margin:g}")
    if high < -margin:
        return Verdict(ROLLED_BACK, d, low, high, f"{numbers}: worse than −{margin:g}")
    if look >= max_looks:
        return Verdict(ROLLED_BACK, d, low, high, f"{numbers}: undecided at the last look")
    return Verdict(CONTINUE, d, low, high, numbers)


def out_of_time(
    candidate: RewardStats, serving: RewardStats, confidence: float, max_looks: int, hours: float
) -> Verdict:
    """No decision `hours` after the canary opened: rolled back (undecided), with the numbers
    it has. A canary too small to collect its looks' rewards would otherwise stay open, and
    hold off every re-training, for ever."""
    why = f"undecided after {hours:g} h (gate.canary_max_hours): rolled back"
    if candidate.n < 2 or serving.n < 2:
        counts = f"online: {candidate.n} vs {serving.n} rewards"
        return Verdict(ROLLED_BACK, float("nan"), float("-inf"), float("inf"), f"{counts}; {why}")
    d, low, high = _difference(candidate, serving, confidence, max_looks)
    return Verdict(
        ROLLED_BACK, d, low, high, f"{_numbers(candidate, serving, d, low, high)}; {why}"
    )


def _difference(
    candidate: RewardStats, serving: RewardStats, confidence: float, max_looks: int
) -> tuple[float, float, float]:
    """D̂ and its interval at z for (1 − confidence)/max_looks."""
    z = NormalDist().inv_cdf(1 - (1 - confidence) / max_looks)
    d = candidate.mean - serving.mean
    se = (candidate.variance / candidate.n + serving.variance / serving.n) ** 0.5
    return d, d - z * se, d + z * se


def _numbers(
    candidate: RewardStats, serving: RewardStats, d: float, low: float, high: float
) -> str:
    return (
        f"online candidate − serving = {d:+.3f} ({candidate.n} vs {serving.n} rewards), "
        f"interval [{low:+.3f}, {high:+.3f}]"
    )
