"""The canary: a promoted candidate serves a share of traffic beside the serving policy until
its online reward decides, by itself, to promote it or roll it back.

State: `<policies>/CANARY` (JSON: the candidate's version, share, start time, the run to commit
on promotion, the last look taken, and whether the gate was skipped). Locally the predictor
serves both versions, split by request (app/predictor/asgi.py); on Vertex the endpoint's
traffic split does it (app/deployer/vertex.py). The Trigger's tick calls `step` (locally and in
Cloud Functions, app/functions/trigger.py; a local `pipelines.run retraining` too), which
compares the two versions' reward since the start (warehouse, by `policy_version`) with the
sequential test of app/evaluation/canary.py. Promotion commits the run in the ledger, moves
the pointer and undeploys the loser; rollback undeploys the candidate and commits nothing (its
examples stay for the next run). While a canary is open no re-training runs. `step` imports no
TensorFlow (app/objects.py), so the Trigger function runs it. Proved by tests/test_canary.py.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from app import objects
from app.config import Settings
from app.deployer import pointer
from app.evaluation import canary as test
from app.evaluation.gate import CANARY as STAGE
from app.evaluation.gate import PROMOTED
from app.paths import join
from app.policy_store import CANARY_FILE
from app.warehouse.base import Warehouse
from app.warehouse.records import PromotionRecord, TrainingRunRecord

FILE = CANARY_FILE


@dataclass(frozen=True)
class Canary:
    version: str
    share: int  # percent of requests
    started: str  # ISO time
    run: dict  # the TrainingRunRecord to commit on promotion
    last_look: int = 0
    gate_skipped: bool = False  # demo switch gate.skip: only the canary judges it


def read(policies: str) -> Canary | None:
    text = objects.read_text(join(policies, FILE))
    return None if text is None else Canary(**json.loads(text))


def _write(policies: str, state: Canary) -> None:
    objects.write_text(join(policies, FILE), json.dumps(asdict(state)))


def close(policies: str) -> None:
    """No canary is open any more (the predictor drops the candidate on its next reload)."""
    objects.remove(join(policies, FILE))


def start(
    policies: str, run: TrainingRunRecord, share: int, settings: Settings, now: datetime
) -> None:
    """The staged candidate starts serving `share` percent of requests."""
    if not 0 < share < 100:
        raise ValueError(f"gate.canary_share must be 1..99 percent, got {share}")
    if settings.loop.vertex_endpoint:
        from app.deployer import vertex

        vertex.deploy(run.policy_uri, run.policy_version, settings, share=share)
    state = Canary(
        run.policy_version, share, now.isoformat(), asdict(run), gate_skipped=settings.gate.skip
    )
    _write(policies, state)


def step(
    settings: Settings, warehouse: Warehouse, policies: str, now: datetime | None = None
) -> PromotionRecord | None:
    """Takes the next look if it is due; the decision when one is taken, else None."""
    state = read(policies)
    serving = pointer.current_version(policies)
    if state is None or serving is None:
        return None
    g = settings.gate
    stats = {
        s.version: s for s in warehouse.rewards_by_version(datetime.fromisoformat(state.started))
    }
    empty = test.RewardStats("", 0, 0.0, 0.0)
    candidate, current = stats.get(state.version, empty), stats.get(serving, empty)
    look = min(candidate.n // g.canary_look_every, g.canary_max_looks)
    if look <= state.last_look:
        return None
    verdict = test.judge(candidate, current, g.margin, g.confidence, look, g.canary_max_looks)
    if verdict.decision == test.CONTINUE:
        _write(policies, Canary(**{**asdict(state), "last_look": look}))
        return None
    run = TrainingRunRecord(**{**state.run, "time": None})
    if settings.loop.vertex_endpoint:
        from app.deployer import vertex

        if verdict.decision == PROMOTED:
            vertex.promote(state.version, settings)
        else:
            vertex.roll_back(state.version, settings)
    if verdict.decision == PROMOTED:
        warehouse.commit(run)
        pointer.point(policies, state.version)
    close(policies)
    skipped = "; the gate was skipped (demo switch gate.skip): only the canary judged it"
    record = PromotionRecord(
        run_id=run.run_id,
        stage=STAGE,
        time=now or datetime.now(UTC),
        candidate_version=state.version,
        serving_version=serving,
        decision=verdict.decision,
        reason=verdict.reason + (skipped if state.gate_skipped else ""),
        estimator="online mean",
        ips=None,
        snips=None,
        dr=None,
        ci_low=candidate.interval(g.confidence)[0],
        ci_high=candidate.interval(g.confidence)[1],
        serving_value=current.mean,
        difference=verdict.difference,
        difference_low=verdict.low,
        margin=g.margin,
        confidence=g.confidence,
        rows=candidate.n + current.n,
    )
    warehouse.record_promotion(record)
    return record
