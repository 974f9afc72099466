"""The images' contract, tested where no Docker engine runs: each Dockerfile's ENTRYPOINT and
ENV are read and that exact command runs here with the variables Vertex AI would set."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from app.local.processes import free_port, running

ROOT = Path(__file__).resolve().parents[1]
HADOLINT = Path(sys.executable).parent / "hadolint"


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    """(instruction, arguments) of the last stage, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    last_from = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines[last_from:]]


def image_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in stage:
        if instruction == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                env[key] = value
    env.pop("PATH", None)  # the image's venv; here the test's own interpreter plays it
    return env


def image_command(stage: list[tuple[str, str]], instruction: str) -> list[str]:
    """ENTRYPOINT, or HEALTHCHECK's CMD, in exec form; the image's python is the test's."""
    (args,) = [a for i, a in stage if i == instruction]
    if instruction == "HEALTHCHECK":
        args = args.split(" CMD ", 1)[1]
    return [sys.executable if part == "python" else part for part in json.loads(args)]


def test_trainer_image_trains_as_a_vertex_custom_job(movielens_dir: Path, tmp_path: Path):
    stage = final_stage(ROOT / "containers" / "trainer" / "Dockerfile")
    vertex = {  # what Vertex AI sets for a custom-training job
        "AIP_MODEL_DIR": str(tmp_path / "model"),
        "AIP_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
        "AIP_TENSORBOARD_LOG_DIR": str(tmp_path / "logs"),
        "CLOUD_ML_JOB_ID": "123",
    }
    args = [
        "--data-path",
        str(movielens_dir / "u.data"),
        "--artifacts-dir",
        str(tmp_path / "artifacts"),
        "--training-loops",
        "5",
        "--rank-k",
        "5",
        "--num-actions",
        "8",
    ]
    result = subprocess.run(
        image_command(stage, "ENTRYPOINT") + args,
        env={**os.environ, **image_env(stage), **vertex},
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "model" / "saved_model.pb").is_file()
    assert (tmp_path / "checkpoints" / "ckpt-00000005" / "progress.json").is_file()
    assert list((tmp_path / "logs").glob("events.out.tfevents.*"))
    assert json.loads((tmp_path / "model" / "metrics.json").read_text())["interactions"] == 80


def test_predictor_image_serves_as_a_vertex_deployment(trained_policy: Path):
    stage = final_stage(ROOT / "containers" / "predictor" / "Dockerfile")
    env = image_env(stage)
    assert env["RECLOOP__SERVING__HOST"] == "0.0.0.0"  # reachable from outside the container
    port = free_port()
    vertex = {  # what Vertex AI sets for a deployed model
        "AIP_HTTP_PORT": str(port),
        "AIP_HEALTH_ROUTE": "/v1/endpoints/7/deployedModels/9",
        "AIP_PREDICT_ROUTE": "/v1/endpoints/7/deployedModels/9:predict",
        "AIP_STORAGE_URI": str(trained_policy),
    }
    full_env = {**env, **vertex}
    base = f"http://127.0.0.1:{port}"
    with running(image_command(stage, "ENTRYPOINT"), full_env, base + vertex["AIP_HEALTH_ROUTE"]):
        response = httpx.post(
            base + vertex["AIP_PREDICT_ROUTE"], json={"instances": [{"observation": [0.1] * 5}]}
        )
        assert response.status_code == 200
        assert response.json()["predictions"][0]["policy_version"] == "v-test-1"
        healthcheck = image_command(stage, "HEALTHCHECK")
        assert subprocess.run(healthcheck, env={**os.environ, **full_env}).returncode == 0


@pytest.mark.parametrize("image", ["trainer", "predictor"])
def test_images_are_multi_stage_pinned_and_non_root(image: str):
    dockerfile = ROOT / "containers" / image / "Dockerfile"
    text = dockerfile.read_text()
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(froms) == 2 and all(
        re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", f) for f in froms
    )
    assert [a for i, a in final_stage(dockerfile) if i == "USER"] == ["10001"]
    assert "--no-deps tf-keras==2.18.0 tf-agents==0.19.0" in text
    assert ".[dev" not in text and ".[infra" not in text  # runtime dependencies only
    if image == "predictor":
        assert any(i == "HEALTHCHECK" for i, _ in final_stage(dockerfile))


def test_hadolint_passes():
    result = subprocess.run(
        [
            str(HADOLINT),
            str(ROOT / "containers/trainer/Dockerfile"),
            str(ROOT / "containers/predictor/Dockerfile"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
