"""Which policy the predictor serves, decided without importing TensorFlow.

The default is one rule, shown in `recloop serve --help` and the README: AIP_STORAGE_URI when
set (Vertex AI), else what was deployed (`<artifacts_dir>/policies`, whose CURRENT pointer the
server follows and hot-swaps), else what was trained last (`<artifacts_dir>/policy`, or
`policy-per-arm` when a per-arm run wrote after it).
Proved by tests/test_serve_cli.py::test_serve_defaults_to_the_deployed_policy and
tests/test_per_arm_serving.py::test_serve_defaults_to_the_policy_trained_last.
"""

from __future__ import annotations

import json
import os

from app.config import ServingConfig
from app.policy_store import (
    DEPLOYED_DIR,
    METADATA_FILE,
    POINTER,
    TRAINED_DIR,
    TRAINED_PER_ARM_DIR,
    PolicyStoreError,
    join,
)

DEFAULT_DESCRIPTION = (
    "AIP_STORAGE_URI, else what was deployed (<artifacts_dir>/policies/CURRENT), "
    "else what was trained last (<artifacts_dir>/policy or policy-per-arm)"
)


def _exists(path: str) -> bool:
    if "://" not in path:
        return os.path.exists(path)
    import tensorflow as tf

    return bool(tf.io.gfile.exists(path))


def _modified(path: str) -> float:
    if "://" not in path:
        return os.path.getmtime(path)
    import tensorflow as tf

    return float(tf.io.gfile.stat(path).mtime_nsec) / 1e9


def default_location(artifacts_dir: str) -> str:
    deployed = join(artifacts_dir, DEPLOYED_DIR)
    if _exists(join(deployed, POINTER)):
        return deployed
    trained = [
        join(artifacts_dir, name)
        for name in (TRAINED_DIR, TRAINED_PER_ARM_DIR)
        if _exists(join(join(artifacts_dir, name), METADATA_FILE))
    ]
    if not trained:
        return join(artifacts_dir, TRAINED_DIR)
    return max(trained, key=lambda folder: _modified(join(folder, METADATA_FILE)))


def storage_uri_of(serving: ServingConfig, artifacts_dir: str) -> str:
    return serving.storage_uri or default_location(artifacts_dir)


def check_local_policy(uri: str) -> str | None:
    """The version a local policy location would serve; a PolicyStoreError (one line) says
    why there is none. Remote (gs://) locations are left to the server, which retries."""
    if "://" in uri:
        return None
    folder = uri
    pointer = os.path.join(uri, POINTER)
    if os.path.isfile(pointer):
        with open(pointer) as f:
            folder = os.path.join(uri, f.read().strip())
    metadata = os.path.join(folder, METADATA_FILE)
    if not os.path.isfile(metadata):
        hint = "run `recloop train` or `recloop pipeline run startup`, or pass --policy"
        if not os.path.exists(uri):
            raise PolicyStoreError(f"no policy to serve: {uri} does not exist; {hint}")
        raise PolicyStoreError(f"no policy to serve: {folder} has no {METADATA_FILE}; {hint}")
    try:
        with open(metadata) as f:
            return str(json.load(f)["policy_version"])
    except (ValueError, KeyError) as err:
        raise PolicyStoreError(f"{metadata} is not a recloop policy description: {err}") from None
