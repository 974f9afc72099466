"""The promotion gate between Trainer and Deployer, on real local parts (DuckDB, policy
folders, the pipeline steps as kfp.local runs them)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from app import movielens
from app.config import GateConfig
from app.deployer import pointer
from app.environment import MovieLensBandit, factorize
from app.evaluation import gate, ope
from app.loop import evaluator, generator, steps
from app.loop.parameters import PipelineParameters
from app.paths import join
from app.warehouse.duckdb_store import DuckDBWarehouse

RANK, ACTIONS = 5, 10


@dataclasses.dataclass
class Runs:
    root: Path
    warehouse: DuckDBWarehouse
    env: MovieLensBandit

    @property
    def policies(self) -> str:
        return join(str(self.root / "artifacts"), steps.POLICIES)

    def log(self, steps_: int, seed: int) -> None:
        """Interactions served uniformly at random (propensity 1/ACTIONS), with rewards."""
        self.env.rng = np.random.default_rng(seed)
        generator.generate(self.env, self.warehouse, steps_, seed)

    def run(self, run_id: str, **switches) -> tuple[str, str]:
        """Ingester → Trainer → Evaluator → Deployer; returns (decision, served version)."""
        p = PipelineParameters(
            training_artifacts_dir=str(self.root / "artifacts"),
            batch_size=16,
            rank_k=RANK,
            num_actions=ACTIONS,
            serving_exploration="epsilon_greedy",
            serving_epsilon=0.2,
            **switches,
        )
        folder = self.root / run_id
        examples, policy, evaluation = (str(folder / n) for n in ("e", "p", "d"))
        steps.run_ingester(output_dir=examples, parameters=p, run_id=run_id)
        steps.run_trainer(examples_dir=examples, policy_dir=policy, parameters=p)
        decision = steps.run_evaluator(
            policy_dir=policy, examples_dir=examples, output_dir=evaluation, parameters=p
        )
        served = steps.run_deployer(
            policy_dir=policy, examples_dir=examples, parameters=p, decision=decision
        )
        return decision, served


@pytest.fixture
def runs(tmp_path: Path, movielens_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Runs:
    return make_runs(tmp_path, movielens_dir, monkeypatch)


def make_runs(tmp_path: Path, movielens_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Runs:
    monkeypatch.setenv("MOVIELENS_DIR", str(movielens_dir))
    monkeypatch.setenv("RECLOOP__WAREHOUSE__DUCKDB_PATH", str(tmp_path / "w.duckdb"))
    monkeypatch.setenv("RECLOOP__ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    ratings = movielens.load_ratings_matrix(movielens_dir / "u.data")
    env = MovieLensBandit(factorize(ratings, RANK, ACTIONS), batch_size=16, seed=0)
    return Runs(tmp_path, DuckDBWarehouse(tmp_path / "w.duckdb"), env)


def test_the_gate_blocks_a_corrupted_candidate_and_promotes_a_good_one(runs: Runs):
    runs.log(40, seed=1)
    assert runs.run("r1") == (gate.PROMOTED, "v-r1")  # nothing served yet

    runs.log(40, seed=2)
    decision, served = runs.run("r2", gate_corrupt_rewards=True)
    assert (decision, served) == (gate.BLOCKED, "v-r1")
    assert pointer.current_version(runs.policies) == "v-r1"  # the serving policy stays
    assert runs.warehouse.find_run("r2") is None  # nothing committed: examples stay
    assert runs.warehouse.count_untrained(RANK, ACTIONS) == 640

    (first, blocked) = runs.warehouse.promotions()
    assert (first.run_id, first.decision, first.serving_version) == ("r1", "promoted", "")
    assert (blocked.candidate_version, blocked.serving_version) == ("v-r2", "v-r1")
    assert blocked.difference_low < -blocked.margin and blocked.rows == 640
    assert blocked.ci_low < blocked.dr < blocked.ci_high
    assert "lower bound" in blocked.reason
    recorded = json.loads((runs.root / "r2" / "d" / evaluator.DECISION_FILE).read_text())
    assert recorded["decision"] == "blocked" and recorded["dr"] == pytest.approx(blocked.dr)

    decision, served = runs.run("r3")
    assert (decision, served) == (gate.PROMOTED, "v-r3")
    assert pointer.current_version(runs.policies) == "v-r3"
    promoted = runs.warehouse.promotions()[-1]
    assert promoted.difference_low >= -promoted.margin


def logged(n: int = 400, arms: int = 4, seed: int = 0) -> ope.Logged:
    rng = np.random.default_rng(seed)
    return ope.Logged(
        rng.normal(size=(n, 2)), rng.integers(arms, size=n), rng.normal(3, 1, n), np.full(n, 0.25)
    )


def test_decision_rule_is_the_paired_lower_bound_against_the_margin():
    data = logged()
    same = np.full((400, 4), 0.25)
    rewards_by_arm = np.array([data.rewards[data.actions == a].mean() for a in range(4)])
    worst = np.zeros((400, 4))
    worst[:, int(np.argmin(rewards_by_arm))] = 1.0
    now = datetime.now(UTC)
    config = GateConfig(margin=0.05, confidence=0.95)

    equal = gate.decide("r", "c", "s", data, gate.Candidates(same, same), config, now)
    assert equal.decision == gate.PROMOTED and equal.difference == pytest.approx(0.0)
    worse = gate.decide("r", "c", "s", data, gate.Candidates(worst, same), config, now)
    assert worse.decision == gate.BLOCKED
    # A margin wider than the gap lets the same candidate through.
    lenient = dataclasses.replace(config, margin=-worse.difference_low + 0.01)
    let_through = gate.decide("r", "c", "s", data, gate.Candidates(worst, same), lenient, now)
    assert let_through.decision == gate.PROMOTED
    assert gate.decide("r", "c", "s", None, None, config, now).decision == gate.BLOCKED
    greedy = ope.Logged(data.contexts, data.actions, data.rewards, np.ones(400))
    unevaluated = gate.decide("r", "c", "s", greedy, gate.Candidates(worst, same), config, now)
    assert unevaluated.decision == gate.PROMOTED and "greedy serving" in unevaluated.reason
    # The demo switch lets a candidate through undecided (the canary's job then): the record
    # does not say the gate promoted it. It is still evaluated, for the record (the demo's
    # report shows the numbers): the same numbers as the gate's, which would have blocked it.
    skip = dataclasses.replace(config, skip=True, canary_share=30)
    skipped = gate.decide("r", "c", "s", data, gate.Candidates(worst, same), skip, now)
    assert (skipped.stage, skipped.decision, skipped.estimator) == (
        gate.SKIPPED,
        gate.PROMOTED,
        "dr",
    )
    assert skipped.reason.startswith("gate skipped") and "30% canary" in skipped.reason
    assert "but not decided on" in skipped.reason
    assert (skipped.dr, skipped.difference_low) == (worse.dr, worse.difference_low)
    assert (skipped.ci_low, skipped.ci_high) == (worse.ci_low, worse.ci_high)
    unevaluated_skip = gate.decide("r", "c", "s", None, None, skip, now)
    assert "nothing estimated" in unevaluated_skip.reason and unevaluated_skip.estimator == ""
    assert (unevaluated_skip.ips, unevaluated_skip.dr) == (None, None)
    # Nothing serves yet: promoted, with the candidate's own estimates when there are logs.
    first = gate.decide("r", "c", "", data, gate.Candidates(worst, None), config, now)
    assert first.decision == gate.PROMOTED and first.reason.startswith("nothing serves yet")
    assert first.dr == worse.dr and first.ci_low < first.dr < first.ci_high
    assert (first.serving_value, first.difference_low) == (None, None)
    assert gate.decide("r", "c", "", None, None, config, now).decision == gate.PROMOTED


def test_the_cli_shows_every_decision_with_its_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from typer.testing import CliRunner

    from app.cli import app

    monkeypatch.setenv("RECLOOP__WAREHOUSE__DUCKDB_PATH", str(tmp_path / "w.duckdb"))
    data = logged()
    worst = np.zeros((400, 4))
    worst[:, 0] = 1.0
    decided = gate.decide(
        "run-7",
        "v-run-7",
        "v-run-6",
        data,
        gate.Candidates(worst, np.full((400, 4), 0.25)),
        GateConfig(margin=0.0),
        datetime(2026, 11, 23, 12, tzinfo=UTC),
    )
    DuckDBWarehouse(tmp_path / "w.duckdb").record_promotion(decided)
    skip = GateConfig(skip=True, canary_share=30)
    later = datetime(2026, 11, 23, 13, tzinfo=UTC)
    skipped = gate.decide("run-8", "v-run-8", "v-run-6", data, None, skip, later)
    DuckDBWarehouse(tmp_path / "w.duckdb").record_promotion(skipped)
    result = CliRunner().invoke(app, ["promotions"])
    assert result.exit_code == 0, result.output
    line = result.output.splitlines()[1]
    assert "v-run-7" in line and "v-run-6" in line and decided.decision in line
    assert f"{decided.dr:.3f}" in line and f"{decided.ci_low:.3f}" in line
    # A skipped gate reads as such: its own stage, no numbers, the reason says so.
    stage, rest = result.output.splitlines()[2].split()[2], result.output.splitlines()[2]
    assert stage == gate.SKIPPED and "gate skipped" in rest and "30% canary" in rest
    assert f"{decided.dr:.3f}" not in rest


def test_the_promotions_table_keeps_its_columns_with_real_version_names():
    """Versions are named after runs (v-recloop-retraining-<time>, 46 characters): every
    column still starts where its header does."""
    from app.cli_reports import promotions_table

    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    long = "v-recloop-retraining-2026-11-23-18-53-39-137726"
    rows = [
        gate.decide(
            "r1", "v-recloop-startup-2026-11-23-18-52-57-247816", "", None, None, GateConfig(), now
        ),
        gate.decide(
            "r2",
            long,
            "v-recloop-startup-2026-11-23-18-52-57-247816",
            logged(),
            gate.Candidates(np.full((400, 4), 0.25), np.full((400, 4), 0.25)),
            GateConfig(),
            now,
        ),
    ]
    header, *lines = promotions_table(rows).splitlines()
    for column in ("serving", "decision", "rows"):
        at = header.index(column)
        for line, row in zip(lines, rows, strict=True):
            value = {"serving": row.serving_version or "(none)", "decision": row.decision}
            if column == "rows":
                assert line[: at + 4].endswith(f"{row.rows:>4}"), (column, line)
            else:
                assert line[at:].startswith(value[column]), (column, line)
