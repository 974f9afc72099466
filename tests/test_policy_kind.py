"""Global and per-arm prediction rows share `predictions`: each kind of run trains only on its
own kind's rows, and a warehouse file from before `policy_kind` keeps its rows as global."""

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pytest

from app import messages
from app.schemas import FEEDBACK, GLOBAL, PER_ARM, PREDICTIONS, SLATE, TABLES, duckdb_ddl
from app.warehouse.duckdb_store import DuckDBWarehouse
from app.warehouse.records import FeedbackRecord, PredictionRecord

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
RANK, ACTIONS, CATALOGUE = 2, 4, 200
U = [0.5, -1.0]


def served(request: str, action: int, kind: str | None, reward: float, warehouse) -> None:
    warehouse.insert_predictions(
        [PredictionRecord(request, 0, T0, "v1", U, action, 1.0, policy_kind=kind)]
    )
    warehouse.insert_feedback([FeedbackRecord(request, 0, T0 + timedelta(minutes=1), reward, "t")])


def claimed_ids(warehouse: DuckDBWarehouse, run_id: str) -> list[str]:
    return [e.request_id for page in warehouse.iter_claimed(run_id) for e in page]


def test_each_kind_of_run_trains_only_on_its_own_rows(tmp_path: Path):
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    served("g1", 1, GLOBAL, 4.0, warehouse)
    served("g2", 2, None, 3.0, warehouse)  # NULL: logged before the column, global
    # per-arm catalogue indices that a global policy with 4 arms would take for its own
    served("p1", 1, PER_ARM, 5.0, warehouse)
    served("p2", 2, PER_ARM, 1.0, warehouse)
    served("p3", 150, PER_ARM, 2.0, warehouse)  # outside the global arms: never quarantined
    served("s1", 1, SLATE, 2.0, warehouse)  # a slate policy's row: neither trains on it

    assert warehouse.count_untrained(RANK, ACTIONS) == 2
    assert warehouse.claim("g", 100, RANK, ACTIONS) == 2
    assert claimed_ids(warehouse, "g") == ["g1", "g2"]
    assert warehouse.query("SELECT count(*) FROM quarantine") == [(0,)]
    assert warehouse.count_untrained(RANK, CATALOGUE, policy_kind=PER_ARM) == 3
    assert warehouse.claim("p", 100, RANK, CATALOGUE, policy_kind=PER_ARM) == 3
    assert claimed_ids(warehouse, "p") == ["p1", "p2", "p3"]
    assert warehouse.query("SELECT count(*) FROM quarantine") == [(0,)]

    features = np.random.default_rng(0).normal(size=(CATALOGUE, RANK))
    per_arm = warehouse.claimed_per_arm_statistics("p", features)
    x = {a: np.concatenate([U, np.multiply(U, features[a])]) for a in (1, 2, 150)}
    expected_b = 5.0 * x[1] + 1.0 * x[2] + 2.0 * x[150]
    assert per_arm.num_samples.tolist() == [3]
    np.testing.assert_allclose(per_arm.data_vector[0], expected_b)
    glob = warehouse.claimed_statistics("g", RANK, ACTIONS)
    assert glob.num_samples.tolist() == [0, 1, 1, 0]
    # the statistics filter too: a run's claims of the other kind add nothing
    assert warehouse.claimed_per_arm_statistics("g", features).num_samples.tolist() == [0]
    assert warehouse.claimed_statistics("p", RANK, ACTIONS).num_samples.sum() == 0


def test_an_unknown_policy_kind_is_refused_by_name(tmp_path: Path):
    with pytest.raises(ValueError, match="policy kind must be one of global, per_arm, slate"):
        DuckDBWarehouse(tmp_path / "w.duckdb").claim("r", 1, RANK, ACTIONS, policy_kind="perarm")


def test_a_warehouse_file_from_before_the_column_keeps_its_rows(tmp_path: Path):
    path = tmp_path / "old.duckdb"
    old = dataclasses.replace(
        PREDICTIONS, columns=tuple(c for c in PREDICTIONS.columns if not c.added)
    )
    with duckdb.connect(str(path)) as db:
        db.execute(duckdb_ddl(old))
        db.execute(duckdb_ddl(FEEDBACK))
        for i, action in enumerate([0, 3]):
            db.execute(
                "INSERT INTO predictions (request_id, instance_index, time, policy_version, "
                "observation, action, propensity) VALUES (?, 0, ?, 'v0', ?, ?, 1.0)",
                [f"old{i}", T0, U, action],
            )
            db.execute(
                "INSERT INTO feedback (request_id, instance_index, time, reward, source) "
                "VALUES (?, 0, ?, 4.0, 'old')",
                [f"old{i}", T0],
            )
    warehouse = DuckDBWarehouse(path)
    served("new", 1, PER_ARM, 5.0, warehouse)
    assert warehouse.query("SELECT request_id, policy_kind FROM predictions ORDER BY 1") == [
        ("new", PER_ARM),
        ("old0", None),
        ("old1", None),
    ]
    assert warehouse.claim("g", 100, RANK, ACTIONS) == 2
    assert claimed_ids(warehouse, "g") == ["old0", "old1"]
    # the migrated file has the same columns, in the same order, as a new one
    with duckdb.connect(str(path)) as db:
        for table in TABLES:
            migrated = [r[0] for r in db.execute(f"DESCRIBE {table.name}").fetchall()]
            assert migrated == table.column_names


def test_the_prediction_log_says_which_kind_of_policy_served():
    rows = [{"instance_index": 0, "observation": U, "action": 7, "propensity": None}]
    sent = messages.prediction_log("r", T0, "v", rows, PER_ARM)
    assert [r.policy_kind for r in messages.parse(sent)] == [PER_ARM]
    before = messages.prediction_log("r", T0, "v", rows).replace(b'"policy_kind":"global",', b"")
    assert b"policy_kind" not in before
    assert [r.policy_kind for r in messages.parse(before)] == [None]  # stored NULL: global
    bad = sent.replace(b'"per_arm"', b'"perarm"')
    with pytest.raises(messages.MessageError, match="policy_kind must be one of global"):
        messages.parse(bad)
    slate = [{**rows[0], "slate": [8, 3, 5]}]
    sent = messages.prediction_log("r", T0, "v", slate, PER_ARM)
    assert [r.slate for r in messages.parse(sent)] == [[8, 3, 5]]
    with pytest.raises(messages.MessageError, match=r"predictions\[0\]\.slate must hold"):
        messages.parse(sent.replace(b"[8,3,5]", b"[8,-3,5]"))
