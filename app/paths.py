"""Paths that name a local folder or an object-store URI (gs://) alike.

`os.path.join` would be wrong for gs:// URIs on Windows and drops the scheme's meaning; every
artifact path in recloop (policies, checkpoints, metrics, pointers) is built with `join` here.
"""

from __future__ import annotations


def join(directory: str, name: str) -> str:
    """`directory/name`, with exactly one slash between them (gs://bucket/ + x → gs://bucket/x)."""
    return directory.rstrip("/") + "/" + name
