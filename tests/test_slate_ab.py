"""The A/B of the saved slate policy against per-arm LinUCB on simulated live traffic: logged
to the warehouse, read back as the canary and `recloop ab report` read live traffic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from app.cli import app as cli
from app.slate.ab import BANDIT_VERSION, main
from app.trainer.flags import parse_args
from tests.synthetic import write_movielens


@pytest.fixture
def trained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = write_movielens(tmp_path / "ml300", movies=300)
    monkeypatch.setenv("MOVIELENS_DIR", str(data))
    monkeypatch.setenv("RECLOOP__WAREHOUSE__DUCKDB_PATH", str(tmp_path / "w.duckdb"))
    monkeypatch.setenv("RECLOOP__ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("RECLOOP__STATE_DIR", str(tmp_path / "state"))
    from app.config import load_settings
    from app.trainer.run import run

    args = parse_args(["--agent=actor_critic", "--training-loops=2", "--policy-version=v-slate"])
    return Path(run(args, load_settings()).policy_dir)


def test_both_sides_are_logged_and_compared_like_live_traffic(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    from app.warehouse.duckdb_store import DuckDBWarehouse

    assert main(["--episodes=64", "--share=0.5"]) == 0
    printed = capsys.readouterr().out
    assert "v-slate" in printed and f"{BANDIT_VERSION}-0" in printed
    assert printed.splitlines()[-2].split(":")[0] in {"promoted", "rolled_back"}

    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    with warehouse._connect() as db:
        rows = db.execute(
            "SELECT p.policy_version, COUNT(*), AVG(f.reward) FROM predictions p "
            "JOIN feedback f USING (request_id, instance_index) GROUP BY 1 ORDER BY 1"
        ).fetchall()
    (slate, slate_n, slate_mean), (bandit, bandit_n, bandit_mean) = sorted(
        rows, key=lambda r: r[0] != "v-slate"
    )
    assert (slate, bandit) == ("v-slate", f"{BANDIT_VERSION}-0")
    assert (slate_n + bandit_n) == 12 * 10  # 12 synthetic test users × 10 lists each
    assert slate_n % 10 == 0 and bandit_n % 10 == 0 and slate_n and bandit_n
    assert -1 <= slate_mean <= 1 and -1 <= bandit_mean <= 1
    assert not np.isclose(slate_mean, bandit_mean)

    report = CliRunner().invoke(cli, ["ab", "report"])
    assert report.exit_code == 0, report.output
    assert "v-slate" in report.output and f"{BANDIT_VERSION}-0" in report.output


def test_a_policy_that_is_not_the_actor_critic_is_one_line(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    assert main(["--policy", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ab: ") and err.count("\n") == 1
