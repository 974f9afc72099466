"""The promotion gate: a candidate serves only if, on logged data, it is not worse than the
serving policy by more than the margin, at the configured confidence.

Data: the run's claimed examples, each with the propensity its serving policy logged: all of
them (`gate.holdout_every = 0`, the default: the candidate was also trained on them, which
favours it), or every n-th, which the Trainer then does not train on (an honest hold-out, at
the price of those examples: the ledger counts them as consumed). Both policies are
judged as they would be served (their action distributions under `serving.exploration`), on
the same rows, and the decision is taken on the paired difference:

    promote  ⇔  lower one-sided bound of V̂(candidate) − V̂(serving) ≥ −margin

With nothing serving yet (the start-up run) the candidate is promoted, with its own estimates
recorded when the logs have propensities; with logs of greedy serving only (every propensity
1: nothing but the serving policy is identifiable) it is promoted unevaluated, and the
decision says so. The demo switch gate.skip records the full evaluation but decides nothing
on it (stage `skipped`). Proved by
tests/test_gate.py; the estimators by tests/test_ope.py, the lower bound's rate by
tests/test_ope.py::test_the_gate_lower_bound_holds_the_true_difference_at_its_rate.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np

from app.config import GateConfig
from app.evaluation import ope, reward_model
from app.warehouse.records import PromotionRecord

# Stages of a decision: the gate's, the canary's, and a candidate let through unjudged by the
# demo switch gate.skip (not the gate's decision: nothing was estimated).
GATE, CANARY, SKIPPED = "gate", "canary", "skipped"
PROMOTED, BLOCKED, ROLLED_BACK = "promoted", "blocked", "rolled_back"


@dataclass(frozen=True)
class Candidates:
    """The two policies' action distributions on the logged contexts (rows × arms)."""

    candidate: np.ndarray
    serving: np.ndarray | None  # None: nothing serves yet (only the candidate is estimated)


def held_out(index: int, holdout_every: int) -> bool:
    """Whether the index-th claimed example is evaluated on: every example when
    `holdout_every` is 0 (the candidate was trained on them too), else every n-th (which the
    Trainer then skips)."""
    return holdout_every == 0 or index % holdout_every == holdout_every - 1


def decide(
    run_id: str,
    candidate_version: str,
    serving_version: str,
    logged: ope.Logged | None,
    policies: Candidates | None,
    gate: GateConfig,
    now: datetime | None = None,
    slate: bool = False,
    per_arm: bool = False,
) -> PromotionRecord:
    """The decision and every number it was taken on. `serving_version` "" means nothing
    serves yet; `policies` are needed when there is something to compare. A `slate`
    candidate (the list-wise actor-critic) is always blocked, saying why
    (tests/test_slate_pipeline.py); a `per_arm` one is blocked unless the gate is skipped
    (tests/test_per_arm_offpolicy.py)."""
    now = now or datetime.now(UTC)

    def record(decision: str, reason: str, **numbers: float | int | None) -> PromotionRecord:
        values: dict[str, float | int | None] = {
            "ips": None,
            "snips": None,
            "dr": None,
            "ci_low": None,
            "ci_high": None,
            "serving_value": None,
            "difference": None,
            "difference_low": None,
            "rows": 0,
            **numbers,
        }
        return PromotionRecord(
            run_id,
            GATE,
            now,
            candidate_version,
            serving_version,
            decision,
            reason,
            gate.estimator,
            margin=gate.margin,
            confidence=gate.confidence,
            **values,  # type: ignore[arg-type]
        )

    if slate:
        return record(
            BLOCKED,
            "a slate policy has no offline gate: the logs hold single-movie bandit "
            "interactions, which cannot score a list; the serving policy stays",
        )
    evaluable = logged is not None and not np.all(logged.propensities == 1.0)
    numbers, summary = _estimates(logged, policies, gate) if evaluable else ({}, "")
    if not serving_version:
        estimated = f" (estimated: {summary})" if summary else ""
        return record(
            PROMOTED, f"nothing serves yet: the first policy is promoted{estimated}", **numbers
        )
    if gate.skip:
        then = (
            f"it goes to a {gate.canary_share}% canary, whose online decision is recorded next"
            if gate.canary_share
            else "it serves all traffic unjudged"
        )
        estimated = f"evaluated ({summary}) but not decided on" if summary else "nothing estimated"
        reason = f"gate skipped (demo switch gate.skip): {estimated}, no decision; {then}"
        skipped = record(PROMOTED, reason, **numbers)
        return replace(skipped, stage=SKIPPED, estimator=gate.estimator if numbers else "")
    if per_arm:
        return record(
            BLOCKED,
            "a per-arm policy has no offline gate yet (the held-out rows' candidate sets are "
            "not estimated over); the serving policy stays; gate.skip serves it unjudged",
        )
    if logged is None or policies is None:
        return record(BLOCKED, "no logged example with a propensity to evaluate on")
    if not evaluable:
        # Greedy serving (the local default): no other policy is identifiable from its logs.
        return record(
            PROMOTED,
            "not evaluated: every logged propensity is 1 (greedy serving); the gate needs "
            "exploration (serving.exploration)",
            rows=len(logged.actions),
        )
    low = numbers["difference_low"]
    if isinstance(low, float) and low >= -gate.margin:
        return record(PROMOTED, f"{summary} ≥ −{gate.margin:g} (margin)", **numbers)
    return record(BLOCKED, f"{summary} < −{gate.margin:g} (margin)", **numbers)


def _estimates(
    logged: ope.Logged | None, policies: Candidates | None, gate: GateConfig
) -> tuple[dict[str, float | int | None], str]:
    """The candidate's IPS, SNIPS and DR with the chosen estimator's interval and, with a
    serving policy, its value and the paired difference's lower bound; and their summary."""
    if logged is None or policies is None:
        return {}, ""
    arms = policies.candidate.shape[1]
    predicted = reward_model.cross_fitted(logged.contexts, logged.actions, logged.rewards, arms)
    estimates = ope.estimate_all(logged, policies.candidate, predicted, gate.confidence)
    chosen = estimates[gate.estimator]
    rows = len(logged.actions)
    numbers: dict[str, float | int | None] = {
        "ips": estimates[ope.IPS].value,
        "snips": estimates[ope.SNIPS].value,
        "dr": estimates[ope.DR].value,
        "ci_low": chosen.low,
        "ci_high": chosen.high,
        "rows": rows,
    }
    if policies.serving is None:
        summary = f"{gate.estimator.upper()} {chosen.value:.3f} on {rows} logged interactions"
        return numbers, summary
    numbers["serving_value"] = ope.estimate(
        gate.estimator, logged, policies.serving, predicted, gate.confidence
    ).value
    difference, low = ope.difference_lower_bound(
        gate.estimator, logged, policies.candidate, policies.serving, predicted, gate.confidence
    )
    numbers["difference"], numbers["difference_low"] = difference, low
    summary = (
        f"{gate.estimator.upper()} candidate − serving = {difference:+.3f} on "
        f"{rows} logged interactions; {gate.confidence:.0%} lower bound {low:+.3f}"
    )
    return numbers, summary


def logged_rows(
    examples: Iterator[tuple[list[float], int, float, float | None]], holdout_every: int
) -> ope.Logged | None:
    """The held-out examples (observation, action, reward, propensity) that have a logged
    propensity, as arrays; None if there are none."""
    kept = [e for i, e in enumerate(examples) if held_out(i, holdout_every) and e[3] is not None]
    if not kept:
        return None
    return ope.Logged(
        np.array([e[0] for e in kept], dtype=np.float64),
        np.array([e[1] for e in kept], dtype=np.int64),
        np.array([e[2] for e in kept], dtype=np.float64),
        np.array([e[3] for e in kept], dtype=np.float64),
    )
