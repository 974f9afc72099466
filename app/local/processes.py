"""Starting real entry points as processes on loopback and waiting until they are healthy."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx

PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running(
    command: Sequence[str],
    env: dict[str, str],
    ready: str | Callable[[], bool],
    timeout: float = 60,
    log_path: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Runs `command` in its own process group until the block ends.

    Yields once `ready` holds: a URL that answers 200, or a check of its own. Output goes
    to `log_path` (a temporary file by default), never to a pipe nobody reads. The whole
    group is stopped at the end, so children that outlive their parent (the Pub/Sub
    emulator's JVM) stop too.
    """
    log = open(log_path, "w+b") if log_path else tempfile.TemporaryFile()  # noqa: SIM115
    process = subprocess.Popen(
        list(command),
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        check = ready if callable(ready) else functools.partial(answers, ready)
        wait_ready(process, check, timeout, log)
        yield process
    finally:
        stop_group(process)
        log.close()


def answers(url: str) -> bool:
    with contextlib.suppress(httpx.TransportError):
        return httpx.get(url, timeout=1).status_code == 200
    return False


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def wait_ready(
    process: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float, log
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            log.seek(0)
            output = log.read().decode(errors="replace")[-4000:]
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}:\n{output}")
        if ready():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{process.args!r} was not ready within {timeout:.0f}s")
        time.sleep(0.2)


def stop_group(process: subprocess.Popen[bytes], grace: float = 10) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
