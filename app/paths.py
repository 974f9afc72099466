"""One way to build an artifact path, for a local folder and an object-store URI (gs://) alike.

`os.path.join` knows only local paths; every artifact path recloop hands to tf.io.gfile
(policies, checkpoints, metrics, the deployment pointer) is built with `join`.
"""

from __future__ import annotations


def join(directory: str, name: str) -> str:
    """`directory/name` with exactly one slash between them (gs://bucket/ + x → gs://bucket/x)."""
    return directory.rstrip("/") + "/" + name
