"""The compiled pipelines: their steps, order, parameters and defaults."""

from pathlib import Path

import yaml

from pipelines.compile import compile_all

SAMPLE_DEFAULTS = {
    "bigquery_max_rows": 10000,
    "batch_size": 8,
    "rank_k": 20,
    "num_actions": 20,
    "num_epochs": 5,
    "tikhonov_weight": 0.01,
    "agent_alpha": 10.0,
}


def test_both_pipelines_compile_with_the_sample_parameters(tmp_path: Path):
    startup, retraining = compile_all(tmp_path, image="registry.example/recloop-trainer@sha256:abc")
    specs = {p.stem: yaml.safe_load(p.read_text()) for p in (startup, retraining)}
    for name, spec in specs.items():
        parameters = spec["root"]["inputDefinitions"]["parameters"]
        for key in (
            "project_id",
            "raw_data_path",
            "training_artifacts_dir",
            "bigquery_dataset_id",
            "bigquery_location",
        ):
            assert key in parameters, (name, key)
        for key, value in SAMPLE_DEFAULTS.items():
            assert parameters[key]["defaultValue"] == value, (name, key)
        images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
        assert images == {"registry.example/recloop-trainer@sha256:abc"}
    assert (
        specs["recloop-startup"]["root"]["inputDefinitions"]["parameters"]["driver_steps"][
            "defaultValue"
        ]
        == 3
    )

    def order(spec):
        tasks = spec["root"]["dag"]["tasks"]
        return {name: sorted(t.get("dependentTasks", [])) for name, t in tasks.items()}

    assert order(specs["recloop-startup"]) == {
        "generate": [],
        "ingest": ["generate"],
        "train": ["ingest"],
        "deploy": ["ingest", "train"],
    }
    assert order(specs["recloop-retraining"]) == {
        "ingest": [],
        "train": ["ingest"],
        "deploy": ["ingest", "train"],
    }


def test_no_step_installs_packages_at_run_time(tmp_path: Path):
    startup, _ = compile_all(tmp_path)
    text = startup.read_text()
    assert "pip install" not in text
