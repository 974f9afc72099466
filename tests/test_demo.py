"""make demo's console: every step is visible from its first second, also without a terminal."""

import io
import os
import signal
import subprocess
import time
from pathlib import Path

from rich.console import Console

from app.demo import doing
from app.local.processes import PYTHON


def test_a_step_is_a_line_where_no_spinner_can_show():
    """Piped (`make demo | tee`, CI), rich draws no spinner: the step's text is printed instead
    (the start-up pipeline's half minute was silent there)."""
    out = io.StringIO()
    with doing(Console(file=out, force_terminal=False), "start-up pipeline (kfp.local)…"):
        pass
    assert out.getvalue().strip() == "start-up pipeline (kfp.local)…"


# The demo up to its stack, with a stand-in stack (one child in its own session, as the real
# processes are) and a start-up pipeline that takes a minute.
FAKE_STACK = """
import subprocess, sys, time, types
import app.demo as demo
import pipelines.run

class Stack:
    def __enter__(self):
        self.child = subprocess.Popen(
            ["sleep", "120"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        print("child", self.child.pid, flush=True)
        return types.SimpleNamespace(predictor_url="http://127.0.0.1:1/predict")

    def __exit__(self, *exc):
        self.child.kill()
        self.child.wait()

demo.local_stack = lambda *args, **kwargs: Stack()
pipelines.run.run_local = lambda *args, **kwargs: time.sleep(60)
sys.exit(demo.main(1))
"""


def test_terminate_stops_the_processes_the_demo_started(movielens_dir: Path, tmp_path: Path):
    env = {
        **os.environ,
        "MOVIELENS_DIR": str(movielens_dir),
        "RECLOOP__STATE_DIR": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
    }
    demo = subprocess.Popen(
        [PYTHON, "-c", FAKE_STACK],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert demo.stdout is not None
        child = next(int(line.split()[-1]) for line in demo.stdout if line.startswith("child"))
        time.sleep(0.5)
        demo.send_signal(signal.SIGTERM)
        demo.communicate(timeout=30)
    finally:
        demo.kill()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and os.path.exists(f"/proc/{child}"):
        time.sleep(0.1)
    alive = os.path.exists(f"/proc/{child}")
    if alive:
        os.kill(child, signal.SIGKILL)
    assert not alive, "the demo left a process it started running"
    assert demo.returncode == 128 + signal.SIGTERM
