"""Evaluator: the gate between Trainer and Deployer (app/evaluation/gate.py).

Reads the run's held-out examples from the warehouse (the run's claims), scores the candidate
and the policy being served (the deployment pointer's target) as they would be served, decides,
and records the decision with its numbers in the warehouse (`promotions`) and beside the run's
artifacts (`decision.json`). The Deployer publishes only a promoted candidate.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict

from app.agents import ACTOR_CRITIC
from app.config import Settings
from app.deployer import pointer
from app.evaluation import gate, ope
from app.loop.ingester import IngestResult
from app.paths import join
from app.policy_store import read_metadata
from app.predictor.asgi import exploration_of
from app.predictor.policy import load_policy
from app.warehouse.base import Warehouse
from app.warehouse.records import PromotionRecord

DECISION_FILE = "decision.json"


def examples(
    warehouse: Warehouse, run_id: str
) -> Iterator[tuple[list[float], int, float, float | None]]:
    """(observation, action, reward, propensity) of every example the run claimed, in key
    order (the order the hold-out counts in), read from the warehouse: whichever form the
    Ingester gave the Trainer (TFRecords or the warehouse's sums), the logged rows stay there."""
    for page in warehouse.iter_claimed(run_id):
        for e in page:
            chance = e.propensity
            yield e.observation, e.action, e.reward, chance if chance and chance > 0 else None


def evaluate(
    settings: Settings,
    warehouse: Warehouse,
    manifest: IngestResult,
    candidate_dir: str,
    policies_dir: str,
    output_dir: str,
) -> PromotionRecord:
    exploration = exploration_of(settings.serving)
    serving_version = pointer.current_version(policies_dir)
    logged = gate.logged_rows(examples(warehouse, manifest.run_id), settings.gate.holdout_every)
    metadata = read_metadata(candidate_dir)
    if metadata.per_arm:  # the actor-critic's slate policy too (it is served per-arm)
        decision = gate.decide(
            manifest.run_id,
            metadata.policy_version,
            serving_version or "",
            logged,
            None,
            settings.gate,
            slate=metadata.agent == ACTOR_CRITIC,
            per_arm=True,
        )
        return _record(warehouse, decision, output_dir)
    candidate = load_policy(candidate_dir, exploration=exploration)
    policies = None
    if logged is not None:  # estimated even when nothing serves yet or the gate is skipped
        serving = (
            load_policy(join(policies_dir, serving_version), exploration=exploration)
            if serving_version
            else None
        )
        policies = gate.Candidates(
            ope.in_chunks(candidate.distribution, logged.contexts),
            None if serving is None else ope.in_chunks(serving.distribution, logged.contexts),
        )
    decision = gate.decide(
        manifest.run_id,
        candidate.version,
        serving_version or "",
        logged,
        policies,
        settings.gate,
    )
    return _record(warehouse, decision, output_dir)


def _record(warehouse: Warehouse, decision: PromotionRecord, output_dir: str) -> PromotionRecord:
    import tensorflow as tf

    warehouse.record_promotion(decision)
    tf.io.gfile.makedirs(output_dir)
    with tf.io.gfile.GFile(join(output_dir, DECISION_FILE), "w") as f:
        f.write(json.dumps(asdict(decision), default=str, indent=2))
    return decision
