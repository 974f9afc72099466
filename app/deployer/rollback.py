"""`recloop rollback`: back to the policy that served before the current one, by hand.

The previous version is the one the current one replaced (the `serving_version` of the
decision that promoted it, from the warehouse's `promotions`). The deployment pointer moves
back (the local predictor follows it); on Vertex (always under a cloud profile, which is
refused, before anything moves, without the Deployer's settings), the current version is
undeployed if the previous one is still deployed beside it (a canary), else the previous
version is deployed again at 100%. With a canary open beside the current version, the
rollback ends the canary instead: its candidate loses (undeployed on Vertex, its traffic back
to the current version; nothing committed) and the current version keeps serving — rolling
the current version back would leave the unjudged candidate serving everything. A canary
decision that a cut-short tick left half done is completed first
(tests/test_canary.py::test_rollback_by_hand_completes_a_decision_a_cut_tick_left_half_done).
The rollback is recorded as a decision.

The training ledger is not rewound: the next re-training still warm-starts from the last
committed run (docs/safe-promotion.md). Proved by tests/test_canary.py.
"""

from __future__ import annotations

from datetime import UTC, datetime

from app import wiring
from app.config import CLOUD_PROFILES, Settings
from app.deployer import canary, pointer
from app.evaluation.gate import PROMOTED, ROLLED_BACK
from app.loop.steps import POLICIES
from app.paths import join
from app.warehouse.base import Warehouse
from app.warehouse.records import PromotionRecord

STAGE = "rollback"


class RollbackError(RuntimeError):
    """There is nothing to roll back to."""


def previous_version(warehouse: Warehouse, current: str) -> str:
    for decision in reversed(warehouse.promotions()):
        if decision.candidate_version == current and decision.decision == PROMOTED:
            if decision.serving_version:
                return decision.serving_version
            break
    raise RollbackError(f"no policy served before {current}: nothing to roll back to")


def roll_back(settings: Settings, warehouse: Warehouse, now: datetime | None = None) -> str:
    """Rolls back one version (or an open canary's candidate); returns the version that
    serves now."""
    vertex_too = on_vertex(settings)
    policies = join(settings.artifacts_dir, POLICIES)
    opened = canary.read(policies)
    if opened is not None and opened.decided is not None:
        canary.complete(settings, warehouse, policies, opened)  # a tick cut short decided it
        opened = None
    current = pointer.current_version(policies)
    if current is None:
        raise RollbackError(f"nothing is deployed under {policies}")
    if opened is not None and opened.version != current:
        if vertex_too:
            from app.deployer import vertex

            vertex.roll_back(opened.version, settings)
        canary.close(policies)
        ended = f"rolled back by hand: the canary of {opened.version} ends; {current} serves on"
        _record(warehouse, opened.version, current, ended, now)
        return current
    previous = previous_version(warehouse, current)
    if vertex_too:
        from app.deployer import vertex

        try:
            vertex.roll_back(current, settings)
        except vertex.NothingToRollBackTo:
            vertex.deploy(join(policies, previous), previous, settings)
    pointer.point(policies, previous)
    if opened is not None:  # the current version was the canary's own candidate
        canary.close(policies)
    _record(warehouse, current, previous, f"rolled back by hand from {current} to {previous}", now)
    return previous


def on_vertex(settings: Settings) -> bool:
    """Whether the rollback moves Vertex traffic: always under a cloud profile, which then
    needs the Deployer's settings (the endpoint above all), else it would move the pointer
    while the endpoint goes on serving the current version
    (tests/test_canary.py::test_rollback_by_hand_on_vertex_deploys_the_previous_version_again).
    `recloop rollback` asks first, before it opens the warehouse, so that the refusal names
    every missing setting rather than the warehouse's project or credentials
    (tests/test_cli.py::test_rollback_on_vertex_without_the_deployers_settings_says_which)."""
    if settings.profile not in CLOUD_PROFILES:
        return bool(settings.loop.vertex_endpoint)
    try:
        wiring.require(settings, wiring.ROLLBACK)
    except wiring.WiringError as err:
        raise wiring.WiringError(
            f"{err}. A rollback on {settings.profile} moves the Vertex endpoint's traffic, so it "
            "runs with the Trigger's environment: export its RECLOOP__* variables first "
            "(docs/operations.md, Roll back); nothing was changed"
        ) from None
    return True


def _record(
    warehouse: Warehouse, rolled_back: str, serving: str, reason: str, now: datetime | None
) -> None:
    now = now or datetime.now(UTC)
    warehouse.record_promotion(
        PromotionRecord(
            run_id=f"rollback-{now:%Y%m%dT%H%M%S%fZ}",
            stage=STAGE,
            time=now,
            candidate_version=rolled_back,
            serving_version=serving,
            decision=ROLLED_BACK,
            reason=reason,
            estimator="",
            ips=None,
            snips=None,
            dr=None,
            ci_low=None,
            ci_high=None,
            serving_value=None,
            difference=None,
            difference_low=None,
            margin=0.0,
            confidence=0.0,
            rows=0,
        )
    )
