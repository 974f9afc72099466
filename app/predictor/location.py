"""Which policy the predictor serves, decided without importing TensorFlow.

The default is one rule, shown in `recloop serve --help` and the README: AIP_STORAGE_URI when
set (Vertex AI), else what was deployed (`<artifacts_dir>/policies`, whose CURRENT pointer the
server follows and hot-swaps), else what was trained last (`<artifacts_dir>/policy`,
`policy-per-arm` or `policy-slate`, whichever run wrote last).
Proved by tests/test_serve_cli.py::test_serve_defaults_to_the_deployed_policy,
tests/test_per_arm_serving.py::test_serve_defaults_to_the_policy_trained_last and
tests/test_slate_serving.py::test_serve_defaults_to_a_slate_policy_trained_last.
"""

from __future__ import annotations

import json
import os
from typing import Protocol

from app.config import ServingConfig
from app.paths import join
from app.policy_store import (
    DEPLOYED_DIR,
    METADATA_FILE,
    POINTER,
    TRAINED_DIR,
    TRAINED_PER_ARM_DIR,
    TRAINED_SLATE_DIR,
    PolicyStoreError,
)

DEFAULT_DESCRIPTION = (
    "AIP_STORAGE_URI, else what was deployed (<artifacts_dir>/policies/CURRENT), "
    "else what was trained last (<artifacts_dir>/policy, policy-per-arm or policy-slate)"
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
        for name in (TRAINED_DIR, TRAINED_PER_ARM_DIR, TRAINED_SLATE_DIR)
        if _exists(join(join(artifacts_dir, name), METADATA_FILE))
    ]
    if not trained:
        return join(artifacts_dir, TRAINED_DIR)
    return max(trained, key=lambda folder: _modified(join(folder, METADATA_FILE)))


def storage_uri_of(serving: ServingConfig, artifacts_dir: str) -> str:
    return serving.storage_uri or default_location(artifacts_dir)


HINT = "run `recloop train` or `recloop pipeline run startup`, or pass --policy"
REMOTE_TIMEOUT_SECONDS = 10


class _Reader(Protocol):
    def __call__(self, path: str) -> bytes | None:
        """The file's bytes, or None if there is none."""


def _read_local(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def _gcs_reader(uri: str) -> _Reader:
    """Reads gs:// objects once each, with a bounded wait and no retries: TensorFlow's GCS
    client, which serves, retries an unreachable store for minutes without a word."""
    from google.api_core import exceptions
    from google.cloud import storage

    try:
        client = storage.Client()
    except Exception as err:  # no credentials, no project: google-auth says which
        raise PolicyStoreError(f"cannot read {uri}: {_one_line(err)}") from None

    def read(path: str) -> bytes | None:
        bucket, _, name = path.removeprefix("gs://").partition("/")
        try:
            return bytes(
                client.bucket(bucket)
                .blob(name)
                .download_as_bytes(timeout=REMOTE_TIMEOUT_SECONDS, retry=None)
            )
        except exceptions.NotFound:
            return None
        except Exception as err:
            raise PolicyStoreError(
                f"cannot reach {uri}: {_one_line(err)} (check the network and credentials, "
                "or pass another --policy)"
            ) from None

    return read


def _one_line(err: Exception, limit: int = 200) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:limit]}{'…' if len(text) > limit else ''}"


def check_policy(uri: str) -> str | None:
    """The version a policy location would serve; a PolicyStoreError (one line) says why
    there is none: a missing folder, no metadata, a pointer to nothing, or an unreachable
    gs:// store (`recloop serve` then exits at once instead of retrying in silence). Other
    schemes are left to the server, which retries with backoff. Proved by
    tests/test_serve_cli.py::test_no_usable_policy_is_one_clear_line."""
    if "://" not in uri:
        read: _Reader = _read_local
    elif uri.startswith("gs://"):
        read = _gcs_reader(uri)
    else:
        return None
    folder = uri
    pointer = read(join(uri, POINTER))
    if pointer is not None:
        folder = join(uri, pointer.decode().strip())
    metadata_path = join(folder, METADATA_FILE)
    metadata = read(metadata_path)
    if metadata is None:
        if "://" not in uri and not os.path.exists(uri):
            raise PolicyStoreError(f"no policy to serve: {uri} does not exist; {HINT}")
        raise PolicyStoreError(f"no policy to serve: {folder} has no {METADATA_FILE}; {HINT}")
    try:
        return str(json.loads(metadata)["policy_version"])
    except (ValueError, KeyError, TypeError) as err:
        raise PolicyStoreError(
            f"{metadata_path} is not a recloop policy description: {err}"
        ) from None
