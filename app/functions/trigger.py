"""Trigger: starts the re-training pipeline when enough new training examples exist.

Runs on a Scheduler tick. It starts nothing while a re-training is still running: locally
a lock file held by the pipeline process; on Vertex AI, a running PipelineJob of the
re-training pipeline.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from app import wiring
from app.config import Settings, load_settings
from app.loop.parameters import RETRAINING
from app.warehouse.base import Warehouse
from app.warehouse.factory import open_warehouse

log = logging.getLogger("recloop.trigger")
LOCK_FILE = "retraining.lock"


class Launcher(Protocol):
    def running(self) -> bool: ...

    def start(self) -> None: ...


class LocalLauncher:
    """Runs `python -m pipelines.run retraining` (kfp.local) in its own process group."""

    def __init__(self, state_dir: str):
        self.lock = Path(state_dir) / LOCK_FILE

    def running(self) -> bool:
        if not self.lock.exists():
            return False
        try:
            pid = int(self.lock.read_text().strip() or 0)
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError, PermissionError):
            self.lock.unlink(missing_ok=True)  # a run that died without cleaning up
            return False
        return True

    def start(self) -> None:
        self.lock.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            # Claim the lock before starting, so two ticks cannot both start a run.
            descriptor = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            process = subprocess.Popen(
                [sys.executable, "-m", "pipelines.run", "retraining", "--lock", str(self.lock)],
                start_new_session=True,
                stdout=open(self.lock.with_suffix(".log"), "ab"),  # noqa: SIM115
                stderr=subprocess.STDOUT,
            )
            os.write(descriptor, str(process.pid).encode())
            os.close(descriptor)


class VertexLauncher:
    def __init__(self, settings: Settings, template_path: str):
        self.settings, self.template_path = settings, template_path

    def running(self) -> bool:
        from google.cloud import aiplatform

        cloud = self.settings.cloud
        jobs = aiplatform.PipelineJob.list(
            filter=f'display_name="{RETRAINING}" AND state="PIPELINE_STATE_RUNNING"',
            project=cloud.project_id,
            location=cloud.region,
        )
        return bool(jobs)

    def start(self) -> None:
        from app.loop.pipeline_jobs import submit_vertex, vertex_parameters

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


def decide(warehouse: Warehouse, launcher: Launcher, min_new_examples: int) -> str:
    new = warehouse.count_examples(warehouse.latest_watermark())
    if new < min_new_examples:
        return f"waiting: {new} new training examples, {min_new_examples} needed"
    if launcher.running():
        return f"waiting: a re-training is running ({new} new examples)"
    launcher.start()
    return f"started re-training on {new} new examples"


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
    log.info(decide(warehouse, launcher, settings.loop.min_new_examples))
