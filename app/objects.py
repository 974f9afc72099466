"""Small text objects beside the deployed policies — the CURRENT pointer and the CANARY state —
on a local path or gs://, without TensorFlow.

The Trigger Cloud Function judges canaries and moves the pointer, and it must not import
TensorFlow (tests/infra/test_security.py); so these go through google-cloud-storage, which the
function, the pipeline steps and the predictor all install. A local write is atomic (a rename);
an object store replaces a whole object atomically. Proved by
tests/test_canary.py::test_the_trigger_judges_a_vertex_canary_without_tensorflow.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from functools import cache
from typing import Any

GS = "gs://"


def _split(uri: str) -> tuple[str, str]:
    bucket, _, name = uri[len(GS) :].partition("/")
    if not bucket or not name:
        raise ValueError(f"{uri} is not gs://<bucket>/<object>")
    return bucket, name


@cache
def _client() -> Any:
    from google.cloud import storage

    return storage.Client()


def _blob(uri: str) -> Any:
    bucket, name = _split(uri)
    return _client().bucket(bucket).blob(name)


def _remote(path: str) -> bool:
    if "://" in path and not path.startswith(GS):
        raise ValueError(f"{path}: only local paths and gs:// are supported")
    return path.startswith(GS)


def read_text(path: str) -> str | None:
    """The object's text, or None when there is no such object."""
    if not _remote(path):
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            return f.read()
    from google.api_core.exceptions import NotFound

    try:
        return str(_blob(path).download_as_text())
    except NotFound:
        return None


def write_text(path: str, text: str) -> None:
    if _remote(path):
        _blob(path).upload_from_string(text, content_type="text/plain")
        return
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".write-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(temporary, path)


def remove(path: str) -> None:
    """Removes the object; removing one that is gone already is not an error."""
    if not _remote(path):
        if os.path.isfile(path):
            os.remove(path)
        return
    from google.api_core.exceptions import NotFound

    with contextlib.suppress(NotFound):
        _blob(path).delete()


def folder_exists(path: str) -> bool:
    """A local folder, or on gs:// any object under `path/`."""
    if not _remote(path):
        return os.path.isdir(path)
    bucket, name = _split(path)
    found = _client().list_blobs(bucket, prefix=name.rstrip("/") + "/", max_results=1)
    return any(True for _ in found)
