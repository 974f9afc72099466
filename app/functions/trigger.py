"""Trigger: judges an open canary, and starts the re-training pipeline when enough new
training examples exist.

Runs on a Scheduler tick. With a canary open (app/deployer/canary.py), the tick first takes its
look if one is due — online reward by version from the warehouse, the sequential test, and on a
decision the Vertex traffic move, the ledger commit and the pointer — and starts nothing while
it stays open. That is SQL, statistics and small objects: no TensorFlow, which this function
does not install (tests/test_canary.py::test_the_trigger_judges_a_vertex_canary_without_tensorflow).
 It starts nothing while a re-training is under way: locally, an
flock on a lock file that the pipeline process holds for as long as it lives (the kernel
releases it when the process ends, however it ends, so a launch that failed leaves nothing
behind); on Vertex AI, a PipelineJob of the re-training pipeline that is pending, queued or
running. Should two runs start anyway, the ledger lets only one of them commit
(tests/test_ledger.py::test_concurrent_trigger_ticks_start_one_run,
tests/test_ledger.py::test_vertex_single_flight_filter_on_the_wire).
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from app import wiring
from app.config import Settings, load_settings
from app.deployer import canary
from app.loop.parameters import RETRAINING
from app.paths import join
from app.policy_store import DEPLOYED_DIR
from app.warehouse.base import Warehouse
from app.warehouse.factory import open_warehouse

log = logging.getLogger("recloop.trigger")
LOCK_FILE = "retraining.lock"
RETRAINING_COMMAND = (sys.executable, "-m", "pipelines.run", "retraining")
UNDER_WAY = ("PIPELINE_STATE_PENDING", "PIPELINE_STATE_QUEUED", "PIPELINE_STATE_RUNNING")
UNDER_WAY_FILTER = (
    f'display_name="{RETRAINING}" AND ('
    + " OR ".join(f'state="{state}"' for state in UNDER_WAY)
    + ")"
)


class Launcher(Protocol):
    def running(self) -> bool: ...

    def start(self) -> bool:
        """Starts a run unless one is under way; True if it started one."""


class LocalLauncher:
    """Runs `python -m pipelines.run retraining` (kfp.local) in its own process group."""

    def __init__(self, state_dir: str, command: Sequence[str] = RETRAINING_COMMAND):
        self.lock = Path(state_dir) / LOCK_FILE
        self.command = list(command)

    def _acquire(self) -> int | None:
        """An open descriptor holding the lock, or None when a run holds it."""
        self.lock.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return None
        return descriptor

    def running(self) -> bool:
        descriptor = self._acquire()
        if descriptor is None:
            return True
        os.close(descriptor)
        return False

    def start(self) -> bool:
        descriptor = self._acquire()
        if descriptor is None:
            return False
        try:
            # The child inherits the locked descriptor: the lock lives exactly as long as it.
            process = subprocess.Popen(
                self.command,
                start_new_session=True,
                stdout=open(self.lock.with_suffix(".log"), "ab"),  # noqa: SIM115
                stderr=subprocess.STDOUT,
                pass_fds=(descriptor,),
            )
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, str(process.pid).encode(), 0)  # for whoever stops it
        finally:
            os.close(descriptor)
        return True


class VertexLauncher:
    def __init__(self, settings: Settings, template_path: str):
        self.settings, self.template_path = settings, template_path

    def running(self) -> bool:
        from google.cloud import aiplatform

        cloud = self.settings.cloud
        jobs = aiplatform.PipelineJob.list(
            filter=UNDER_WAY_FILTER, project=cloud.project_id, location=cloud.region
        )
        return bool(jobs)

    def start(self) -> bool:
        from app.loop.pipeline_jobs import submit_vertex, vertex_parameters

        if self.running():
            return False
        submit_vertex(
            RETRAINING,
            self.settings,
            self.template_path,
            vertex_parameters(RETRAINING, self.settings),
        )
        log.info(
            "release %s: %s, trainer %s, serving %s",
            self.settings.cloud.release,
            self.template_path,
            self.settings.cloud.trainer_image,
            self.settings.cloud.serving_image,
        )
        return True


def decide(
    warehouse: Warehouse, launcher: Launcher, min_new_examples: int, rank_k: int, num_actions: int
) -> str:
    new = warehouse.count_untrained(rank_k, num_actions)
    if new < min_new_examples:
        return f"waiting: {new} new training examples, {min_new_examples} needed"
    if not launcher.start():
        return f"waiting: a re-training is running ({new} new examples)"
    return f"started re-training on {new} new examples"


def judge_canary(settings: Settings, warehouse: Warehouse) -> str | None:
    """Why no re-training may start now (a canary stays open), else None — after taking the
    open canary's look, if one is due."""
    policies = join(settings.artifacts_dir, DEPLOYED_DIR)
    opened = canary.read(policies)
    if opened is None:
        return None
    decided = canary.step(settings, warehouse, policies)
    if decided is None:
        return (
            f"waiting: canary {opened.version} is open ({opened.share}% of traffic); "
            f"a look is due every {settings.gate.canary_look_every} rewards of it"
        )
    log.info("canary %s %s: %s", decided.candidate_version, decided.decision, decided.reason)
    return None


@cache
def _context() -> tuple[Settings, Warehouse, Launcher]:
    settings = wiring.require_in_cloud(load_settings(), wiring.TRIGGER)
    launcher: Launcher
    if settings.loop.retraining_template:
        launcher = VertexLauncher(settings, settings.loop.retraining_template)
    else:
        launcher = LocalLauncher(settings.state_dir)
    return settings, open_warehouse(settings), launcher


def trigger(event: Any) -> None:
    settings, warehouse, launcher = _context()
    loop = settings.loop
    if waiting := judge_canary(settings, warehouse):
        log.info(waiting)
        return
    log.info(decide(warehouse, launcher, loop.min_new_examples, loop.rank_k, loop.num_actions))
