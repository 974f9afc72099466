from pathlib import Path

import pytest

from app.config import ConfigError, load_settings


def test_local_profile_defaults():
    s = load_settings(environ={})
    assert s.profile == "local"
    assert s.serving.port == 8080
    assert s.serving.host == "127.0.0.1"
    assert s.data.movielens_dir is None


def test_profiles_differ_where_their_files_say():
    dev = load_settings("dev", environ={})
    prod = load_settings("prod", environ={})
    assert dev.artifacts_dir.startswith("gs://") and prod.artifacts_dir.startswith("gs://")
    assert dev.artifacts_dir != prod.artifacts_dir
    assert (dev.cloud.machine_type, prod.cloud.machine_type) == ("n1-standard-4", "n1-standard-8")


def test_vertex_variables_override_the_profile():
    s = load_settings(
        environ={
            "AIP_HTTP_PORT": "9090",
            "AIP_HEALTH_ROUTE": "/v1/health",
            "AIP_PREDICT_ROUTE": "/v1/predict",
            "AIP_STORAGE_URI": "gs://bucket/policy",
            "AIP_MODEL_DIR": "gs://bucket/model",
            "AIP_CHECKPOINT_DIR": "gs://bucket/ckpt",
            "AIP_TENSORBOARD_LOG_DIR": "gs://bucket/tb",
            "MOVIELENS_DIR": "/data/ml-100k",
        }
    )
    assert s.serving.port == 9090
    assert (s.serving.health_route, s.serving.predict_route) == ("/v1/health", "/v1/predict")
    assert s.serving.storage_uri == "gs://bucket/policy"
    assert (
        s.vertex_job.model_dir,
        s.vertex_job.checkpoint_dir,
        s.vertex_job.tensorboard_log_dir,
    ) == (
        "gs://bucket/model",
        "gs://bucket/ckpt",
        "gs://bucket/tb",
    )
    assert s.data.movielens_dir == "/data/ml-100k"


def test_file_then_environment_layers(tmp_path: Path):
    extra = tmp_path / "mine.toml"
    extra.write_text('artifacts_dir = "/srv/art"\n[serving]\nport = 7000\nmax_body_bytes = 10\n')
    s = load_settings(environ={"RECLOOP_CONFIG": str(extra), "RECLOOP__SERVING__PORT": "7001"})
    assert s.artifacts_dir == "/srv/art"
    assert s.serving.port == 7001  # the environment wins over the file
    assert s.serving.max_body_bytes == 10


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"RECLOOP_PROFILE": "staging"}, "unknown profile 'staging'"),
        ({"AIP_HTTP_PORT": "eighty"}, "serving.port must be int, got 'eighty'"),
        ({"RECLOOP__SERVING__PROT": "1"}, "unknown setting serving.prot"),
        ({"RECLOOP__DATA__DOWNLOAD": "maybe"}, "data.download must be bool"),
        ({"RECLOOP_CONFIG": "/nonexistent/recloop.toml"}, "does not exist"),
    ],
)
def test_bad_configuration_is_named(environ, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_settings(environ=environ)


def test_invalid_toml_is_reported(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[serving\nport = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(environ={"RECLOOP_CONFIG": str(bad)})
