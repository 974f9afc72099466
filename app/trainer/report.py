"""The on-policy trainer's reports besides metrics.json: TensorBoard summaries and the curves
it plots (written by app/publish.py)."""

from __future__ import annotations

from app import quiet
from app.publish import Panel, Plot
from app.trainer.metrics import History

TENSORBOARD_DIR = "tensorboard"  # <artifacts_dir>/tensorboard/<policy_version>: one run each


def curves(history: History, title: str) -> Plot:
    """Regret and average return per training loop, each with its moving mean."""
    return Plot(
        title,
        [
            Panel(label, [getattr(m, key) for m in history.loops], "training loop")
            for key, label in (("regret", "regret"), ("average_return", "average return"))
        ],
    )


def write_tensorboard(log_dir: str, history: History) -> None:
    """Every loop's metrics, written inside one tf.function (per-scalar eager calls took
    minutes for 200,000 loops)."""
    import tensorflow as tf

    steps = tf.constant([m.loop for m in history.loops], tf.int64)
    series = {
        key: tf.constant([getattr(m, key) for m in history.loops], tf.float32)
        for key in ("regret", "suboptimal_arms", "average_return")
    }
    writer = tf.summary.create_file_writer(log_dir)

    @tf.function
    def write() -> None:
        with writer.as_default():
            for i in tf.range(tf.size(steps)):
                # Outside the loop's name scope: the tags are "regret", not "while/regret".
                with tf.compat.v1.name_scope(None):
                    for key, values in series.items():
                        tf.summary.scalar(key, values[i], step=steps[i])

    with quiet.retracing_by_design():
        write()
    writer.close()
