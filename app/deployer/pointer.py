"""The pointer deployer: versioned policy folders and a CURRENT pointer the predictor follows.

    <policies_dir>/<policy_version>/   a copy of the saved policy
    <policies_dir>/CURRENT             the version being served

The pointer is replaced atomically, so the predictor never reads a half-written version.
Both steps are idempotent by version: the re-training Deployer stages the copy, commits the
run in the warehouse, and only then moves the pointer (app/loop/steps.py::run_deployer), so a
restarted publish repeats them safely (tests/test_ledger.py::test_publish_fault_then_restart).
The pointer is read and moved without TensorFlow (app/objects.py): the Trigger function moves
it when a canary wins.
"""

from __future__ import annotations

from app import objects
from app.paths import join
from app.policy_store import POINTER, read_metadata


def deploy(policy_dir: str, policies_dir: str) -> str:
    """Copies `policy_dir` under its version and points CURRENT at it; returns the version."""
    version = stage(policy_dir, policies_dir)
    point(policies_dir, version)
    return version


def stage(policy_dir: str, policies_dir: str) -> str:
    """Copies `policy_dir` to <policies_dir>/<version> (once; the predictor cannot see it yet)."""
    import tensorflow as tf

    version = read_metadata(policy_dir).policy_version
    target = join(policies_dir, version)
    if not tf.io.gfile.exists(target):
        staging = join(policies_dir, f".staging-{version}")
        if tf.io.gfile.exists(staging):
            tf.io.gfile.rmtree(staging)
        _copy_tree(policy_dir, staging)
        tf.io.gfile.rename(staging, target)
    return version


def point(policies_dir: str, version: str) -> None:
    """Points CURRENT at a staged version (atomically; repeating it changes nothing)."""
    if not objects.folder_exists(join(policies_dir, version)):
        raise FileNotFoundError(f"{join(policies_dir, version)} was never staged")
    objects.write_text(join(policies_dir, POINTER), version)


def current_version(policies_dir: str) -> str | None:
    text = objects.read_text(join(policies_dir, POINTER))
    return (text or "").strip() or None


def resolve(storage_uri: str) -> str:
    """The policy folder to serve: the pointer's target, or `storage_uri` itself."""
    version = current_version(storage_uri)
    return join(storage_uri, version) if version else storage_uri


def _copy_tree(source: str, target: str) -> None:
    import tensorflow as tf

    for directory, _, files in tf.io.gfile.walk(source):
        relative = directory[len(source) :].lstrip("/")
        destination = join(target, relative) if relative else target
        tf.io.gfile.makedirs(destination)
        for name in files:
            tf.io.gfile.copy(join(directory, name), join(destination, name), overwrite=True)
