"""Off-policy Trainer: logged examples → a new policy, published as every trainer publishes
(app/publish.py: metrics.json inside the policy folder, written with it).

The examples come as the warehouse's per-arm sums (the Ingester's STATISTICS form: added to
the warm-start state in one step) or as TFRecord shards (read batch by batch).
Linear agents warm-start from the policy being served and add the new examples: LinUCB's
statistics are sums, so this equals training on all data seen so far. The warm start's
statistics are read from its checkpoint, and the new policy is published like it (its saved
graph reused, only the variables written: app/policy_store.py::save_tf_policy). One pass is exact;
`num_epochs` repeats apply to agents trained by gradient steps, and for linear agents would
only count each example several times. A per-arm policy (one model over [u, u ⊙ v]) is
continued only from its per-arm warm start and the warehouse's sums, and keeps that
policy's catalogue (tests/test_per_arm_offpolicy.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from app import publish
from app.agents import AgentSpec, copy_state_to_agent, create_agent, linear_bandit
from app.loop.ingester import read_manifest, read_statistics
from app.policy_store import (
    Catalogue,
    read_catalogue,
    read_linear_state,
    read_metadata,
)
from app.warehouse import linear_statistics


class OffPolicyError(ValueError):
    """The examples or the warm-start policy cannot be trained on."""


@dataclass(frozen=True)
class OffPolicyResult:
    policy_dir: str
    policy_version: str
    examples: int


def train_offline(
    examples_dir: str,
    policy_dir: str,
    spec: AgentSpec,
    batch_size: int,
    warm_start: str | None = None,
    titles: list[str] | None = None,
    policy_version: str | None = None,
    holdout_every: int = 0,
    corrupt_rewards: bool = False,
) -> OffPolicyResult:
    """`holdout_every`: every n-th example is left to the Evaluator (app/evaluation/gate.py)
    and not trained on. `corrupt_rewards` is a demo switch (gate.corrupt_rewards): it trains
    from scratch on 6 − reward, a candidate that prefers what users dislike. For the
    warehouse's sums (STATISTICS form) the Ingester applied both already
    (app/warehouse/linear_statistics.py); here corruption only drops the warm start."""
    import tensorflow as tf

    if not spec.is_linear:
        raise OffPolicyError("off-policy training supports the linear agents (linucb, lints)")
    manifest = read_manifest(examples_dir)
    catalogue: Catalogue | None = None
    if spec.per_arm:
        if not (warm_start and manifest.statistics):
            raise OffPolicyError(
                "a per-arm policy is trained off-policy only from the warehouse's sums "
                "(STATISTICS form) and a per-arm warm-start policy (its catalogue)"
            )
        catalogue = read_catalogue(warm_start)  # kept even when corruption drops the state
    model = linear_bandit(spec)
    previous = 0
    if corrupt_rewards:
        warm_start = None
    if warm_start:
        meta = read_metadata(warm_start)
        if (meta.per_arm, meta.num_actions, meta.rank_k) != (
            spec.per_arm,
            spec.num_actions,
            spec.context_dim,
        ):
            raise OffPolicyError(
                f"warm-start policy {warm_start} (per_arm={meta.per_arm}) has "
                f"{meta.num_actions} actions and rank {meta.rank_k}; this run "
                f"(per_arm={spec.per_arm}) has {spec.num_actions} and {spec.context_dim}"
            )
        models = 1 if spec.per_arm else spec.num_actions
        model.set_state(read_linear_state(warm_start, models))
        previous = meta.trained_interactions
        titles = titles or meta.titles

    started = time.perf_counter()
    average_return: list[float] = []
    if manifest.statistics:
        new = read_statistics(manifest.statistics)
        if new.data_vector.shape != model.state.data_vector.shape:
            raise OffPolicyError(
                f"statistics {manifest.statistics} have shape {new.data_vector.shape}; "
                f"this run has {model.state.data_vector.shape}"
            )
        model.set_state(linear_statistics.add(model.state, new))
    elif manifest.shards:
        features = {
            "observation": tf.io.FixedLenFeature([spec.context_dim], tf.float32),
            "action": tf.io.FixedLenFeature([], tf.int64),
            "reward": tf.io.FixedLenFeature([], tf.float32),
        }
        dataset = tf.data.TFRecordDataset(manifest.shards)
        if holdout_every > 0:
            dataset = (
                dataset.enumerate()
                .filter(lambda i, _: i % holdout_every != holdout_every - 1)
                .map(lambda _, record: record)
            )
        dataset = dataset.batch(batch_size).map(lambda b: tf.io.parse_example(b, features))
        for batch in dataset.as_numpy_iterator():
            actions = batch["action"]
            if actions.min() < 0 or actions.max() >= spec.num_actions:
                raise OffPolicyError(f"examples hold actions outside 0..{spec.num_actions - 1}")
            rewards = (
                linear_statistics.CORRUPTED_REWARD_FROM - batch["reward"]
                if corrupt_rewards
                else batch["reward"]
            )
            model.update(batch["observation"].astype(np.float64), actions, rewards)
            average_return.append(float(batch["reward"].mean()))
    seconds = time.perf_counter() - started

    agent = create_agent(spec)
    copy_state_to_agent(model.state, agent)
    version = policy_version or publish.new_version()
    publish.publish(
        agent.policy,
        policy_dir,
        publish.bandit_metadata(spec, version, titles or [], previous + manifest.examples),
        {
            "examples": manifest.examples,
            "average_return": average_return,
            "interactions_per_second": manifest.examples / seconds if seconds > 0 else 0.0,
            "warm_start": warm_start,
        },
        catalogue=catalogue,
        like=warm_start,  # its saved graph: only the variables change
    )
    return OffPolicyResult(policy_dir, version, manifest.examples)
