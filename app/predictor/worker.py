"""What each server worker imports first (`python -m app.predictor` hands Granian
`app.predictor.worker:create`).

A worker spends seconds importing TensorFlow before Granian installs its own stop handlers;
meanwhile it kept the handlers of the process it was forked from, ignored a stop request and
was killed 3 s later with a warning. Until then, a stop signal ends it at once
(tests/test_cli.py::test_serve_stops_on_ctrl_c_while_starting).
"""

from __future__ import annotations

import signal

for _stop in (signal.SIGINT, signal.SIGTERM):
    signal.signal(_stop, signal.SIG_DFL)

from app.predictor.asgi import create  # noqa: E402

__all__ = ["create"]
