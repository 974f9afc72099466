"""Training outputs people read: metrics.json, TensorBoard summaries and a PNG of the curves."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from app.paths import join
from app.trainer.metrics import History

METRICS_FILE = "metrics.json"
PLOT_FILE = "training_curves.png"
TENSORBOARD_DIR = "tensorboard"  # <artifacts_dir>/tensorboard/<policy_version>: one run each


def write_metrics(artifacts_dir: str, history: History, **extra: Any) -> str:
    import tensorflow as tf

    path = join(artifacts_dir, METRICS_FILE)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(history.summary(**extra), indent=2))
    return path


def write_tensorboard(log_dir: str, history: History) -> None:
    """Every loop's metrics, written inside one tf.function (per-scalar eager calls took
    minutes for 200,000 loops)."""
    import tensorflow as tf

    steps = tf.constant([m.loop for m in history.loops], tf.int64)
    curves = {
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
                    for key, values in curves.items():
                        tf.summary.scalar(key, values[i], step=steps[i])

    write()
    writer.close()


def write_plot(artifacts_dir: str, history: History, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loops = np.arange(len(history.loops))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for axis, key, label in (
        (top, "regret", "regret"),
        (bottom, "average_return", "average return"),
    ):
        values = np.array([getattr(m, key) for m in history.loops])
        window = max(1, len(values) // 30)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        axis.plot(loops, values, alpha=0.3, label=f"{label} per loop")
        axis.plot(loops[window - 1 :], smooth, label=f"moving mean ({window} loops)")
        axis.set_ylabel(label)
        axis.legend(loc="best")
        axis.grid(alpha=0.3)
    bottom.set_xlabel("training loop")
    top.set_title(title)
    fig.tight_layout()
    path = join(artifacts_dir, PLOT_FILE)
    save_png(fig, path)
    return path


def save_png(fig: Any, path: str) -> None:
    """Writes a figure as a PNG through tf.io.gfile (so gs:// paths work), then closes it."""
    import matplotlib.pyplot as plt
    import tensorflow as tf

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(buffer.getvalue())
