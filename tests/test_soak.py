"""The logging soak, short: the predictor under wrk with logging on, the Pub/Sub emulator,
the pull Logger and DuckDB (benchmarks/soak.py). Every prediction a response carried is
stored exactly once; the speed is the benchmark's business, not this test's."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.local import pubsub_emulator
from benchmarks.soak import soak

pytestmark = pytest.mark.skipif(
    not pubsub_emulator.available() or shutil.which("wrk") is None,
    reason="needs the Pub/Sub emulator and wrk",
)


def test_every_served_prediction_is_stored_exactly_once(trained_policy: Path, tmp_path: Path):
    result = soak(str(trained_policy), rank_k=5, state_dir=tmp_path, seconds=3)
    assert result.served > 100 and result.errors == 0
    assert (result.missing, result.duplicates) == (0, 0)
    assert result.stored == result.served + result.unanswered
    assert result.unanswered <= 16  # at most one request in flight per connection at the stop
