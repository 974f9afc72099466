"""Starting real entry points as processes on loopback and waiting until they are healthy."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
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
    health_url: str,
    timeout: float = 60,
    log_path: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Runs `command` in its own process group until the block ends.

    Yields once `health_url` answers 200. Output goes to `log_path` (a temporary file by
    default), never to a pipe nobody reads. The whole group is stopped at the end, so
    children that outlive their parent (the Pub/Sub emulator's JVM) stop too.
    """
    log = open(log_path, "wb") if log_path else tempfile.TemporaryFile()  # noqa: SIM115
    process = subprocess.Popen(
        list(command),
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_healthy(process, health_url, timeout, log)
        yield process
    finally:
        stop_group(process)
        log.close()


def wait_healthy(process: subprocess.Popen[bytes], url: str, timeout: float, log) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            log.seek(0)
            output = log.read().decode(errors="replace")[-4000:]
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}:\n{output}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} was not healthy within {timeout:.0f}s")
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
