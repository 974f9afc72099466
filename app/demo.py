"""`make demo`: the whole closed loop on this machine.

Starts the Pub/Sub emulator, the Simulator, Logger and Trigger functions under
functions-framework and the predictor; runs the start-up pipeline with kfp.local; then runs
cycles of scheduler ticks — simulate → log → re-train → evaluate → deploy — and shows, per
cycle, the reward of what was served against the random policy's. Serving explores
(ε-greedy), so every candidate is judged off-policy by the gate before it serves; one
re-training, clearly labelled, learns from corrupted rewards (the demo switch
gate.corrupt_rewards) and the gate blocks it. Writes .recloop/demo/report.json (with every
promotion decision and its numbers) and a PNG beside it; keeps the DuckDB warehouse in
.recloop/demo/.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.live import Live
from rich.table import Table

from app import movielens
from app.config import Settings, env_name, load_settings
from app.environment import Factorization, factorize
from app.functions.trigger import LocalLauncher
from app.local import pubsub_emulator
from app.local.stack import DUCKDB_PATH, LocalStack, local_stack
from app.warehouse.duckdb_store import DuckDBWarehouse
from app.warehouse.records import PromotionRecord

CYCLES = 6
USERS_PER_TICK = 512  # the gate's data per re-training: fewer rows left good candidates blocked
WAIT_S = 180
EPSILON = 0.2  # served exploration: every logged propensity is known (≥ ε / num_actions)
# Stars a candidate may be worse than the serving policy (gate and canary). Sized to the
# paired DR lower bound's measured spread on good candidates at the demo's 512 to 1,024 rows,
# ε = 0.2, 20 arms: down to −0.128, against −4.5 and below for the corrupted ones; at 0.1, 4
# of 5 recorded runs blocked a good candidate (docs/safe-promotion.md §5).
GATE_MARGIN = 0.25
# Demo switches by the cycle whose re-training they change (written to the switches file,
# the RECLOOP_CONFIG of every process): a candidate trained on corrupted rewards that the gate
# blocks, and one that skips the gate and goes to a canary, which rolls it back.
SWITCHES = {
    2: ("corrupt_rewards = true",),
    4: ("corrupt_rewards = true", "skip = true", "canary_share = 30"),
}
LABELS = {2: "corrupted rewards", 4: "corrupted rewards, skips the gate"}


@dataclass(frozen=True)
class Cycle:
    cycle: int
    policy_version: str
    training_examples: int
    mean_reward: float
    mean_regret: float
    served: int


@dataclass(frozen=True)
class Promotion:
    """One entry of report.json's "promotions" (exact keys of issue 10)."""

    cycle: int  # the cycle after which the candidate was trained (0: the start-up run)
    candidate_version: str
    serving_version: str
    estimates: dict[str, float | None]
    ci: list[float | None]
    decision: str
    reason: str


def promotion_of(cycle: int, row: PromotionRecord) -> Promotion:
    """One decision as the demo shows it (a canary's estimates are null: it decides on online
    reward, and its ci is the candidate's online interval)."""

    def number(value: float | None) -> float | None:
        return None if value is None else float(value)

    return Promotion(
        cycle,
        row.candidate_version,
        row.serving_version,
        {"ips": number(row.ips), "snips": number(row.snips), "dr": number(row.dr)},
        [number(row.ci_low), number(row.ci_high)],
        row.decision,
        row.reason,
    )


def report_entries(promotions: list[Promotion]) -> list[dict[str, Any]]:
    """report.json's "promotions": one entry per candidate, with its final decision (a
    candidate that went to a canary — the one let through by gate.skip — ends as the canary
    decided), the estimates and interval of its off-policy evaluation (the gate's, also run
    when the gate is skipped), and every stage's reason in order
    (tests/test_demo.py::test_the_report_lists_each_candidate_with_its_numbers_and_final_decision)."""
    by_candidate: dict[str, list[Promotion]] = {}
    for p in promotions:
        by_candidate.setdefault(p.candidate_version, []).append(p)
    entries = []
    for taken in by_candidate.values():
        evaluated = next((p for p in taken if p.estimates["dr"] is not None), taken[0])
        entry = dataclasses.replace(
            taken[0],
            estimates=evaluated.estimates,
            ci=evaluated.ci,
            decision=taken[-1].decision,
            reason=" → ".join(p.reason for p in taken),
        )
        entries.append(asdict(entry))
    return entries


@contextlib.contextmanager
def doing(console: Console, what: str) -> Iterator[None]:
    """A spinner saying `what` on a terminal; elsewhere (a pipe, CI's log), where rich shows
    no spinner, the line itself, so that no step is silent (tests/test_demo.py)."""
    if not console.is_terminal:
        console.print(what)
    with console.status(what):
        yield


@contextlib.contextmanager
def live_table(console: Console, table: Table) -> Iterator[Live]:
    """rich's Live, ending its line elsewhere than on a terminal too: there it prints the
    table once, at the end, without a newline, and the next line ("stopping every process…")
    was joined to the table's bottom border
    (tests/test_demo.py::test_the_live_table_ends_its_line_where_no_terminal_redraws_it)."""
    with Live(table, console=console, refresh_per_second=4) as live:
        yield live
    if not console.is_terminal:
        console.line()


def main(cycles: int = CYCLES) -> int:
    # A TERM (`timeout`, CI cancelling, `kill`) stops every process it started, as Ctrl-C does
    # (before: the demo died at once and left the emulator and the predictor running;
    # tests/test_demo.py::test_terminate_stops_the_processes_the_demo_started).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    warnings.filterwarnings("ignore", category=FutureWarning, module="google")
    console = Console()
    console.print(
        "[bold]recloop demo[/bold]: the closed loop on this machine — start the Pub/Sub "
        "emulator, the functions and the predictor, run the start-up pipeline, then "
        f"{cycles} cycles of simulate → log → re-train → evaluate (the gate) → deploy."
    )
    settings = load_settings()
    loop = dataclasses.replace(
        settings.loop, simulated_users=USERS_PER_TICK, min_new_examples=USERS_PER_TICK
    )
    serving = dataclasses.replace(settings.serving, exploration="epsilon_greedy", epsilon=EPSILON)
    settings = dataclasses.replace(settings, loop=loop, serving=serving)
    state = Path(settings.state_dir) / "demo"
    if not pubsub_emulator.available():
        console.print(
            "[yellow]The Pub/Sub emulator is not installed (apt-get install "
            "google-cloud-cli-pubsub-emulator): the functions get their CloudEvents over HTTP "
            "directly instead."
        )
    shutil.rmtree(state, ignore_errors=True)  # the demo's own folder: every run starts afresh
    state.mkdir(parents=True)
    switches = state / "switches.toml"
    _switch(switches)
    console.print("loading MovieLens 100K and its rank-k factorisation (the simulator's truth)…")
    files = movielens.locate(
        None, settings.data.movielens_dir, settings.data.cache_dir, settings.data.download
    )
    truth = factorize(
        movielens.load_ratings_matrix(files.ratings),
        settings.loop.rank_k,
        settings.loop.num_actions,
    )
    random_reward = float(truth.approx_ratings.mean())
    started = time.monotonic()
    with doing(console, "starting the Pub/Sub emulator, the functions and the predictor…"):
        stack = local_stack(state, settings, config_file=switches)
        running = stack.__enter__()
    console.print(f"stack up: predictor {running.predictor_url}, logs in {state / 'logs'}")
    try:
        with doing(console, "start-up pipeline (kfp.local): generate → ingest → train → deploy…"):
            from pipelines.run import STARTUP, run_local

            run_local(STARTUP, load_settings(), log_path=state / "logs" / "startup-pipeline.log")
            _wait_for_version(running, None)
        console.print("start-up pipeline done: the first policy serves")
        rows, promotions = _cycles(console, running, settings, truth, random_reward, cycles)
    finally:
        with doing(console, "stopping every process…"):
            stack.__exit__(*sys.exc_info())
    report = _report(state, rows, promotions, random_reward, time.monotonic() - started)
    console.print(f"report: {report} (and {report.with_suffix('.png').name} beside it)")
    improved = rows[-1].mean_reward - random_reward
    console.print(
        f"served reward went from {rows[0].mean_reward:.2f} to {rows[-1].mean_reward:.2f} "
        f"stars; a random policy earns {random_reward:.2f} ({improved:+.2f})"
    )
    for line in summary(promotions):
        console.print(line)
    return 0


def summary(promotions: list[Promotion]) -> list[str]:
    """The closing lines: one per candidate with its final decision, as report.json lists
    them (before, one per stage: the candidate that skipped the gate read "promoted: gate
    skipped … no decision", and its canary's rollback came under the next cycle;
    tests/test_demo.py::test_the_closing_lines_are_the_reports_entries)."""
    return [
        f"cycle {e['cycle']}: {e['candidate_version']} {e['decision']}: {e['reason']}"
        for e in report_entries(promotions)
    ]


def _switch(path: Path, lines: tuple[str, ...] = ()) -> None:
    """The demo switches the next re-training reads (RECLOOP_CONFIG of every process); a
    canary is judged at its first look, after 100 rewarded interactions of the candidate."""
    gate = [f"margin = {GATE_MARGIN}", "canary_look_every = 100", "canary_max_looks = 1"]
    path.write_text("\n".join(["[gate]", *gate, *lines]) + "\n")


def _cycles(
    console: Console,
    stack: LocalStack,
    settings: Settings,
    truth: Factorization,
    random_reward: float,
    cycles: int,
) -> tuple[list[Cycle], list[Promotion]]:
    warehouse = DuckDBWarehouse(stack.env[env_name(DUCKDB_PATH)])
    promotions = [promotion_of(0, r) for r in warehouse.promotions()]
    optimal = {
        _key(u): r
        for u, r in zip(truth.user_features, truth.approx_ratings.max(axis=1), strict=True)
    }
    rows: list[Cycle] = []
    table = _table(rows, promotions, random_reward)
    with live_table(console, table) as live:
        for number in range(1, cycles + 1):
            version = _health(stack)["policy_version"]
            since = datetime.now(UTC)
            stack.tick(settings.pubsub.simulate_topic)
            served = _wait_for_examples(warehouse, since, settings.loop.simulated_users)
            rewards = np.array([r for _, r, _ in served])
            regrets = np.array([optimal[_key(np.array(o))] - r for o, r, _ in served])
            rows.append(
                Cycle(
                    number,
                    version,
                    _trained_on(warehouse, version),
                    float(rewards.mean()),
                    float(regrets.mean()),
                    len(served),
                )
            )
            live.update(_table(rows, promotions, random_reward))
            say = live.console.print  # a line per step too: Live redraws only on a terminal
            say(
                f"cycle {number}: {len(served)} rewarded recommendations of {version}, "
                f"{rows[-1].mean_reward:.2f} stars (random {random_reward:.2f})"
            )
            if number < cycles:
                _switch(stack.state_dir / "switches.toml", SWITCHES.get(number, ()))
                label = f" ({LABELS[number]})" if number in LABELS else ""
                say(f"cycle {number}: re-training{label}: ingest → train → gate → deploy…")
                stack.tick(settings.pubsub.retrain_topic)
                row = _wait_for_decision(warehouse, len(promotions))
                promotions.append(promotion_of(number, row))
                if row.stage == "canary":  # judged on this tick; then the re-training
                    say(f"cycle {number}: {_decision_cell(promotions[-1], promotions)}")
                    row = _wait_for_decision(warehouse, len(promotions))
                    promotions.append(promotion_of(number, row))
                say(f"cycle {number}: {_decision_cell(promotions[-1], promotions)}")
                live.update(_table(rows, promotions, random_reward))
                canary_opened = "canary_share = 30" in SWITCHES.get(number, ())
                if canary_opened:  # the next cycle's traffic must reach the canary
                    _wait_for_canary(stack, row.candidate_version)
                elif row.decision == "promoted":
                    _wait_for_version(stack, version)
                _wait_for_pipeline_end(stack)  # else the next tick finds it running
                _switch(stack.state_dir / "switches.toml")
    return rows, promotions


def _wait_for_pipeline_end(stack: LocalStack) -> None:
    launcher = LocalLauncher(str(stack.state_dir))
    deadline = time.monotonic() + WAIT_S
    while launcher.running():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the re-training did not end within {WAIT_S}s")
        time.sleep(0.5)


def _wait_for_decision(warehouse: DuckDBWarehouse, decided: int) -> PromotionRecord:
    """The gate's decision on the re-training just started (the first one after `decided`)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        found = warehouse.promotions()
        if len(found) > decided:
            return found[decided]
        time.sleep(0.5)
    raise TimeoutError(f"the re-training took no promotion decision within {WAIT_S}s")


def _key(vector: np.ndarray) -> tuple[float, ...]:
    return tuple(np.round(vector, 5).tolist())


def _health(stack: LocalStack) -> dict[str, Any]:
    return dict(httpx.get(stack.health_url, timeout=5).json())


def _wait_for_version(stack: LocalStack, old: str | None) -> str:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            health = _health(stack)
        except httpx.TransportError:
            health = {}
        if health.get("policy_version") not in (None, old):
            return health["policy_version"]
        time.sleep(0.5)
    raise TimeoutError(
        f"no new policy was deployed within {WAIT_S}s (logs: {stack.state_dir / 'logs'})"
    )


def _wait_for_canary(stack: LocalStack, candidate: str) -> None:
    """Until the predictor serves the candidate to its share of requests (it reloads within
    about a second; traffic sent before that never reaches the canary)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if _health(stack).get("canary_version") == candidate:
                return
        time.sleep(0.5)
    raise TimeoutError(
        f"the predictor did not serve canary {candidate} within {WAIT_S}s "
        f"(logs: {stack.state_dir / 'logs'})"
    )


def _wait_for_examples(warehouse: DuckDBWarehouse, since: datetime, expected: int) -> list[tuple]:
    """The cycle's served predictions that got their reward: (observation, reward, version)."""
    sql = f"""
        SELECT p.observation, f.reward, p.policy_version
        FROM predictions p JOIN feedback f USING (request_id, instance_index)
        WHERE p.time >= TIMESTAMPTZ '{since.isoformat()}' AND f.source = 'simulator'"""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        rows = warehouse.query(sql)
        if len(rows) >= expected:
            return rows
        time.sleep(0.5)
    raise TimeoutError(
        f"only {len(rows)} of {expected} rewarded predictions arrived within {WAIT_S}s"
    )


def _trained_on(warehouse: DuckDBWarehouse, version: str) -> int:
    sql = f"""SELECT coalesce(sum(examples), 0) FROM training_runs
              WHERE time <= (SELECT time FROM training_runs WHERE policy_version = '{version}')"""
    return int(warehouse.query(sql)[0][0])


def _table(rows: list[Cycle], promotions: list[Promotion], random_reward: float) -> Table:
    table = Table(title=f"recloop closed loop — a random policy earns {random_reward:.2f} stars")
    decided: dict[int, list[Promotion]] = {}
    for p in promotions:
        decided.setdefault(p.cycle, []).append(p)
    for column in (
        "cycle",
        "policy version",
        "trained on",
        "served",
        "mean reward",
        "vs random",
        "mean regret",
        "next candidate (gate)",
    ):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            str(r.cycle),
            r.policy_version,
            f"{r.training_examples:,}",
            str(r.served),
            f"{r.mean_reward:.3f}",
            f"{r.mean_reward - random_reward:+.3f}",
            f"{r.mean_regret:.3f}",
            "; ".join(_decision_cell(p, promotions) for p in decided.get(r.cycle, [])),
        )
    return table


def _is_canary(p: Promotion) -> bool:
    return p.reason.startswith("online")


def _decision_cell(p: Promotion, promotions: list[Promotion]) -> str:
    """The decision, labelled with the demo switch its candidate was trained under (a canary
    is judged a cycle after its candidate was trained)."""
    switched = {q.candidate_version: LABELS[q.cycle] for q in promotions if q.cycle in LABELS}
    label = switched.get(p.candidate_version, "")
    if _is_canary(p):
        return f"canary{f' ({label})' if label else ''}: {p.decision}"
    if p.reason.startswith("gate skipped"):
        return f"{label or 'gate skipped'} → canary"
    dr = p.estimates["dr"]
    numbers = f" (DR {dr:.2f})" if dr is not None else ""
    return f"{label + ': ' if label else ''}{p.decision}{numbers}"


def _report(
    state: Path,
    rows: list[Cycle],
    promotions: list[Promotion],
    random_reward: float,
    seconds: float,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = state / "report.json"
    path.write_text(
        json.dumps(
            {
                "random_policy_mean_reward": random_reward,
                "seconds": seconds,
                "cycles": [asdict(r) for r in rows],
                "promotions": report_entries(promotions),
            },
            indent=2,
        )
    )
    cycles = [r.cycle for r in rows]
    fig, axis = plt.subplots(figsize=(9, 5.5))
    axis.plot(
        cycles, [r.mean_reward for r in rows], "o-", label="mean reward of served recommendations"
    )
    axis.plot(
        cycles, [r.mean_regret for r in rows], "s-", label="mean regret against the best movie"
    )
    axis.axhline(random_reward, color="grey", linestyle="--", label="random policy's mean reward")
    colours = {"promoted": "tab:green", "blocked": "tab:red", "rolled_back": "tab:orange"}
    decided: dict[int, list[Promotion]] = {}
    for p in promotions:
        if p.cycle:
            decided.setdefault(p.cycle, []).append(p)
    for cycle, taken in decided.items():
        for k, p in enumerate(taken):  # decided between this cycle and the next, side by side
            where = cycle + 0.5 + 0.15 * (k - (len(taken) - 1) / 2)
            colour = "tab:purple" if p.reason.startswith("gate skipped") else None
            axis.axvline(where, color=colour or colours.get(p.decision, "black"), alpha=0.5)
            axis.text(
                where,
                random_reward,
                _decision_cell(p, promotions),
                rotation=90,
                va="bottom",
                ha="right",
                fontsize=7,
            )
    axis.set_xlabel("cycle (simulate → log → re-train → gate → deploy); lines: gate decisions")
    axis.set_ylabel("stars")
    axis.set_xticks(cycles)
    axis.set_title("recloop closed loop on MovieLens 100K")
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=8)
    axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path.with_suffix(".png"), dpi=100)
    plt.close(fig)
    return path


if __name__ == "__main__":
    sys.exit(main())
