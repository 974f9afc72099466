"""The dev smoke test accepts only a prediction from the deployment it made (issue 8, defect 7)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.config import ConfigError
from app.deployer.smoke import ServedBy, main, problems, settings_from

NEW = "us-central1-docker.pkg.dev/recloop-dev/recloop/predictor@sha256:" + "b" * 64
OLD = "us-central1-docker.pkg.dev/recloop-dev/recloop/predictor@sha256:" + "a" * 64
SUBMITTED = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
PREDICTIONS = [{"action": 3, "policy_version": "v20261123T151000Z"}]


def served(image: str = NEW, aliases=("v20261123t151000z", "default"), minutes: int = 10):
    return ServedBy(image, list(aliases), SUBMITTED + timedelta(minutes=minutes))


def test_a_prediction_from_the_new_deployment_passes():
    assert problems(PREDICTIONS, served(), NEW, SUBMITTED) == []


@pytest.mark.parametrize(
    ("by", "predictions", "why"),
    [
        (served(image=OLD), PREDICTIONS, "not the new"),  # the previous predictor image
        (served(minutes=-60), PREDICTIONS, "before this run"),  # deployed before the run
        (served(aliases=("v20261122t090000z",)), PREDICTIONS, "is not the served model"),
        (served(), [{"action": 3, "policy_version": "v20261122T090000Z"}], "is not the served"),
        (served(), [], "no prediction"),
    ],
)
def test_whatever_was_deployed_before_fails(by: ServedBy, predictions, why: str):
    found = problems(predictions, by, NEW, SUBMITTED)
    assert found and any(why in p for p in found), found


def test_settings_are_the_triggers_environment_with_the_new_image(tmp_path: Path):
    environment = tmp_path / "trigger.json"
    environment.write_text(
        json.dumps(
            {
                "RECLOOP_PROFILE": "dev",
                "RECLOOP__CLOUD__PROJECT_ID": "recloop-dev",
                "RECLOOP__LOOP__VERTEX_ENDPOINT": "projects/1/locations/us-central1/endpoints/7",
                "RECLOOP__CLOUD__SERVING_IMAGE": OLD,
            }
        )
    )
    settings = settings_from(environment, NEW)
    assert settings.profile == "dev" and settings.cloud.project_id == "recloop-dev"
    assert settings.loop.vertex_endpoint == "projects/1/locations/us-central1/endpoints/7"
    assert settings.cloud.serving_image == NEW


def test_an_unreadable_environment_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    bad = tmp_path / "trigger.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not a JSON object"):
        settings_from(bad, NEW)
    args = ["--environment-file", str(tmp_path / "missing.json"), "--serving-image", NEW]
    assert main([*args, "--template", "gs://b/pipelines/c/recloop-startup.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("smoke: ") and len(err.strip().splitlines()) == 1
