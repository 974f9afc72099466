"""`make chaos` in a smaller form: every fault scenario against the real local parts, and the
report written exactly as issue 9 specifies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from app.chaos.__main__ import NAMES, REPORT_KEYS, run_all, write_report
from app.chaos.scenarios import Result

REQUIRED = {
    "late_prediction_log",
    "late_feedback_after_training",
    "redelivery",
    "duplicate_publish",
    "logger_killed_mid_batch",
    "warehouse_busy",
    "training_killed_after_publish",
    "batch_limit_inside_one_timestamp",
    "poison_row",
    "concurrent_trigger_ticks",
    "trainer_preempted",
}


@pytest.fixture(scope="module")
def results(movielens_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOVIELENS_DIR", str(movielens_dir))
        folder = tmp_path_factory.mktemp("chaos")
        done = run_all(folder / "scenarios", 16, 40, console=Console(quiet=True))
        write_report(folder / "report.json", done)
        report = json.loads((folder / "report.json").read_text())
    assert [tuple(s) for s in report["scenarios"]] == [REPORT_KEYS] * len(NAMES)
    assert {s["name"] for s in report["scenarios"]} == REQUIRED
    return {r.name: r for r in done}


@pytest.mark.parametrize("name", NAMES)
def test_scenario_trains_every_interaction_exactly_once(results: dict[str, Result], name: str):
    result = results[name]
    assert result.interactions > 0, result.note
    assert (result.lost, result.duplicated) == (0, 0), result.note
    assert result.trained_once == result.interactions, result.note
    assert result.passed, result.note
