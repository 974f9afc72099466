"""`make bench-quick` (a few minutes): the scaling figures of issue 11, each measured here,
written to .recloop/bench/quick.json (exactly the keys of QUICK_KEYS; a breakdown goes to
stdout). The figures are throughputs on whatever the machine gives; docs/scaling.md reads them.
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

RANK, ACTIONS, CATALOGUE = 20, 20, 1682
OFFPOLICY_ROWS = 1_000_000
TFAGENTS_ROWS, TFAGENTS_BATCH = 2_000, 8  # agent.train, batch 8 (the comparison)
VW_ROWS = 20_000
LOGGER_MESSAGES, ROWS_PER_MESSAGE, LOGGER_BATCH = 2_000, 16, 1_000  # a Pub/Sub pull's most
LOGGER_REPEATS = 3  # the median run: one noisy interval on the shared machine cannot decide it
PREDICTOR_SECONDS = 5
OUTPUT = Path(".recloop/bench/quick.json")
OFFPOLICY_OUTPUT = OUTPUT.with_name("offpolicy.json")  # where its seconds go (docs/scaling.md)
LOGGER_OUTPUT = OUTPUT.with_name("logger.json")  # each Logger run: wall, CPU, load average
QUICK_KEYS = (
    "offpolicy_rows_per_s",
    "tfagents_train_rows_per_s",
    "vowpal_wabbit_rows_per_s",
    "logger_rows_per_s",
    "predictor_requests_per_s",
    "per_arm_decision_ms",
)


def logged_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logged interactions: rank-20 contexts, uniformly random actions, linear rewards."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, RANK))
    actions = rng.integers(ACTIONS, size=n)
    theta = rng.normal(size=(ACTIONS, RANK))
    rewards = np.einsum("nk,nk->n", x, theta[actions]) + rng.normal(size=n)
    return x, actions, rewards


def load_warehouse(path: Path, x: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> None:
    """Writes the log straight into DuckDB as two Arrow tables (set-up, not measured)."""
    import pyarrow as pa

    from app.schemas import FEEDBACK, GLOBAL, PREDICTIONS, arrow_schema
    from app.warehouse.duckdb_store import DuckDBWarehouse

    n = len(actions)
    keys = pa.array([f"r{i}" for i in range(n)])
    zero = pa.array(np.zeros(n, dtype=np.int64))
    start = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1e6)
    times = pa.array(start + np.arange(n) * 1000, pa.timestamp("us", tz="UTC"))
    observations = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), RANK)
    predictions = [
        keys,
        zero,
        times,
        pa.array(["v0"] * n),
        observations.cast(pa.list_(pa.float64())),
        pa.array(actions),
        pa.array(np.full(n, 1 / ACTIONS)),
        pa.nulls(n, pa.list_(pa.int64())),
        pa.array([GLOBAL] * n),
        pa.nulls(n, pa.list_(pa.int64())),
    ]
    feedback = [keys, zero, times, pa.array(rewards), pa.array(["bench"] * n)]
    with DuckDBWarehouse(path)._connect() as db:
        for table, arrays in ((PREDICTIONS, predictions), (FEEDBACK, feedback)):
            names = [c.name for c in table.columns if c.default is None]
            batch = pa.Table.from_arrays(arrays, schema=arrow_schema(table, names))
            db.register("batch", batch)
            db.execute(f"INSERT INTO {table.name} ({', '.join(names)}) SELECT * FROM batch")
            db.unregister("batch")


def _cpu_s() -> float:
    """CPU seconds this process used (DuckDB's threads included): on a machine shared with
    other work, the figure that load does not inflate."""
    import resource

    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


class _Timed:
    """A warehouse whose calls are timed by name (where a run's seconds go): wall and CPU."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.seconds: dict[str, float] = {}

    def __getattr__(self, name: str) -> Any:
        call = getattr(self.inner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started, cpu = time.perf_counter(), _cpu_s()
            try:
                return call(*args, **kwargs)
            finally:
                spent = {name: time.perf_counter() - started, f"{name}_cpu": _cpu_s() - cpu}
                for key, value in spent.items():
                    self.seconds[key] = self.seconds.get(key, 0.0) + value

        return timed


def bench_offpolicy(scratch: Path) -> tuple[float, str, dict[str, float]]:
    """Warehouse → published TF-Agents policy → committed, as the re-training pipeline runs
    it on a warm start (app/loop/steps.py: Ingester, Trainer, the Deployer's commit): claim
    and sum in the ledger (one pass over the new rows), the warm start's statistics plus the
    sums into the agent's variables, the policy published like its warm start, the ledger's
    commit. Before the clock, a start-up run (the warm start) is published and committed and
    TensorFlow imported (a process pays that once). Returns rows/s end to end, the policy,
    and the seconds of each phase (OFFPOLICY_OUTPUT)."""
    importing = time.perf_counter()
    import tensorflow  # noqa: F401  (before the clock starts: a process imports it once)

    import_s = time.perf_counter() - importing
    from app import publish
    from app.agents import LINUCB, AgentSpec, create_agent
    from app.loop import ingester, offpolicy
    from app.schemas import PER_ARM
    from app.warehouse.duckdb_store import DuckDBWarehouse
    from app.warehouse.records import TrainingRunRecord

    x, actions, rewards = logged_data(OFFPOLICY_ROWS)
    path = scratch / "offpolicy.duckdb"
    load_warehouse(path, x, actions, rewards)
    spec = AgentSpec(LINUCB, ACTIONS, RANK, alpha=1.0, tikhonov_weight=0.001)
    startup = str(scratch / "startup")
    publish.publish(
        create_agent(spec).policy, startup, publish.bandit_metadata(spec, "v0", [], 0), {}
    )
    DuckDBWarehouse(path).commit(
        TrainingRunRecord("startup", "v0", None, None, 0, RANK, ACTIONS, startup)
    )
    warehouse = _Timed(DuckDBWarehouse(path))
    policy = str(scratch / "policy")
    load = os.getloadavg()[0]
    started, cpu_started = time.perf_counter(), _cpu_s()
    result = ingester.ingest(
        warehouse, str(scratch / "e"), "bench", OFFPOLICY_ROWS, RANK, ACTIONS, ingester.STATISTICS
    )
    ingested, cpu_ingested = time.perf_counter(), _cpu_s()
    offpolicy.train_offline(str(scratch / "e"), policy, spec, 8, result.warm_start, [], "v1")
    published, cpu_published = time.perf_counter(), _cpu_s()
    run = TrainingRunRecord(
        "bench", "v1", result.parent_run_id, None, result.examples, RANK, ACTIONS, policy
    )
    warehouse.commit(run)
    done, cpu_done = time.perf_counter(), _cpu_s()
    if result.examples != OFFPOLICY_ROWS:
        raise RuntimeError(f"claimed {result.examples} of {OFFPOLICY_ROWS} rows")
    if result.warm_start != startup:
        raise RuntimeError(f"warm-started from {result.warm_start!r}, not {startup}")
    # The same claims as per-arm rows (each kind of run reads only its own rows: relabelled
    # outside the clock), summed as a restarted run sums its claims: per-arm sums with the
    # actions as movies.
    with DuckDBWarehouse(path)._connect() as db:
        db.execute(f"UPDATE predictions SET policy_kind = '{PER_ARM}'")
    catalogue = np.random.default_rng(1).normal(size=(ACTIONS, RANK))
    warehouse.claimed_per_arm_statistics("bench", catalogue)
    seconds = warehouse.seconds
    timings = {
        "rows": float(OFFPOLICY_ROWS),
        # one transaction: the new rows read once (join, ledger anti-joins, checks) into a
        # temporary table; quarantine, claim (the keys into run_examples) and the sums read it
        "claim_statistics_s": seconds["claim_statistics"],
        "claim_statistics_cpu_s": seconds["claim_statistics_cpu"],
        "ingest_other_s": ingested - started - seconds["claim_statistics"],  # lookups, files
        "ingest_other_cpu_s": cpu_ingested - cpu_started - seconds["claim_statistics_cpu"],
        # warm start read from its checkpoint, + the sums into the agent, saved like it
        "publish_s": published - ingested,
        "publish_cpu_s": cpu_published - cpu_ingested,
        "commit_s": seconds["commit"],  # the ledger: the keys into trained_examples
        "commit_cpu_s": seconds["commit_cpu"],
        "end_to_end_s": done - started,
        "end_to_end_cpu_s": cpu_done - cpu_started,
        "tensorflow_import_s": import_s,  # fixed, once per process (0 if imported before)
        "per_arm_aggregate_s": seconds["claimed_per_arm_statistics"],  # [u, u ⊙ v]: 2k dims
        "per_arm_aggregate_cpu_s": seconds["claimed_per_arm_statistics_cpu"],
        "load_average_1m": load,
    }
    return OFFPOLICY_ROWS / (done - started), policy, timings


def bench_tfagents_train() -> float:
    """TF-Agents' LinUCB `agent.train` on the same kind of logged rows, batch 8."""
    import tensorflow as tf
    from tf_agents.trajectories import trajectory

    from app.agents import LINUCB, AgentSpec, create_agent

    agent = create_agent(AgentSpec(LINUCB, ACTIONS, RANK, alpha=1.0, tikhonov_weight=0.001))
    x, actions, rewards = logged_data(TFAGENTS_ROWS)
    info = agent.training_data_spec.policy_info
    batches = []
    for start in range(0, TFAGENTS_ROWS, TFAGENTS_BATCH):
        rows = slice(start, start + TFAGENTS_BATCH)
        n = len(actions[rows])
        batches.append(
            trajectory.single_step(
                observation=tf.constant(x[rows][:, None, :]),
                action=tf.constant(actions[rows][:, None], tf.int32),
                policy_info=tf.nest.map_structure(
                    lambda s, n=n: tf.zeros([n, 1, *s.shape], s.dtype), info
                ),
                reward=tf.constant(rewards[rows][:, None], tf.float32),
                discount=tf.zeros([n, 1]),
            )
        )
    train = tf.function(agent.train)  # as TF-Agents' own loops call it
    train(batches[0])  # tracing is not training
    started = time.perf_counter()
    for batch in batches[1:]:
        train(batch)
    return (TFAGENTS_ROWS - TFAGENTS_BATCH) / (time.perf_counter() - started)


def bench_vowpal_wabbit() -> float:
    """Vowpal Wabbit `--cb_explore_adf` learning the same logged rows (cost = −reward,
    the logged propensity), shared × action quadratic features: one linear model per arm."""
    from vowpalwabbit import Workspace

    x, actions, rewards = logged_data(VW_ROWS)
    shared = ["shared |s " + " ".join(f"{i}:{v:.5f}" for i, v in enumerate(row)) for row in x]
    examples = [
        [
            shared[n],
            *(
                (f"0:{-rewards[n]:.5f}:{1 / ACTIONS} " if a == actions[n] else "") + f"|a a{a}"
                for a in range(ACTIONS)
            ),
        ]
        for n in range(VW_ROWS)
    ]
    vw = Workspace("--cb_explore_adf -q sa --epsilon 0.05 --quiet")
    started = time.perf_counter()
    for example in examples:
        vw.learn(example)
    seconds = time.perf_counter() - started
    vw.finish()
    return VW_ROWS / seconds


def bench_logger(scratch: Path) -> float:
    """The Logger's batched handler: prediction logs and feedback of 16 rows per message,
    parsed and written to DuckDB LOGGER_BATCH messages at a time. Rows/s over both tables,
    the median of LOGGER_REPEATS runs; each run's rows per CPU-second and the load average
    go to LOGGER_OUTPUT (on the shared 2-core machine the wall rate is what the others leave)."""
    from app import messages
    from app.functions.logger import handle_batch
    from app.warehouse.duckdb_store import DuckDBWarehouse

    x, actions, rewards = logged_data(LOGGER_MESSAGES * ROWS_PER_MESSAGE)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    events = []
    for m in range(LOGGER_MESSAGES):
        rows = range(m * ROWS_PER_MESSAGE, (m + 1) * ROWS_PER_MESSAGE)
        log = messages.prediction_log(
            f"q{m}",
            now + timedelta(milliseconds=m),
            "v0",
            [
                {
                    "instance_index": i - rows.start,
                    "observation": x[i],
                    "action": int(actions[i]),
                    "propensity": 1 / ACTIONS,
                }
                for i in rows
            ],
        )
        feedback = messages.feedback(
            f"q{m}", [(i - rows.start, float(rewards[i])) for i in rows], "bench", now
        )
        events += [{"message": {"data": base64.b64encode(d).decode()}} for d in (log, feedback)]
    runs = []
    for repeat in range(LOGGER_REPEATS):
        warehouse = DuckDBWarehouse(scratch / f"logger-{repeat}.duckdb")
        handle_batch(events[:2], warehouse)  # imports and table creation are not throughput
        load = os.getloadavg()[0]
        started, cpu = time.perf_counter(), time.process_time()
        stored = 0
        for start in range(0, len(events), LOGGER_BATCH):
            outcome = handle_batch(events[start : start + LOGGER_BATCH], warehouse)
            stored += outcome.predictions + outcome.feedback  # (the warm-up pair again: ignored)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        runs.append(
            {"rows_per_s": stored / wall, "rows_per_cpu_s": stored / cpu, "load_average_1m": load}
        )
        print(
            f"  logger run {repeat + 1}: {stored / wall:,.0f} rows/s wall, "
            f"{stored / cpu:,.0f} rows per CPU-second, load average {load:.1f}",
            flush=True,
        )
    LOGGER_OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    LOGGER_OUTPUT.write_text(json.dumps(runs, indent=2) + "\n")
    return statistics.median(run["rows_per_s"] for run in runs)


def bench_predictor(policy_dir: str) -> float:
    """Single-instance requests/s of `python -m app.predictor` under wrk (16 connections)."""
    from app.local.processes import PYTHON, free_port, running
    from benchmarks.serving import body_of, load

    port = free_port()
    env = {"AIP_STORAGE_URI": policy_dir, "AIP_HTTP_PORT": str(port)}
    base = f"http://127.0.0.1:{port}"
    with running([PYTHON, "-m", "app.predictor"], env, base + "/health"):
        load(base + "/predict", body_of(1, RANK), "warm-up", 1, duration=1)
        result = load(base + "/predict", body_of(1, RANK), "predictor", 1, PREDICTOR_SECONDS)
    if result.errors:
        raise RuntimeError(f"the predictor answered {result.errors} errors under load")
    return result.requests_per_second


def bench_per_arm_decision() -> float:
    """Median ms of one full-catalogue per-arm LinUCB decision in process (1,682 movies,
    rank 20, joint features [u, u ⊙ v]): the predictor's own per-arm path (PerArmPolicy.choose,
    its one matmul, the argmax) on a policy whose statistics come from 256 logged rows."""
    from benchmarks.serving import synthetic_per_arm_policy

    rng = np.random.default_rng(0)
    policy = synthetic_per_arm_policy(CATALOGUE, RANK)
    samples = []
    for _ in range(500):
        context = rng.normal(size=(1, RANK))
        started = time.perf_counter()
        policy.choose(context, [None], [1], rng)
        samples.append((time.perf_counter() - started) * 1e3)
    return statistics.median(samples)


def bench_per_arm_decision_one_thread() -> float:
    """bench_per_arm_decision in a process whose BLAS uses one thread, as a serving process
    deciding one request at a time should: on a loaded 2-core machine a multi-threaded BLAS
    spins for its other thread and the same decision takes ~30 ms instead of ~0.5 ms."""
    import os
    import subprocess

    from app.local.processes import PYTHON

    code = "from benchmarks.quick import bench_per_arm_decision; print(bench_per_arm_decision())"
    out = subprocess.run(
        [PYTHON, "-c", code],
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out.strip().splitlines()[-1])


def timed(label: str, measure: Callable[[], float]) -> float:
    started = time.perf_counter()
    value = measure()
    print(f"{label}: {value:,.3f} ({time.perf_counter() - started:.1f} s)", flush=True)
    return value


def measure() -> dict[str, float]:
    """Every figure of QUICK_KEYS, measured now (make bench-quick, and make bench beside
    its other figures)."""
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        offpolicy_rate, policy, timings = bench_offpolicy(scratch)
        print(f"offpolicy_rows_per_s: {offpolicy_rate:,.0f} over {OFFPOLICY_ROWS:,} rows {timings}")
        OFFPOLICY_OUTPUT.parent.mkdir(parents=True, exist_ok=True)
        OFFPOLICY_OUTPUT.write_text(json.dumps(timings, indent=2) + "\n")
        figures = {
            "offpolicy_rows_per_s": offpolicy_rate,
            "tfagents_train_rows_per_s": timed("tfagents_train_rows_per_s", bench_tfagents_train),
            "vowpal_wabbit_rows_per_s": timed("vowpal_wabbit_rows_per_s", bench_vowpal_wabbit),
            "logger_rows_per_s": timed("logger_rows_per_s", lambda: bench_logger(scratch)),
            "predictor_requests_per_s": timed(
                "predictor_requests_per_s", lambda: bench_predictor(policy)
            ),
            "per_arm_decision_ms": timed("per_arm_decision_ms", bench_per_arm_decision_one_thread),
        }
    assert tuple(figures) == QUICK_KEYS
    return {k: float(v) for k, v in figures.items()}


def save(figures: dict[str, float]) -> None:
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {OUTPUT}")


def main() -> int:
    save(measure())
    from benchmarks import scaling

    return scaling.main()


if __name__ == "__main__":
    sys.exit(main())
