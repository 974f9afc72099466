"""What each server worker imports first (`python -m app.predictor` hands Granian
`app.predictor.worker:create`).

A worker spends seconds importing TensorFlow before Granian installs its own stop handlers;
meanwhile it kept the handlers of the process it was forked from, ignored a stop request and
was killed 3 s later with a warning. Until then, a stop signal ends it at once
(tests/test_cli.py::test_serve_stops_on_ctrl_c_while_starting). A stop in the fraction of a
second before a worker gets here (Granian's own start-up) still takes the 3 s backstop
(WORKER_KILL_SECONDS in app/predictor/__main__.py). Once Granian's handlers are in place, a
stop during the first load ends the process at once too (`create`).
"""

from __future__ import annotations

import signal

for _stop in (signal.SIGINT, signal.SIGTERM):
    signal.signal(_stop, signal.SIG_DFL)

from app.predictor import asgi  # noqa: E402
from app.predictor.server import PredictorApp  # noqa: E402


def create() -> PredictorApp:
    """The app of a server process: stopped before its first policy is loaded, it ends at once
    instead of waiting for the loading thread."""
    app = asgi.create()
    app.exit_if_stopped_before_loaded = True
    return app
