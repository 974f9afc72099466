"""The pointer deployer: versioned policy folders and a CURRENT pointer the predictor follows.

    <policies_dir>/<policy_version>/   a copy of the saved policy
    <policies_dir>/CURRENT             the version being served

The pointer is replaced atomically, so the predictor never reads a half-written version.
Both steps are idempotent by version: the re-training Deployer stages the copy, commits the
run in the warehouse, and only then moves the pointer (app/loop/steps.py::run_deployer), so a
restarted publish repeats them safely (tests/test_ledger.py::test_publish_fault_then_restart).
"""

from __future__ import annotations

import os
import tempfile

import tensorflow as tf

from app.paths import join
from app.policy_store import POINTER, read_metadata


def deploy(policy_dir: str, policies_dir: str) -> str:
    """Copies `policy_dir` under its version and points CURRENT at it; returns the version."""
    version = stage(policy_dir, policies_dir)
    point(policies_dir, version)
    return version


def stage(policy_dir: str, policies_dir: str) -> str:
    """Copies `policy_dir` to <policies_dir>/<version> (once; the predictor cannot see it yet)."""
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
    if not tf.io.gfile.exists(join(policies_dir, version)):
        raise FileNotFoundError(f"{join(policies_dir, version)} was never staged")
    _write_pointer(policies_dir, version)


def current_version(policies_dir: str) -> str | None:
    path = join(policies_dir, POINTER)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return f.read().strip() or None


def resolve(storage_uri: str) -> str:
    """The policy folder to serve: the pointer's target, or `storage_uri` itself."""
    version = current_version(storage_uri)
    return join(storage_uri, version) if version else storage_uri


def _copy_tree(source: str, target: str) -> None:
    for directory, _, files in tf.io.gfile.walk(source):
        relative = directory[len(source) :].lstrip("/")
        destination = join(target, relative) if relative else target
        tf.io.gfile.makedirs(destination)
        for name in files:
            tf.io.gfile.copy(join(directory, name), join(destination, name), overwrite=True)


def _write_pointer(policies_dir: str, version: str) -> None:
    if "://" in policies_dir:  # object stores replace whole objects atomically
        with tf.io.gfile.GFile(join(policies_dir, POINTER), "w") as f:
            f.write(version)
        return
    os.makedirs(policies_dir, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=policies_dir, prefix=".pointer-")
    with os.fdopen(fd, "w") as f:
        f.write(version)
    os.replace(temporary, os.path.join(policies_dir, POINTER))
