"""`recloop pipeline run` here: one line per step as kfp.local runs it, raw logs in a file,
and a closing summary (what was deployed, where, how to serve it).

kfp.local narrates every step (executor JSON included) on stdout; that goes to the log file,
and a thread reads the file for the task start and finish lines kfp.local writes.
Proved by tests/test_cli.py::test_pipeline_run_startup_succeeds_with_steps_and_a_summary
(a whole run) and ::test_pipeline_run_shows_steps_and_a_summary (a failing step).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

from app.config import Settings
from app.paths import join
from app.policy_store import DEPLOYED_DIR, POINTER

STARTED = re.compile(r"Executing task '?([\w-]+)'?")
FINISHED = re.compile(r"Task '?([\w-]+)'? finished with status (\w+)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class PipelineFailed(RuntimeError):
    """A step failed; the message names it and the log file."""


def follow(log: Path, say: Callable[[str], None], stop: threading.Event) -> None:
    """Prints a line for each task start/finish kfp.local writes to `log`."""
    started: dict[str, float] = {}
    pending = ""
    with open(log, errors="replace") as f:
        while True:
            pending += f.readline()
            if not pending.endswith("\n"):  # nothing new, or a line still being written
                if stop.is_set():
                    return
                time.sleep(0.2)
                continue
            line, pending = ANSI.sub("", pending), ""
            if match := FINISHED.search(line):
                name, status = match.groups()
                took = time.monotonic() - started.get(name, time.monotonic())
                mark = "done" if status == "SUCCESS" else status.lower()
                say(f"  {mark:<7} {name} ({took:.0f} s)")
            elif match := STARTED.search(line):
                started[match.group(1)] = time.monotonic()
                say(f"  running {match.group(1)} …")


def run_with_progress(
    name: str,
    settings: Settings,
    run: Callable[[Path], None],
    say: Callable[[str], None],
) -> None:
    """`say` must write to the terminal itself: kfp.local's stdout is redirected to the log
    while the pipeline runs."""
    logs = Path(settings.state_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.log"
    log.touch()
    say(f"pipeline {name}, here with kfp.local (full log: {log})")
    stop = threading.Event()
    watcher = threading.Thread(target=follow, args=(log, say, stop), daemon=True)
    watcher.start()
    began = time.monotonic()
    try:
        run(log)
    except Exception as err:
        reason = ANSI.sub("", str(err)).strip()
        raise PipelineFailed(f"pipeline {name} failed ({reason}); see {log}") from err
    finally:
        stop.set()
        watcher.join(timeout=5)
    say(summary(settings, time.monotonic() - began))


def summary(settings: Settings, seconds: float) -> str:
    deployed = join(settings.artifacts_dir, DEPLOYED_DIR)
    pointer = Path(deployed) / POINTER
    version = pointer.read_text().strip() if pointer.is_file() else None
    if version is None:
        return f"finished in {seconds:.0f} s; no policy was deployed"
    return (
        f"finished in {seconds:.0f} s: policy {version} deployed to {join(deployed, version)} "
        f"(CURRENT points at it); serve it with `recloop serve`"
    )
