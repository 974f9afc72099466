"""make demo: every step is visible from its first second, also without a terminal; its
report has issue 10's keys."""

import dataclasses
import io
import json
import math
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from app.config import GateConfig, load_settings
from app.demo import Cycle, Promotion, _report, doing, live_table, promotion_of, summary
from app.deployer import canary, pointer
from app.evaluation import gate
from app.local.processes import PYTHON
from app.warehouse.duckdb_store import DuckDBWarehouse
from app.warehouse.records import TrainingRunRecord
from tests.test_canary import online
from tests.test_gate import logged


def test_a_step_is_a_line_where_no_spinner_can_show():
    """Piped (`make demo | tee`, CI), rich draws no spinner: the step's text is printed instead
    (the start-up pipeline's half minute was silent there)."""
    out = io.StringIO()
    with doing(Console(file=out, force_terminal=False), "start-up pipeline (kfp.local)…"):
        pass
    assert out.getvalue().strip() == "start-up pipeline (kfp.local)…"


def test_the_live_table_ends_its_line_where_no_terminal_redraws_it():
    """Piped, rich prints the cycles' table once at its end with no newline after it: the
    demo's next line ("stopping every process…") was glued to the table's bottom border."""
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=60)
    table = Table("cycle")
    table.add_row("1")
    with live_table(console, table) as live:
        live.console.print("cycle 1: 512 rewarded recommendations")
    console.print("stopping every process…")
    lines = out.getvalue().splitlines()
    assert lines[-1] == "stopping every process…", lines
    assert lines[-2].startswith("└") and lines[-2].endswith("┘"), lines


def test_the_closing_lines_are_the_reports_entries():
    """The demo's last lines name each candidate once with its final decision and the cycle
    report.json gives it: the candidate that skipped the gate ends "rolled_back" under the
    cycle it was trained after (before: "promoted: gate skipped … no decision" under cycle 4,
    then its rollback under cycle 5)."""

    def decided(cycle: int, version: str, decision: str, reason: str) -> Promotion:
        dr = None if reason.startswith("online") else 1.0
        ci = [None, None] if dr is None else [0.5, 1.5]
        return Promotion(
            cycle, version, "v3", {"ips": dr, "snips": dr, "dr": dr}, ci, decision, reason
        )

    lines = summary(
        [
            decided(3, "v3", "promoted", "DR candidate − serving = +0.25"),
            decided(4, "v4", "promoted", "gate skipped (demo switch gate.skip): no decision"),
            decided(5, "v4", "rolled_back", "online candidate − serving = -3.3"),
            decided(5, "v5", "promoted", "DR candidate − serving = -0.07"),
        ]
    )
    assert [line.split(":")[0] for line in lines] == ["cycle 3", "cycle 4", "cycle 5"]
    assert lines[1].startswith("cycle 4: v4 rolled_back: gate skipped"), lines
    assert "→ online candidate − serving = -3.3" in lines[1]


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


def test_the_report_lists_each_candidate_with_its_numbers_and_final_decision(tmp_path: Path):
    """report.json's "promotions" has exactly issue 10's keys and types, numbers included,
    for the decisions the demo takes — made by the real gate and canary code on a DuckDB
    warehouse: the start-up policy, a promoted and a blocked candidate, and one that skips the
    gate, which the canary rolls back. That one's final decision is "rolled_back" (before,
    it was listed as "promoted" with null estimates, and its canary row apart)."""
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    data = logged()
    uniform = np.full((400, 4), 0.25)
    by_arm = [data.rewards[data.actions == a].mean() for a in range(4)]
    worst = np.zeros((400, 4))
    worst[:, int(np.argmin(by_arm))] = 1.0
    config = GateConfig(margin=0.1)
    skip = GateConfig(margin=0.1, skip=True, canary_share=30)
    now = datetime.now(UTC) - timedelta(minutes=5)
    decided = [
        (0, gate.decide("r0", "v0", "", data, gate.Candidates(uniform, None), config, now)),
        (1, gate.decide("r1", "v1", "v0", data, gate.Candidates(uniform, uniform), config, now)),
        (2, gate.decide("r2", "v2", "v1", data, gate.Candidates(worst, uniform), config, now)),
        (4, gate.decide("r4", "v4", "v1", data, gate.Candidates(worst, uniform), skip, now)),
    ]
    assert [d.decision for _, d in decided] == ["promoted", "promoted", "blocked", "promoted"]
    policies = str(tmp_path / "policies")
    for version in ("v1", "v4"):
        (tmp_path / "policies" / version).mkdir(parents=True)
    pointer.point(policies, "v1")
    settings = load_settings(environ={"RECLOOP__GATE__CANARY_LOOK_EVERY": "50"})
    run = TrainingRunRecord("r4", "v4", None, None, 40, 4, 20, f"{policies}/v4")
    deployer = dataclasses.replace(settings, gate=dataclasses.replace(settings.gate, skip=True))
    canary.start(policies, run, 30, deployer, now)  # what the Deployer does after a skip
    online(warehouse, "v1", [4.0, 4.5] * 60)
    online(warehouse, "v4", [1.0, 1.5] * 30)
    for _, row in decided:
        warehouse.record_promotion(row)
    judged = canary.step(settings, warehouse, policies)
    assert judged is not None and judged.decision == "rolled_back"
    cycle_of = {d.run_id: cycle for cycle, d in decided}
    promotions = [promotion_of(cycle_of[r.run_id], r) for r in warehouse.promotions()]
    cycles = [Cycle(n, "v1", 512 * n, 3.5, 0.5, 512) for n in range(1, 6)]

    report = _report(tmp_path, cycles, promotions, 0.88, 61.0)
    entries = json.loads(report.read_text())["promotions"]
    keys = {"cycle", "candidate_version", "serving_version", "estimates", "ci", "decision"}
    for entry in entries:
        assert set(entry) == keys | {"reason"}
        assert type(entry["cycle"]) is int
        assert all(type(entry[k]) is str for k in ("candidate_version", "serving_version"))
        assert set(entry["estimates"]) == {"ips", "snips", "dr"}
        numbers = [*entry["estimates"].values(), *entry["ci"]]
        assert len(entry["ci"]) == 2 and all(type(x) is float for x in numbers), entry
        assert all(math.isfinite(x) for x in numbers)
        assert entry["decision"] in ("promoted", "blocked", "rolled_back")
        assert type(entry["reason"]) is str and entry["reason"]
    final = {e["candidate_version"]: e["decision"] for e in entries}
    assert final == {"v0": "promoted", "v1": "promoted", "v2": "blocked", "v4": "rolled_back"}
    (skipped,) = [e for e in entries if e["candidate_version"] == "v4"]
    assert skipped["reason"].startswith("gate skipped") and "online" in skipped["reason"]
    assert skipped["estimates"]["dr"] == decided[3][1].dr  # the evaluation the gate skipped
