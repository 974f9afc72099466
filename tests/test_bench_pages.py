"""The benchmark pages' plumbing, without measuring: what `make bench-quick` writes, and
that docs/scaling.md says met or not met from the figure (benchmarks/quick.py, scaling.py)."""

import json
from pathlib import Path

import pytest

from benchmarks import quick, scaling

# The keys issue 11 names for .recloop/bench/quick.json, in its order.
ISSUE_KEYS = [
    "offpolicy_rows_per_s",
    "tfagents_train_rows_per_s",
    "vowpal_wabbit_rows_per_s",
    "logger_rows_per_s",
    "predictor_requests_per_s",
    "per_arm_decision_ms",
]


def test_bench_quick_writes_exactly_the_issues_keys(tmp_path: Path, monkeypatch):
    """quick.measure assembles the figures and quick.save writes them: exactly the issue's
    keys, each the number its benchmark returned (the benchmarks stubbed: they take minutes)."""
    monkeypatch.setattr(quick, "OUTPUT", tmp_path / "quick.json")
    monkeypatch.setattr(quick, "OFFPOLICY_OUTPUT", tmp_path / "offpolicy.json")
    monkeypatch.setattr(quick, "bench_offpolicy", lambda scratch: (1.5e6, "p", {"rows": 9.0}))
    measured = {
        "bench_tfagents_train": 2.0,
        "bench_vowpal_wabbit": 3.0,
        "bench_logger": 4.0,
        "bench_predictor": 5.0,
        "bench_per_arm_decision_one_thread": 6.0,
    }
    for name, value in measured.items():
        monkeypatch.setattr(quick, name, lambda *args, value=value: value)
    quick.save(quick.measure())
    written = json.loads((tmp_path / "quick.json").read_text())
    assert list(written) == ISSUE_KEYS
    assert list(written.values()) == [1.5e6, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert json.loads((tmp_path / "offpolicy.json").read_text()) == {"rows": 9.0}


@pytest.mark.parametrize(("rate", "verdict"), [(1_200_000.0, "met"), (308_060.0, "**not met**")])
def test_the_scaling_page_says_met_from_the_measured_figure(rate, verdict, tmp_path, monkeypatch):
    for name in ("OFFPOLICY_OUTPUT", "LOGGER_OUTPUT", "SOAK_OUTPUT"):
        monkeypatch.setattr(scaling, name, tmp_path / f"{name}.json")  # none: sections say so
    figures = dict.fromkeys(ISSUE_KEYS, 1.0) | {
        "offpolicy_rows_per_s": rate,
        "logger_rows_per_s": 60_000.0,
        "predictor_requests_per_s": 9_000.0,
        "per_arm_decision_ms": 0.1,
    }
    (row,) = [line for line in scaling.render(figures, 14).splitlines() if "off-policy" in line]
    assert row.endswith(f"≥ 1,000,000 rows/s: {verdict} |") and f"{rate:,.0f} rows/s" in row
