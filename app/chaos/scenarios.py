"""The fault scenarios of `make chaos` (docs/reliability.md names what each proves).

Every scenario gets a fresh folder and a size (interactions to create), builds its own
warehouse, injects its fault, lets the loop re-train until nothing is left, and returns the
ledger's accounting of every interaction it created.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import duckdb
import numpy as np

from app.chaos import rig
from app.chaos.harness import (
    ACTIONS,
    RANK,
    Crash,
    Interaction,
    Loop,
    account,
    feedback,
    interactions,
    prediction_logs,
)
from app.config import PubSubConfig
from app.deployer import pointer
from app.functions.trigger import LOCK_FILE, LocalLauncher, decide
from app.loop import ingester
from app.trainer.checkpoint import Checkpoints
from app.transport import DirectPublisher
from app.warehouse import ledger
from app.warehouse.base import LedgerConflict
from app.warehouse.duckdb_store import DuckDBWarehouse
from app.warehouse.records import PredictionRecord, TrainingRunRecord


@dataclass(frozen=True)
class Result:
    name: str
    interactions: int
    trained_once: int
    lost: int
    duplicated: int
    passed: bool
    seconds: float
    note: str = ""


@dataclass(frozen=True)
class Context:
    folder: Path
    size: int  # interactions per scenario (a multiple of 8)
    emulator: bool  # the Pub/Sub emulator is running (PUBSUB_EMULATOR_HOST is set)


Scenario = Callable[[Context], tuple[Loop, list[Interaction], bool, str]]


def late_prediction_log(ctx: Context) -> tuple[Loop, list[Interaction], bool, str]:
    """Rewards arrive, a run trains, and only then the prediction logs they belong to."""
    loop, items = Loop(ctx.folder), interactions("late-log", ctx.size)
    half = len(items) // 2
    loop.deliver(prediction_logs(items[:half]))
    loop.deliver(feedback(items))
    loop.retrain("run-1")
    loop.deliver(prediction_logs(items[half:]))  # Pub/Sub gives no order between topics
    loop.drain()
    return loop, items, True, ""


def late_feedback_after_training(ctx: Context) -> tuple[Loop, list[Interaction], bool, str]:
    """Rewards stamped (by their sender) before a run that already trained arrive after it."""
    loop, items = Loop(ctx.folder), interactions("late-reward", ctx.size, seed=1)
    half = len(items) // 2
    loop.deliver(prediction_logs(items))
    loop.deliver(feedback(items[:half]))
    loop.retrain("run-1")
    loop.deliver(feedback(items[half:], time=datetime.now(UTC) - timedelta(days=1)))
    loop.drain()
    return loop, items, True, ""


def _through_logger(
    ctx: Context,
    loop: Loop,
    items: list[Interaction],
    copies: int = 1,
    decide: Callable[[str, int], str] = lambda _id, _attempt: rig.ACK,
    lock_wait_s: float = 30.0,
) -> dict[str, int]:
    """Publishes the interactions to the emulator and pumps them into a Logger process."""
    port = rig.new_port()
    topic = rig.topic(f"{ctx.folder.name}-{time.monotonic_ns()}")
    topic.publish(prediction_logs(items) + feedback(items), copies=copies)
    with rig.logger_process(loop, port, lock_wait_s):
        return topic.pump(rig.url(port), decide)


def redelivery(ctx: Context) -> tuple[Loop, list[Interaction], bool, str]:
    """Every message is delivered again after it was stored (a nack), and some once more after
    their ack deadline expired."""
    loop, items = Loop(ctx.folder), interactions("redelivery", ctx.size, seed=2)
    if not ctx.emulator:
        loop.deliver(prediction_logs(items) * 2 + feedback(items) * 2)
        loop.drain()
        return loop, items, True, "no emulator: redelivered through the handler"
    expired: set[str] = set()

    def decide(message_id: str, attempt: int) -> str:
        if attempt == 1:
            return rig.NACK  # stored, but the ack is lost: delivered again at once
        if attempt == 2 and (message_id in expired or len(expired) < 2):
            expired.add(message_id)
            return rig.EXPIRE  # neither acked nor nacked: back after the ack deadline
        return rig.ACK

    deliveries = _through_logger(ctx, loop, items, decide=decide)
    loop.drain()
    redelivered = sum(1 for n in deliveries.values() if n > 1)
    after_expiry = sum(1 for n in deliveries.values() if n > 2)
    ok = redelivered == len(deliveries) and after_expiry >= 1
    return loop, items, ok, f"{redelivered} messages redelivered, {after_expiry} after ack expiry"


def duplicate_publish(ctx: Context) -> tuple[Loop, list[Interaction], bool, str]:
    """Every message is published twice (a publisher retrying a publish whose ack it lost)."""
    loop, items = Loop(ctx.folder), interactions("duplicate", ctx.size, seed=3)
    if not ctx.emulator:
        loop.deliver(prediction_logs(items) * 2 + feedback(items) * 2)
    else:
        _through_logger(ctx, loop, items, copies=2)
    loop.drain()
    return loop, items, True, ""


def logger_killed_mid_batch(ctx: Context) -> tuple[Loop, list[Interaction], bool, str]:
    """The Logger process is SIGKILLed right after it stored the first message of a batch, and
    restarted a second later: the rest of the batch comes again (the emulator redelivers what
    was never acknowledged; without it, the direct publisher retries)."""
    loop, items = Loop(ctx.folder), interactions("killed", ctx.size, seed=4)
    data = prediction_logs(items) + feedback(items)
    port = rig.new_port()
    killed: list[int] = []
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(rig.logger_process(loop, port))

        def kill_once() -> None:  # SIGKILL: no clean shutdown of anything
            if not killed:
                os.killpg(first.pid, signal.SIGKILL)
                killed.append(first.pid)
                restart = threading.Timer(
                    1.0, stack.enter_context, [rig.logger_process(loop, port)]
                )
                restart.start()

        if ctx.emulator:
            topic = rig.topic(f"killed-{time.monotonic_ns()}")
            topic.publish(data)

            def decide(_message_id: str, _attempt: int) -> str:
                kill_once()  # stored and answered: this one is acknowledged, the rest fail
                return rig.ACK

            topic.pump(rig.url(port), decide)
        else:
            direct = DirectPublisher(PubSubConfig(), {"logs": [rig.url(port)]})
            direct.publish("logs", data[0]).result(timeout=60)
            kill_once()
            for future in [direct.publish("logs", m) for m in data[1:]]:
                future.result(timeout=120)
    loop.drain()
    return loop, items, bool(killed), "the Logger was SIGKILLed mid-batch and restarted"


def warehouse_busy(ctx: Context) -> tuple[Loop, list[Interaction], bool, str]:
    """Another process holds DuckDB's lock (as a full ingest does) while messages arrive, on
    the emulator path and on the direct-delivery path."""
    loop, items = Loop(ctx.folder), interactions("busy", ctx.size, seed=5)
    loop.warehouse.ensure_tables()
    half = len(items) // 2
    port = rig.new_port()
    with (
        rig.logger_process(loop, port, lock_wait_s=0.5),
        _lock_held(loop.warehouse_path, seconds=2),
    ):
        url = rig.url(port)
        direct = DirectPublisher(PubSubConfig(), {"logs": [url]})
        futures = [
            direct.publish("logs", m)
            for m in prediction_logs(items[:half]) + feedback(items[:half])
        ]
        if ctx.emulator:
            topic = rig.topic(f"busy-{time.monotonic_ns()}")
            topic.publish(prediction_logs(items[half:]) + feedback(items[half:]))
            topic.pump(url)
        else:
            futures += [
                direct.publish("logs", m)
                for m in prediction_logs(items[half:]) + feedback(items[half:])
            ]
        for future in futures:
            future.result(timeout=120)
    refused = sum(
        log.read_text(errors="replace").count("is locked by another process")
        for log in loop.state.glob("logger-*.log")
    )
    loop.drain()
    return loop, items, refused > 0, f"{refused} deliveries refused while busy, then retried"


@contextlib.contextmanager
def _lock_held(path: Path, seconds: float):
    code = (
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
        "print('locked', flush=True); time.sleep(float(sys.argv[2]))"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.wait(timeout=seconds + 30)


FAULT_POINTS = ("after_stage", "inside_commit", "after_commit", "after_pointer")


@contextlib.contextmanager
def fault(point: str) -> Iterator[None]:
    """The publish 'dies' at `point` (a failing statement inside the commit transaction rolls
    it back as a killed process would)."""
    real_stage, real_point, real_commit = pointer.stage, pointer.point, DuckDBWarehouse.commit
    real_statements = ledger.commit_statements

    def stage(policy_dir: str, policies_dir: str) -> str:
        _then_crash(real_stage(policy_dir, policies_dir))
        return ""

    def statements(d: ledger.Dialect) -> list[str]:
        return [*real_statements(d), "SELECT error('killed inside the commit')"]

    def commit(self: DuckDBWarehouse, run: TrainingRunRecord) -> bool:
        _then_crash(real_commit(self, run))
        return False

    def point_(policies_dir: str, version: str) -> None:
        real_point(policies_dir, version)
        _then_crash(None)

    targets: dict[str, Any] = {
        "after_stage": mock.patch.object(pointer, "stage", stage),
        "inside_commit": mock.patch.object(ledger, "commit_statements", statements),
        "after_commit": mock.patch.object(DuckDBWarehouse, "commit", commit),
        "after_pointer": mock.patch.object(pointer, "point", point_),
    }
    with targets[point]:
        yield


def _then_crash(_result: object) -> None:
    raise Crash("injected")


def training_killed_after_publish(ctx: Context) -> tuple[Loop, list[Interaction], bool, str]:
    """A run dies at each point of its publish and is run again with the same run id; one more
    dies and is superseded by a new run. The served LinUCB sums must equal an uninterrupted
    run's (checked by the accounting)."""
    loop = Loop(ctx.folder)
    items: list[Interaction] = []
    batch = max(8, ctx.size // (len(FAULT_POINTS) + 1) // 8 * 8)
    notes = []
    for n, point in enumerate((*FAULT_POINTS, "after_pointer")):
        new = interactions(f"publish-{n}", batch, seed=10 + n)
        items += new
        loop.deliver(prediction_logs(new) + feedback(new))
        run_id = f"run-{n}"
        with contextlib.suppress(Crash, duckdb.Error), fault(point):
            loop.retrain(run_id)
            notes.append(f"{point}: no failure")
        if n < len(FAULT_POINTS):
            loop.retrain(run_id)  # the same run again (a retried pipeline task)
    loop.drain("superseding")  # the last crashed run is never retried: a new run goes on
    ok = not notes
    return loop, items, ok, "; ".join(notes)


def batch_limit_inside_one_timestamp(ctx: Context) -> tuple[Loop, list[Interaction], bool, str]:
    """One Generator-style batch shares one timestamp and max_rows cuts inside it."""
    loop, items = Loop(ctx.folder), interactions("one-time", ctx.size, seed=6)
    when = datetime.now(UTC)
    loop.deliver(prediction_logs(items, time=when) + feedback(items, time=when))
    loop.drain(max_rows=max(1, len(items) // 3 + 1))
    runs = len(loop.runs)
    return loop, items, runs >= 3, f"{runs} runs of at most {len(items) // 3 + 1} examples"


def poison_row(ctx: Context) -> tuple[Loop, list[Interaction], bool, str]:
    """Rows no run can train on sit among good ones; later good rows still get trained."""
    loop, items = Loop(ctx.folder), interactions("good", ctx.size, seed=7)
    half = len(items) // 2
    loop.deliver(prediction_logs(items[:half]) + feedback(items[:half]))
    now = datetime.now(UTC)
    bad = [
        PredictionRecord("poison", 0, now, "v", [0.1] * RANK, ACTIONS + 5),
        PredictionRecord("poison", 1, now, "v", [0.1] * (RANK + 2), 1),
        PredictionRecord("poison", 2, now, "v", [0.1, math.nan, 0.1, 0.1, 0.1], 1),
    ]
    loop.warehouse.insert_predictions(bad)  # straight to the table: the Logger would refuse NaN
    loop.deliver(feedback([Interaction("poison", i, [], 0, 1.0) for i in range(3)]))
    loop.retrain("run-1")
    loop.deliver(prediction_logs(items[half:]) + feedback(items[half:]))
    loop.drain()
    reasons = loop.warehouse.query("SELECT reason FROM quarantine ORDER BY instance_index")
    changed = Loop(ctx.folder)
    try:
        with mock.patch("app.chaos.harness.RANK", RANK + 1):
            ingester.ingest(
                changed.warehouse, str(ctx.folder / "x"), "changed", 10, RANK + 1, ACTIONS
            )
        named = False
    except ingester.IngestError as err:
        named = "rank 6" in str(err) and "rank 5" in str(err)
    ok = len(reasons) == 3 and named
    return loop, items, ok, "; ".join(r[0] for r in reasons)


def concurrent_trigger_ticks(ctx: Context) -> tuple[Loop, list[Interaction], bool, str]:
    """Eight ticks at once start one run; a lock left by a failed launch blocks nothing; two
    runs that did start together (as on Vertex) commit once between them."""
    loop, items = Loop(ctx.folder), interactions("ticks", ctx.size, seed=8)
    loop.deliver(prediction_logs(items) + feedback(items))
    state = ctx.folder / "trigger"
    state.mkdir(parents=True, exist_ok=True)
    (state / LOCK_FILE).write_text("")  # a launch that failed before it wrote anything
    sleeper = [sys.executable, "-c", "import time; time.sleep(3)"]
    launcher = LocalLauncher(str(state), sleeper)
    outcomes: list[str] = []
    warehouse = loop.warehouse

    def tick() -> None:
        outcomes.append(decide(warehouse, launcher, 1, RANK, ACTIONS))

    threads = [threading.Thread(target=tick) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    started = sum(1 for o in outcomes if o.startswith("started"))
    # Two runs that started together (as two ticks can on Vertex): both claim, both train,
    # one commits; the other fails and its examples go to the next run.
    conflict = ""
    for run_id in ("twin-a", "twin-b"):
        loop.ingest(run_id)
    for run_id in ("twin-a", "twin-b"):
        loop.train(run_id)
    for run_id in ("twin-a", "twin-b"):
        try:
            loop.deploy(run_id)
        except LedgerConflict as err:
            conflict = str(err)
    loop.drain()
    ok = started == 1 and bool(conflict)
    return loop, items, ok, f"{started} of 8 ticks started a run; twin-b: {conflict or 'committed'}"


SCENARIOS: dict[str, Scenario] = {
    "late_prediction_log": late_prediction_log,
    "late_feedback_after_training": late_feedback_after_training,
    "redelivery": redelivery,
    "duplicate_publish": duplicate_publish,
    "logger_killed_mid_batch": logger_killed_mid_batch,
    "warehouse_busy": warehouse_busy,
    "training_killed_after_publish": training_killed_after_publish,
    "batch_limit_inside_one_timestamp": batch_limit_inside_one_timestamp,
    "poison_row": poison_row,
    "concurrent_trigger_ticks": concurrent_trigger_ticks,
}


def run_ledger_scenario(name: str, ctx: Context) -> Result:
    started = time.monotonic()
    try:
        loop, items, ok, note = SCENARIOS[name](ctx)
        counted = account(loop, items)
    except Exception as err:  # a scenario that breaks is a failed scenario, with its reason
        return Result(name, 0, 0, 0, 0, False, time.monotonic() - started, f"error: {err!r}")
    passed = (
        ok
        and counted.lost == 0
        and counted.duplicated == 0
        and counted.trained_once == counted.interactions
        and counted.statistics_match
    )
    if not counted.statistics_match:
        note = f"{note}; served statistics differ from training on each interaction once"
    return Result(
        name,
        counted.interactions,
        counted.trained_once,
        counted.lost,
        counted.duplicated,
        passed,
        round(time.monotonic() - started, 2),
        note,
    )


def run_trainer_preempted(ctx: Context, loops: int) -> Result:
    started = time.monotonic()
    try:
        return _trainer_preempted(ctx, loops, started)
    except Exception as err:  # a scenario that breaks is a failed scenario, with its reason
        return Result("trainer_preempted", 0, 0, 0, 0, False, time.monotonic() - started, repr(err))


def _trainer_preempted(ctx: Context, loops: int, started: float) -> Result:
    """`python -m app.trainer` killed once it has checkpointed, run again, and compared with an
    uninterrupted run of the same seed: the interactions are the trainer's."""
    folder = ctx.folder
    folder.mkdir(parents=True, exist_ok=True)

    # LinTS: a sampling agent, so a resumed run must also continue its random numbers.
    def command(name: str) -> list[str]:
        return [
            sys.executable, "-m", "app.trainer", "--artifacts-dir", str(folder / name),
            "--training-loops", str(loops), "--batch-size", "50", "--steps-per-loop", "20",
            "--checkpoint-every", str(max(1, loops // 20)), "--rank-k", str(RANK),
            "--num-actions", str(ACTIONS), "--agent", "lints", "--seed", "3",
            "--policy-version", "v-chaos", "--no-progress",
        ]  # fmt: skip

    def env(name: str) -> dict[str, str]:
        return {**os.environ, "AIP_CHECKPOINT_DIR": str(folder / name / "checkpoints")}

    quiet = subprocess.DEVNULL
    subprocess.run(
        command("whole"), env=env("whole"), check=True, timeout=600, stdout=quiet, stderr=quiet
    )
    checkpoints = folder / "preempted" / "checkpoints"
    process = subprocess.Popen(
        command("preempted"), env=env("preempted"), stdout=quiet, stderr=quiet
    )
    written = Checkpoints(str(checkpoints), {})
    while process.poll() is None and written.latest() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    # Mid-run means: the newest checkpoint it left holds fewer loops than it was asked for.
    latest = written.latest()
    done = latest[0] if latest else 0
    checkpointed = 0 < done < loops
    rerun = subprocess.run(
        command("preempted"),
        env=env("preempted"),
        check=True,
        timeout=600,
        capture_output=True,
        text=True,
    )
    resumed_note = f"resumed from the checkpoint after loop {done}"
    checkpointed = checkpointed and resumed_note in rerun.stdout
    from app.policy_store import read_metadata
    from app.predictor.policy import load_policy
    from app.publish import METRICS_FILE

    def outcome(name: str) -> tuple[np.ndarray, list[float], int]:
        state = load_policy(str(folder / name / "policy")).scorer.model.state  # type: ignore[attr-defined]
        metrics = json.loads((folder / name / "policy" / METRICS_FILE).read_text())
        trained = read_metadata(str(folder / name / "policy")).trained_interactions
        return state.cov_matrix, metrics["regret"], trained

    whole_cov, whole_regret, expected = outcome("whole")
    resumed_cov, resumed_regret, got = outcome("preempted")
    same = bool(np.array_equal(whole_cov, resumed_cov)) and whole_regret == resumed_regret
    lost, duplicated = max(0, expected - got), max(0, got - expected)
    passed = checkpointed and same and lost == 0 and duplicated == 0
    note = (
        f"killed after an in-training checkpoint at loop {done} of {loops}, then resumed"
        if checkpointed
        else "no checkpoint was written before the trainer finished: nothing was resumed"
    )
    return Result(
        "trainer_preempted",
        expected,
        expected if same and not duplicated else 0,
        lost,
        duplicated,
        passed,
        round(time.monotonic() - started, 2),
        note,
    )
