"""Ingester: the run's claimed training examples → TFRecord shards in the artifact store.

The run claims its examples in the warehouse's ledger (app/warehouse/ledger.py) under its run
id, then reads them page by page and writes each page as it arrives, so memory stays bounded
whatever the table holds. A restarted run (same run id) reads exactly the examples it claimed
before; a run that committed already writes no shards and names its published version
(tests/test_ledger.py::test_publish_fault_then_restart).
Works on local paths and gs:// alike (tf.io.gfile).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from app.policy_store import join
from app.warehouse.base import Warehouse

SHARD_ROWS = 5000
MANIFEST = "manifest.json"


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


def ingest(
    warehouse: Warehouse,
    output_dir: str,
    run_id: str,
    max_rows: int,
    rank_k: int,
    num_actions: int,
) -> IngestResult:
    import tensorflow as tf

    tf.io.gfile.makedirs(output_dir)
    if done := warehouse.find_run(run_id):
        result = IngestResult(
            run_id, done.examples, rank_k, num_actions, [], "", "", done.policy_version
        )
        return _write_manifest(output_dir, result)
    parent = warehouse.latest_run()
    if parent and (parent.rank_k, parent.num_actions) != (rank_k, num_actions):
        raise IngestError(
            f"run {run_id} has rank {rank_k} and {num_actions} actions, but the policy of run "
            f"{parent.run_id} it would continue has rank {parent.rank_k} and "
            f"{parent.num_actions} actions: changing them needs a new start-up run"
        )
    warehouse.claim(run_id, max_rows, rank_k, num_actions)
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
    result = IngestResult(
        run_id,
        total,
        rank_k,
        num_actions,
        shards,
        parent.run_id if parent else "",
        parent.policy_uri if parent else "",
        "",
    )
    return _write_manifest(output_dir, result)


def _write_manifest(output_dir: str, result: IngestResult) -> IngestResult:
    import tensorflow as tf

    with tf.io.gfile.GFile(join(output_dir, MANIFEST), "w") as f:
        f.write(json.dumps(asdict(result), indent=2))
    return result


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
