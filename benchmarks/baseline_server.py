"""The Vertex sample's serving design: FastAPI calling the saved TF-Agents policy per request.

Usage: python -m benchmarks.baseline_server PORT POLICY_DIR
"""

import sys
from typing import Any

import app  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported below)


def build(policy_dir: str) -> Any:
    import numpy as np
    import tensorflow as tf
    import tensorflow_probability  # noqa: F401
    from fastapi import FastAPI, Request
    from tf_agents.trajectories import time_step as ts

    policy = tf.saved_model.load(policy_dir)
    server = FastAPI()

    @server.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @server.post("/predict")
    async def predict(request: Request) -> dict[str, list[dict[str, int]]]:
        instances = (await request.json())["instances"]
        observations = np.array([i["observation"] for i in instances], dtype=np.float64)
        step = ts.restart(tf.constant(observations), batch_size=len(observations))
        actions = policy.action(step).action.numpy()
        return {"predictions": [{"predicted_action": int(a)} for a in actions]}

    return server


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(build(sys.argv[2]), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
