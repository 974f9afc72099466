"""`make rehearse` in the suite: every cloud component, run as deployed, closes the loop —
on the stacks this session synthesized once (tests/infra/conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.local import pubsub_emulator
from app.rehearsal import runner

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not pubsub_emulator.available(), reason="needs the Pub/Sub emulator")
def test_rehearse_closes_the_loop(stacks_dir: Path, movielens_dir: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECLOOP", "PUBSUB_EMULATOR"))}
    env |= {"MOVIELENS_DIR": str(movielens_dir), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [
            *(sys.executable, "-m", "app.rehearsal"),
            *("--work-dir", str(tmp_path / "work"), "--stacks", str(stacks_dir)),
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = {
        line.split()[0]: line
        for line in done.stdout.splitlines()
        if line.split()[:1] and line.split()[0] in runner.COMPONENTS
    }
    assert sorted(lines) == sorted(runner.COMPONENTS), done.stdout + done.stderr[-3000:]
    broken = [line for line in lines.values() if " ok: " not in line]
    assert not broken, "\n".join(broken)
    assert done.returncode == 0
    assert "CreatePipelineJob of gs://recloop-dev-artifacts/pipelines/" in lines["trigger"]
    # The Trigger function (from its source archive) looked for an open canary first.
    assert "no canary open (gs://recloop-dev-artifacts/policies/CANARY)" in lines["trigger"]
    requests = [json.loads(r) for r in (tmp_path / "work" / "requests.jsonl").open()]
    # The Logger's rows went by the Storage Write API, as its own account, defaults asked for.
    appends = [r for r in requests if r["api"] == "bigquery-write"]
    assert {r["caller"] for r in appends} == {
        "recloop-dev-logger@recloop-dev.iam.gserviceaccount.com"
    }
    assert {r["body"]["missing_values"] for r in appends} == {"DEFAULT_VALUE"}
    uploads = [r for r in requests if r["path"].endswith("/models:upload")]
    env_names = {e["name"] for e in uploads[0]["body"]["model"]["containerSpec"]["env"]}
    assert "RECLOOP_PROFILE" in env_names
