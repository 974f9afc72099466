"""`python -m app.predictor`: serve the policy in AIP_STORAGE_URI on AIP_HTTP_PORT.

Granian (a Rust HTTP server) runs the ASGI app: at 16 connections it answers about a
third more requests than uvicorn with a shorter tail (docs/benchmarks.md).
"""

from __future__ import annotations

import errno
import os
import socket
import sys

from app import wiring
from app.config import ConfigError, ServingConfig, env_name, load_settings
from app.predictor.location import storage_uri_of

WORKER_KILL_SECONDS = 3


class PortUnavailable(RuntimeError):
    """The port cannot be listened on; the message names it and what to do."""


def claim_port(serving: ServingConfig) -> int:
    """The port to serve on: `serving.port`, or the one the system picks for 0.

    Granian's workers listen with SO_REUSEPORT, so a second server on a busy port would start
    and silently take part of the traffic. A plain bind first (no SO_REUSEPORT) fails if anyone
    listens there; `reuse_port` skips it for sharing on purpose.
    Proved by tests/test_serve_cli.py::test_busy_port_is_refused_unless_sharing_is_asked.
    """
    port = serving.port
    if not 0 <= port <= 65535:
        raise ConfigError(
            f"serving.port must be between 0 and 65535, got {port} "
            "(set it with --port, AIP_HTTP_PORT or RECLOOP__SERVING__PORT)"
        )
    if serving.reuse_port and port != 0:
        return port
    family = socket.AF_INET6 if ":" in serving.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR: a port left in TIME_WAIT by a stopped server is free; a listener is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((serving.host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise PortUnavailable(
                    f"port {port} on {serving.host} is already in use (another `recloop serve`?): "
                    "stop that server, choose another with --port, or share it on purpose "
                    "with --reuse-port"
                ) from None
            raise PortUnavailable(
                f"cannot listen on {serving.host}:{port}: {err.strerror}"
            ) from None
        return int(probe.getsockname()[1])


def serve(serving: ServingConfig, storage_uri: str) -> None:
    from granian import Granian
    from granian.constants import Interfaces, Loops
    from granian.log import LogLevels

    # Workers build the app from configuration; hand them the policy location chosen here.
    os.environ[env_name(("serving", "storage_uri"))] = storage_uri
    Granian(
        "app.predictor.worker:create",
        factory=True,
        interface=Interfaces.ASGI,
        address=serving.host,
        port=serving.port,
        workers=serving.workers,
        loop=Loops.uvloop,
        log_level=LogLevels.warning,
        log_access=serving.access_log,
        # A worker still starting (importing TensorFlow) ignores SIGTERM: without this, Ctrl-C
        # during start-up waited for it forever.
        workers_kill_timeout=WORKER_KILL_SECONDS,
    ).serve()


def main() -> int:
    settings = wiring.require_in_cloud(load_settings(), wiring.PREDICTOR)
    serving = settings.serving
    try:
        port = claim_port(serving)
    except (ConfigError, PortUnavailable) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    serve(
        ServingConfig(**{**vars(serving), "port": port}),
        storage_uri_of(serving, settings.artifacts_dir),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
