"""docs/benchmarks.md and the PNG beside it."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from benchmarks import reference, soak
from benchmarks.serving import CONNECTIONS, DURATION_S, PER_ARM, REPEATS, LoadResult
from benchmarks.soak import SoakResult
from benchmarks.synth import TARGET_S as SYNTH_TARGET_S
from benchmarks.training import LAST, LOOPS, REFERENCE_SEEDS, SEEDS, TrainingBench

TARGET_SPEEDUP = 100
TARGET_SINGLE_RPS = 3_000
TARGET_BATCH_PPS = 100_000
TARGET_P99_MS = 10.0
TARGET_OFFPOLICY_ROWS_PER_S = 1_000_000
TARGET_LOGGER_ROWS_PER_S = 50_000
TARGET_PER_ARM_RPS = 2_000
TARGET_PER_ARM_DECISION_MS = 1.0


def machine() -> str:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kib = int(meminfo.read_text().split()[1])
        memory = f", {kib / 2**20:.0f} GiB RAM"
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {os.cpu_count()} cores{memory}; {system}; Python {platform.python_version()}"


def _scaling_section(figures: dict[str, float]) -> list[str]:
    """Issue 11's figures, side by side (benchmarks/quick.py; docs/scaling.md)."""
    offpolicy = figures["offpolicy_rows_per_s"]
    return [
        "## Scaling (issue 11)",
        "",
        "Off-policy training on the same logged rows (rank 20, 20 arms):",
        "",
        "| | rows/s | |",
        "|---|---:|---|",
        f"| recloop, DuckDB warehouse → published, committed policy (claim and sums in one "
        f"pass, saved like its warm start, the ledger's commit) | {offpolicy:,.0f} | "
        f"≥ {TARGET_OFFPOLICY_ROWS_PER_S:,}: "
        f"{mark(offpolicy >= TARGET_OFFPOLICY_ROWS_PER_S)} |",
        f"| TF-Agents LinUCB `agent.train`, batch 8 | "
        f"{figures['tfagents_train_rows_per_s']:,.0f} | |",
        f"| Vowpal Wabbit `--cb_explore_adf` | {figures['vowpal_wabbit_rows_per_s']:,.0f} | |",
        f"| Logger, batched writes | {figures['logger_rows_per_s']:,.0f} | "
        f"≥ {TARGET_LOGGER_ROWS_PER_S:,}: "
        f"{mark(figures['logger_rows_per_s'] >= TARGET_LOGGER_ROWS_PER_S)} |",
        "",
        f"Per-arm LinUCB decision over 1,682 movies in process (the predictor's "
        f"PerArmPolicy.choose, one BLAS thread): {figures['per_arm_decision_ms']:.2f} ms, "
        f"≤ {TARGET_PER_ARM_DECISION_MS:g} ms: "
        f"{mark(figures['per_arm_decision_ms'] <= TARGET_PER_ARM_DECISION_MS)}. "
        "Over HTTP: the Targets table. The off-policy figure times a warm-started re-training "
        "as the pipeline runs it, claim + statistics, publish and the ledger's commit; where "
        "its seconds go, costs and replicas: docs/scaling.md.",
        "",
    ]


def _soak_section(result: SoakResult) -> list[str]:
    """The logging soak (benchmarks/soak.py): exactly once, and the Logger's lag."""
    return [
        "## Logging soak (issue 11)",
        "",
        f"The predictor at full rate under wrk ({CONNECTIONS} connections, one instance per "
        f"request) for {result.seconds} s with logging on: prediction logs through the Pub/Sub "
        "emulator to the pull Logger (`python -m app.functions.logger_pull`) into DuckDB, all "
        "on this machine.",
        "",
        "| | |",
        "|---|---:|",
        f"| requests/s with logging on | {result.requests_per_s:,.0f} |",
        f"| predictions served (ids in wrk's responses) | {result.served:,} |",
        f"| missing from the warehouse | {result.missing} |",
        f"| stored more than once | {result.duplicates} |",
        f"| stored, response never read (in flight when wrk stopped) | {result.unanswered} |",
        f"| Logger lag, serve → row stored: max | {result.max_lag_s:.2f} s |",
        f"| Logger lag: p99 | {result.p99_lag_s:.2f} s |",
        f"| max lag per {soak.WINDOW_S} s of serving | "
        + ", ".join(f"{v:.2f}" for v in result.max_lag_by_window_s)
        + " s |",
        f"| last row stored after the load stopped | {result.drain_s:.1f} s |",
        "",
        f"Every served prediction stored exactly once: {mark(result.exactly_once)}. "
        f"Lag bounded (no row waited more than {soak.LAG_BOUND_S:g} s): "
        f"{mark(result.lag_bounded)}.",
        "",
    ]


def mark(ok: bool) -> str:
    return "met" if ok else "**not met**"


def write(
    docs: Path,
    training: TrainingBench,
    serving: list[LoadResult],
    synth_seconds: float,
    scaling: dict[str, float],
    logging_soak: SoakResult,
) -> Path:
    docs.mkdir(parents=True, exist_ok=True)
    plot = _plot(docs / "benchmarks.png", training, serving)
    ours = [r for r in serving if r.name.startswith("recloop") and r.name != PER_ARM]
    single = next(r for r in ours if r.instances_per_request == 1)
    batch = next(r for r in ours if r.instances_per_request > 1)
    per_arm = [r for r in serving if r.name == PER_ARM]
    ours_regret, ref_regret = (
        np.mean(training.ours_last_regret),
        np.mean(training.reference_last_regret),
    )
    rows = [
        (
            f"training ≥ {TARGET_SPEEDUP}× TF-Agents' reference loop",
            f"{training.speedup:,.0f}×",
            training.speedup >= TARGET_SPEEDUP,
        ),
        (
            f"mean regret over the last {LAST} of {LOOPS} loops no worse than the reference's",
            f"{ours_regret:.3f} vs {ref_regret:.3f} (noise ±{training.regret_margin:.3f})",
            training.regret_ok,
        ),
        (
            f"≥ {TARGET_SINGLE_RPS:,} req/s, one instance per request",
            f"{single.requests_per_second:,.0f} req/s",
            single.requests_per_second >= TARGET_SINGLE_RPS,
        ),
        (
            f"≥ {TARGET_BATCH_PPS:,} predictions/s in batches of {batch.instances_per_request}",
            f"{batch.predictions_per_second:,.0f}/s",
            batch.predictions_per_second >= TARGET_BATCH_PPS,
        ),
        (
            f"p99 ≤ {TARGET_P99_MS:.0f} ms, one instance per request",
            f"{single.p99_ms:.2f} ms",
            single.p99_ms <= TARGET_P99_MS,
        ),
        (
            f"p99 ≤ {TARGET_P99_MS:.0f} ms, batches of {batch.instances_per_request}",
            f"{batch.p99_ms:.2f} ms",
            batch.p99_ms <= TARGET_P99_MS,
        ),
        *[
            row
            for r in per_arm
            for row in (
                (
                    f"per-arm, 1,682 movies: ≥ {TARGET_PER_ARM_RPS:,} req/s",
                    f"{r.requests_per_second:,.0f} req/s",
                    r.requests_per_second >= TARGET_PER_ARM_RPS,
                ),
                (
                    f"per-arm, 1,682 movies: p99 ≤ {TARGET_P99_MS:.0f} ms",
                    f"{r.p99_ms:.2f} ms",
                    r.p99_ms <= TARGET_P99_MS,
                ),
            )
        ],
        (
            f"synth of all stacks (dev and prod) < {SYNTH_TARGET_S:.0f} s",
            f"{synth_seconds:.1f} s",
            synth_seconds < SYNTH_TARGET_S,
        ),
    ]
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        f"Machine: {machine()}.",
        "Both sides of every comparison ran in the same run on the same machine.",
        "",
        f"![regret per loop and serving throughput]({plot.name})",
        "",
        "## Targets",
        "",
        "| target | measured | |",
        "|---|---|---|",
        *[f"| {target} | {measured} | {mark(ok)} |" for target, measured, ok in rows],
        "",
        "In process a batch of 100 takes about 0.2 ms (profiled in session 3: JSON parsing and",
        "conversion to numpy ~0.10 ms, of which orjson about half; the LinUCB choice ~0.06 ms;",
        "the response ~0.01 ms). The rest of its latency over HTTP is the server's and wrk's",
        "share of the same two cores, and with 16 connections on one worker, queueing.",
        "",
        *_scaling_section(scaling),
        *_soak_section(logging_soak),
        "## Training",
        "",
        f"train_eval_movielens constants: batch {reference.BATCH_SIZE}, "
        f"{reference.STEPS_PER_LOOP} steps per loop, rank {reference.RANK_K}, "
        f"{reference.NUM_ACTIONS} movies, LinUCB alpha {reference.AGENT_ALPHA:g}, "
        f"tikhonov {reference.TIKHONOV_WEIGHT:g}, MovieLens 100K.",
        "",
        "| | interactions/s | regret, last 50 of 300 loops (per seed) |",
        "|---|---|---|",
        f"| recloop `app.trainer` (numpy LinUCB, {len(SEEDS)} seeds) | {training.ours_rate:,.0f} | "
        + ", ".join(f"{v:.3f}" for v in training.ours_last_regret)
        + " |",
        "| recloop, train_eval_movielens' full 20,000 loops | "
        f"{training.ours_full_schedule_rate:,.0f} "
        f"({training.ours_full_schedule_seconds:.1f} s in all) | |",
        "| TF-Agents reference (DynamicStepDriver + `agent.train`, "
        f"{len(REFERENCE_SEEDS)} seeds) | "
        f"{training.reference_rate:,.0f} | "
        + ", ".join(f"{v:.3f}" for v in training.reference_last_regret)
        + " |",
        "",
        "The speed-up compares the full-schedule rate with the reference's rate. At rank 20",
        "with 20 movies the factorisation is exact, so rewards are the users' ratings and regret",
        'moves in whole-star steps; differences between seeds are sampling noise. "No worse"',
        "means recloop's mean is not above the reference's by more than two standard errors of",
        "the difference (the noise shown).",
        "",
        "TF-Agents' LinUCB policy solves `(A + λI) x = b` with float32 conjugate gradients.",
        "With λ = 0.001 and few samples per arm that system is badly conditioned and the",
        "solution drifts (found while writing `tests/test_linear_parity.py`: an estimated reward",
        "of 15.3 where the exact value is 9.7). recloop computes the same quantities exactly in",
        "float64, so early choices can differ; with a well-conditioned system the two choose",
        "identically, step by step (`test_step_by_step_training_matches_tf_agents`).",
        "",
        "## Serving",
        "",
        f"wrk, {CONNECTIONS} connections, {DURATION_S} s per run; recloop's rows are the median of "
        f"{REPEATS} runs. On the same machine as the",
        "server (the load generator takes a core). The policy is the LinUCB policy trained above",
        f"({reference.NUM_ACTIONS} movies, rank {reference.RANK_K}).",
        "",
        "| server | instances/request | requests/s | predictions/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {r.name} | {r.instances_per_request} | {r.requests_per_second:,.0f} | "
            f"{r.predictions_per_second:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} |"
            for r in serving
        ],
        "",
        "## Infrastructure",
        "",
        f"`python infra/main.py dev prod` (six stacks, function archive included): "
        f"{synth_seconds:.1f} s.",
        "",
        "Reproduce: `make bench` (needs `wrk`: `apt-get install wrk`).",
        "",
    ]
    path = docs / "benchmarks.md"
    path.write_text("\n".join(lines))
    return path


def _plot(path: Path, training: TrainingBench, serving: list[LoadResult]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    window = 10
    for curve, label in (
        (training.ours_curve, "recloop (mean of seeds)"),
        (training.reference_curve, "TF-Agents reference"),
    ):
        smooth = np.convolve(curve, np.ones(window) / window, mode="valid")
        left.plot(np.arange(window - 1, len(curve)), smooth, label=label)
    left.set_xlabel("training loop")
    left.set_ylabel(f"regret ({window}-loop moving mean)")
    left.set_title("LinUCB on MovieLens, train_eval_movielens constants")
    left.legend()
    left.grid(alpha=0.3)
    labels = [f"{r.name.split(' (')[0]}\n{r.instances_per_request}/request" for r in serving]
    bars = right.bar(
        labels,
        [r.predictions_per_second for r in serving],
        color=[
            "C2" if r.name == PER_ARM else "C0" if r.name.startswith("recloop") else "C1"
            for r in serving
        ],
    )
    right.bar_label(
        bars,
        labels=[f"{r.predictions_per_second:,.0f}/s\np99 {r.p99_ms:.1f} ms" for r in serving],
        fontsize=8,
    )
    right.set_yscale("log")
    right.set_ylabel("predictions per second (log)")
    right.set_title(f"serving, {CONNECTIONS} connections")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
