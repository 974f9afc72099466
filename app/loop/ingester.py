"""Ingester: the run's claimed training examples → what the Trainer learns from.

The run claims its examples in the warehouse's ledger (app/warehouse/ledger.py) under its run
id. For linear agents (`form=STATISTICS`, the re-training pipeline's path) the warehouse sums
them into per-arm LinUCB/LinTS statistics with one SQL aggregation over the rows the claim
read (app/warehouse/linear_statistics.py) and only those sums are stored; no example leaves
the warehouse. A warm start that is a per-arm linear policy (as its metadata says) makes the
run per-arm: its catalogue fixes the shapes (rank = the features' width, actions = catalogue
indices) and the sums are its one model's over [u, u ⊙ v] (tests/test_per_arm_offpolicy.py).
For agents that need gradient steps (`form=RECORDS`) it reads them page by page and writes
TFRecord shards (the Vertex sample's format) as pages arrive, so memory stays
bounded whatever the table holds. A restarted run (same run id) reads exactly the examples
it claimed before; a run that committed already writes no shards and names its published
version (tests/test_ledger.py::test_publish_fault_then_restart).
Works on local paths and gs:// alike (tf.io.gfile).
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass

import numpy as np

from app.agents import LINEAR_AGENTS
from app.linear import LinearState
from app.paths import join
from app.policy_store import (
    CATALOGUE_FILE,
    METADATA_FILE,
    PolicyMetadata,
    PolicyStoreError,
    read_catalogue,
    read_metadata,
)
from app.schemas import GLOBAL
from app.warehouse.base import Warehouse
from app.warehouse.records import TrainingRunRecord

SHARD_ROWS = 5000
MANIFEST = "manifest.json"
STATISTICS_FILE = "statistics.npz"
RECORDS = "records"  # TFRecord shards of the examples
STATISTICS = "statistics"  # the linear agents' sums, computed by the warehouse


class IngestError(ValueError):
    """The run cannot train on this warehouse (e.g. its shapes differ from the served policy)."""


@dataclass(frozen=True)
class IngestResult:
    run_id: str
    examples: int
    rank_k: int
    num_actions: int
    shards: list[str]
    parent_run_id: str  # the committed run to warm-start from; "" for the first run
    warm_start: str  # that run's policy; ""
    committed_version: str  # set when this run had committed already (a restart)
    statistics: str = ""  # form STATISTICS: the file of the run's sums


def ingest(
    warehouse: Warehouse,
    output_dir: str,
    run_id: str,
    max_rows: int,
    rank_k: int,
    num_actions: int,
    form: str = RECORDS,
    holdout_every: int = 0,
    corrupt_rewards: bool = False,
) -> IngestResult:
    """`holdout_every` and `corrupt_rewards` (gate settings) shape the STATISTICS form's sums
    as the Trainer would shape TFRecord examples (app/loop/offpolicy.py)."""
    import tensorflow as tf

    if form not in (RECORDS, STATISTICS):
        raise IngestError(f"form must be {RECORDS} or {STATISTICS}, got {form!r}")
    tf.io.gfile.makedirs(output_dir)
    if done := warehouse.find_run(run_id):
        result = IngestResult(
            run_id, done.examples, rank_k, num_actions, [], "", "", done.policy_version
        )
        return _write_manifest(output_dir, result)
    parent = warehouse.latest_run()
    arm_features = _per_arm_features(parent, form)
    if arm_features is not None:
        num_actions, rank_k = arm_features.shape
    if parent and (parent.rank_k, parent.num_actions) != (rank_k, num_actions):
        raise IngestError(
            f"run {run_id} has rank {rank_k} and {num_actions} actions, but the policy of run "
            f"{parent.run_id} it would continue has rank {parent.rank_k} and "
            f"{parent.num_actions} actions: changing them needs a new start-up run"
        )
    shards: list[str] = []
    statistics = ""
    if form == STATISTICS:  # claimed and summed in one pass over the new rows
        examples, state = warehouse.claim_statistics(
            run_id, max_rows, rank_k, num_actions, holdout_every, corrupt_rewards, arm_features
        )
        statistics = _write_statistics(output_dir, state)
    else:  # a per-arm run is STATISTICS (_per_arm_features): these rows are global
        warehouse.claim(run_id, max_rows, rank_k, num_actions, policy_kind=GLOBAL)
        examples, shards = _write_shards(warehouse, run_id, output_dir)
    result = IngestResult(
        run_id,
        examples,
        rank_k,
        num_actions,
        shards,
        parent.run_id if parent else "",
        parent.policy_uri if parent else "",
        "",
        statistics,
    )
    return _write_manifest(output_dir, result)


def continues_per_arm(warm_start: PolicyMetadata) -> bool:
    """A run continues a per-arm linear policy (the slate actor is per-arm too, but not
    linear: its runs never learn from the logged sums)."""
    return warm_start.per_arm and warm_start.agent in LINEAR_AGENTS


def _per_arm_features(parent: TrainingRunRecord | None, form: str) -> np.ndarray | None:
    """The catalogue features (movies × rank) of a per-arm warm-start policy, None for a
    global one. A parent without recloop metadata is left to the Trainer, which reads it."""
    import tensorflow as tf

    if parent is None or not tf.io.gfile.exists(join(parent.policy_uri, METADATA_FILE)):
        return None
    if not continues_per_arm(read_metadata(parent.policy_uri)):
        return None
    if form != STATISTICS:
        raise IngestError(
            f"the warm-start policy {parent.policy_uri} is per-arm: only a linear agent "
            f"(form {STATISTICS}) continues it, not form {form}"
        )
    try:
        return read_catalogue(parent.policy_uri).features
    except PolicyStoreError:
        raise IngestError(
            f"the per-arm warm-start policy {parent.policy_uri} has no {CATALOGUE_FILE}: "
            "its examples' movies cannot be looked up"
        ) from None


def _write_shards(warehouse: Warehouse, run_id: str, output_dir: str) -> tuple[int, list[str]]:
    """The run's claimed examples as TFRecord shards written page by page: (count, shards)."""
    import tensorflow as tf

    shards: list[str] = []
    writer = None
    in_shard = total = 0
    try:
        for page in warehouse.iter_claimed(run_id):
            for example in page:
                if writer is None or in_shard >= SHARD_ROWS:
                    if writer is not None:
                        writer.close()
                    shards.append(join(output_dir, f"examples-{len(shards):05d}.tfrecord"))
                    writer = tf.io.TFRecordWriter(shards[-1])
                    in_shard = 0
                writer.write(
                    _encode(example.observation, example.action, example.reward, example.propensity)
                )
                in_shard += 1
                total += 1
    finally:
        if writer is not None:
            writer.close()
    return total, shards


def _write_manifest(output_dir: str, result: IngestResult) -> IngestResult:
    import tensorflow as tf

    with tf.io.gfile.GFile(join(output_dir, MANIFEST), "w") as f:
        f.write(json.dumps(asdict(result), indent=2))
    return result


def _write_statistics(output_dir: str, state: LinearState) -> str:
    import tensorflow as tf

    path = join(output_dir, STATISTICS_FILE)
    buffer = io.BytesIO()
    np.savez(buffer, **asdict(state))
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(buffer.getvalue())
    return path


def read_statistics(path: str) -> LinearState:
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "rb") as f:
        arrays = np.load(io.BytesIO(f.read()))
        return LinearState(**{name: arrays[name] for name in arrays.files})


def _encode(
    observation: list[float], action: int, reward: float, propensity: float | None
) -> bytes:
    import tensorflow as tf

    feature = tf.train.Feature
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                "observation": feature(float_list=tf.train.FloatList(value=observation)),
                "action": feature(int64_list=tf.train.Int64List(value=[action])),
                "reward": feature(float_list=tf.train.FloatList(value=[reward])),
                "propensity": feature(
                    float_list=tf.train.FloatList(value=[] if propensity is None else [propensity])
                ),
            }
        )
    ).SerializeToString()


def read_manifest(output_dir: str) -> IngestResult:
    import tensorflow as tf

    with tf.io.gfile.GFile(join(output_dir, MANIFEST)) as f:
        return IngestResult(**json.load(f))
