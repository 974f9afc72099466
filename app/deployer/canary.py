"""The canary: a promoted candidate serves a share of traffic beside the serving policy until
its online reward decides, by itself, to promote it or roll it back.

State: `<policies>/CANARY` (JSON: the candidate's version, share, start time, the run to
commit on promotion, the last look taken, whether the gate was skipped, and the decision once
taken). Locally the predictor serves both versions, split by request (app/predictor/asgi.py);
on Vertex the endpoint's traffic split does it (app/deployer/vertex.py). The Trigger's tick
calls `step` (locally and in Cloud Functions, app/functions/trigger.py; a local
`pipelines.run retraining` too), which compares the two versions' reward since the start
(warehouse, by `policy_version`) with the sequential test of app/evaluation/canary.py; a
canary undecided after `gate.canary_max_hours` is rolled back. Promotion commits the run in
the ledger, moves the pointer and undeploys the loser; rollback undeploys the candidate and
commits nothing (its examples stay for the next run). The decision is stored in the state
before its first effect and every effect is idempotent, so a tick cut short anywhere is
completed by the next one as decided. While a canary is open no re-training runs. `step`
imports no TensorFlow (app/objects.py), so the Trigger function runs it. Proved by
tests/test_canary.py.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta

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
    # The decision (a PromotionRecord, as JSON), written here before any of its effects: a
    # tick that finds it completes it instead of judging again.
    decided: dict | None = None


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
    """Takes the next look if it is due, or closes the canary when its time is up; the
    decision when one is taken (or completed), else None. A decision already stored in the
    state is completed, never judged again: tests/test_canary.py::
    test_a_tick_cut_short_at_any_effect_ends_as_an_uncut_one."""
    state = read(policies)
    serving = pointer.current_version(policies)
    if state is None or serving is None:
        return None
    if state.decided is None:
        record = _judge(settings, warehouse, policies, state, serving, now or datetime.now(UTC))
        if record is None:
            return None
        state = replace(state, decided=_as_json(record))
        _write(policies, state)  # before any effect: a cut tick is completed as decided
    return complete(settings, warehouse, policies, state)


def complete(
    settings: Settings, warehouse: Warehouse, policies: str, state: Canary
) -> PromotionRecord:
    """The stored decision's effects, each a no-op when already done: the Vertex traffic
    move (app/deployer/vertex.py), the ledger commit (idempotent by run), the pointer (a
    whole-object replace), the record (kept once per run and stage), then the state closes."""
    assert state.decided is not None
    record = PromotionRecord(
        **{**state.decided, "time": datetime.fromisoformat(state.decided["time"])}
    )
    if settings.loop.vertex_endpoint:
        from app.deployer import vertex

        if record.decision == PROMOTED:
            vertex.promote(state.version, settings)
        else:
            vertex.roll_back(state.version, settings)
    if record.decision == PROMOTED:
        warehouse.commit(TrainingRunRecord(**{**state.run, "time": None}))
        pointer.point(policies, state.version)
    warehouse.record_promotion(record)
    close(policies)
    return record


def _judge(
    settings: Settings,
    warehouse: Warehouse,
    policies: str,
    state: Canary,
    serving: str,
    now: datetime,
) -> PromotionRecord | None:
    """The decision if the look now due (or the time limit) takes one, else None (the look
    taken is remembered)."""
    g = settings.gate
    if not g.canary_max_hours > 0:
        raise ValueError(
            f"gate.canary_max_hours must be more than 0 hours, got {g.canary_max_hours}"
        )
    started = datetime.fromisoformat(state.started)
    stats = {s.version: s for s in warehouse.rewards_by_version(started)}
    empty = test.RewardStats("", 0, 0.0, 0.0)
    candidate, current = stats.get(state.version, empty), stats.get(serving, empty)
    look = min(candidate.n // g.canary_look_every, g.canary_max_looks)
    verdict = None
    if look > state.last_look:
        verdict = test.judge(candidate, current, g.margin, g.confidence, look, g.canary_max_looks)
    if verdict is None or verdict.decision == test.CONTINUE:
        if now - started >= timedelta(hours=g.canary_max_hours):
            verdict = test.out_of_time(
                candidate, current, g.confidence, g.canary_max_looks, g.canary_max_hours
            )
        elif verdict is not None:
            _write(policies, replace(state, last_look=look))
            return None
        else:
            return None
    skipped = "; the gate was skipped (demo switch gate.skip): only the canary judged it"
    low, high = candidate.interval(g.confidence)
    return PromotionRecord(
        run_id=state.run["run_id"],
        stage=STAGE,
        time=now,
        candidate_version=state.version,
        serving_version=serving,
        decision=verdict.decision,
        reason=verdict.reason + (skipped if state.gate_skipped else ""),
        estimator="online mean",
        ips=None,
        snips=None,
        dr=None,
        ci_low=_finite(low),
        ci_high=_finite(high),
        serving_value=current.mean if current.n else None,
        difference=_finite(verdict.difference),
        difference_low=_finite(verdict.low),
        margin=g.margin,
        confidence=g.confidence,
        rows=candidate.n + current.n,
    )


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _as_json(record: PromotionRecord) -> dict:
    return {**asdict(record), "time": record.time.isoformat()}
