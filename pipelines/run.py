"""Running a pipeline: locally with kfp.local, or on Vertex AI Pipelines from its template."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from app.config import Settings, load_settings
from app.loop.parameters import PipelineParameters
from pipelines.definitions import RETRAINING, STARTUP, build_pipelines

NAMES = {"startup": STARTUP, "retraining": RETRAINING}


def local_parameters(name: str, settings: Settings, **pipeline_only: Any) -> dict[str, Any]:
    """The same parameters the Trigger sends to Vertex, from the local settings."""
    return PipelineParameters.from_settings(settings, **pipeline_only).values(name)


def run_local(
    name: str, settings: Settings, log_path: Path | None = None, **pipeline_only: Any
) -> None:
    """Runs the pipeline here: every step is a subprocess of this Python, as kfp.local does it.

    kfp.local narrates every step on stdout; `log_path` sends that to a file instead.
    """
    from kfp import local

    local.init(
        runner=local.SubprocessRunner(use_venv=False), pipeline_root=settings.loop.pipeline_root
    )
    built = build_pipelines()
    pipeline = built.startup if name == STARTUP else built.retraining
    if log_path is None:
        pipeline(**local_parameters(name, settings, **pipeline_only))
        return
    with (
        open(log_path, "a") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):
        pipeline(**local_parameters(name, settings, **pipeline_only))


def canary_stays_open(settings: Settings) -> bool:
    """A re-training run here judges an open canary first, as the Trigger's tick does
    (app/functions/trigger.py::judge_canary); while it stays open, no re-training runs."""
    from app.functions.trigger import judge_canary
    from app.warehouse.factory import open_warehouse

    waiting = judge_canary(settings, open_warehouse(settings))
    if waiting:
        print(waiting)
    return waiting is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.run")
    parser.add_argument("pipeline", choices=sorted(NAMES))
    args = parser.parse_args(argv)
    # The Trigger's lock is an flock this process inherits and holds until it exits
    # (app/functions/trigger.py::LocalLauncher): nothing to write or remove here.
    settings = load_settings()
    if args.pipeline == "retraining" and canary_stays_open(settings):
        return 0
    run_local(NAMES[args.pipeline], settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
