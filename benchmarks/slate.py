"""Latency of one slate decision over the full catalogue, in process (issue 12: ≤ 2 ms).

Usage: python -m benchmarks.slate [POLICY_DIR]   (default .recloop/slate/actor_critic/policy,
written by `make slate`). Loads the PolicySaver SavedModel of the slate policy and times
`action` for one state (the last 5 liked movies) at a time: median and 99th percentile.
"""

from __future__ import annotations

import sys
import time

import app  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported below)
from app.slate.environment import HISTORY_LENGTH

DEFAULT_POLICY = ".recloop/slate/actor_critic/policy"
TARGET_MS = 2.0


def measure(policy_dir: str, repeats: int = 2000, seed: int = 0) -> dict[str, float]:
    import numpy as np
    import tensorflow as tf
    import tensorflow_probability  # noqa: F401
    from tf_agents.trajectories import time_step as ts

    from app.policy_store import read_metadata

    metadata = read_metadata(policy_dir)
    policy = tf.saved_model.load(policy_dir)
    rng = np.random.default_rng(seed)
    history_length = HISTORY_LENGTH
    states = rng.integers(metadata.num_actions, size=(repeats, 1, history_length)).astype(np.int32)
    steps = [ts.restart(tf.constant(s), batch_size=1) for s in states]
    for step in steps[:50]:  # warm-up
        policy.action(step)
    seconds = np.empty(repeats)
    for i, step in enumerate(steps):
        started = time.perf_counter()
        policy.action(step).action.numpy()
        seconds[i] = time.perf_counter() - started
    return {
        "catalogue": float(metadata.num_actions),
        "median_ms": float(np.median(seconds) * 1e3),
        "p99_ms": float(np.percentile(seconds, 99) * 1e3),
    }


def main() -> int:
    policy_dir = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_POLICY
    result = measure(policy_dir)
    verdict = "meets" if result["median_ms"] <= TARGET_MS else "MISSES"
    print(
        f"slate decision over {result['catalogue']:.0f} movies: "
        f"median {result['median_ms']:.3f} ms, "
        f"p99 {result['p99_ms']:.3f} ms ({verdict} the {TARGET_MS} ms target)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
