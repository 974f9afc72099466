"""Infrastructure: wall time of synthesising every stack of both environments."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from app.local.processes import PYTHON

TARGET_S = 60.0


def bench_synth() -> float:
    infra = Path(__file__).resolve().parent.parent / "infra"
    started = time.perf_counter()
    subprocess.run([PYTHON, "main.py", "dev", "prod"], cwd=infra, check=True, capture_output=True)
    return time.perf_counter() - started
