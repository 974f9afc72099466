"""Ingester: new training examples → TFRecord shards in the artifact store.

Reads page by page from the warehouse and writes each page as it arrives, so memory stays
bounded whatever the table holds. Works on local paths and gs:// alike (tf.io.gfile).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime

from app.policy_store import join
from app.warehouse.base import Warehouse

SHARD_ROWS = 5000
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class IngestResult:
    examples: int
    watermark: str  # ISO time of the newest example's feedback; "" if none
    since: str
    shards: list[str]


def ingest(
    warehouse: Warehouse, output_dir: str, max_rows: int, since: datetime | None = None
) -> IngestResult:
    import tensorflow as tf

    since = since or warehouse.latest_watermark()
    tf.io.gfile.makedirs(output_dir)
    shards: list[str] = []
    writer = None
    in_shard = total = 0
    newest: datetime | None = None
    try:
        for page in warehouse.iter_examples(since, max_rows):
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
                newest = example.feedback_time
    finally:
        if writer is not None:
            writer.close()
    result = IngestResult(total, newest.isoformat() if newest else "", since.isoformat(), shards)
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
