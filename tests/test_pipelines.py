"""The compiled pipelines: their steps, order, parameters and defaults."""

import dataclasses
from pathlib import Path

import yaml

from app.config import LoopConfig
from app.hyperparameters import DEFAULTS
from app.loop.parameters import PipelineParameters
from app.trainer.flags import TrainingArgs, parse_args
from pipelines.compile import compile_all

SAMPLE_DEFAULTS = {
    "bigquery_max_rows": 10000,
    "batch_size": DEFAULTS.batch_size,
    "rank_k": DEFAULTS.rank_k,
    "num_actions": DEFAULTS.num_actions,
    "num_epochs": 5,
    "tikhonov_weight": DEFAULTS.tikhonov_weight,
    "agent_alpha": DEFAULTS.agent_alpha,
}


def test_hyperparameter_defaults_have_one_source():
    """Trainer flags, loop configuration and pipeline parameters agree with app.hyperparameters
    (before: 10/0.001, 1/1 and 10/0.01); the loop keeps the values it learns with."""
    flags = dataclasses.asdict(parse_args([]))
    for name, value in dataclasses.asdict(DEFAULTS).items():
        assert flags[name] == getattr(TrainingArgs(), name) == value, name
        assert getattr(PipelineParameters(), name) == value, name
        if hasattr(LoopConfig, name):
            assert getattr(LoopConfig(), name) == value, name
    assert (DEFAULTS.agent_alpha, DEFAULTS.tikhonov_weight) == (1.0, 1.0)


def test_pipeline_signatures_are_the_declared_parameters(tmp_path: Path):
    startup, retraining = compile_all(tmp_path)
    declared = {f.name: f.default for f in dataclasses.fields(PipelineParameters)}
    for path, expected in ((startup, declared), (retraining, declared.keys() - {"driver_steps"})):
        parameters = yaml.safe_load(path.read_text())["root"]["inputDefinitions"]["parameters"]
        assert set(parameters) == set(expected), path.stem
        for name in parameters:
            assert parameters[name].get("defaultValue", "") == declared[name], (path.stem, name)


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
        "evaluate": ["ingest", "train"],
        "deploy": ["evaluate", "ingest", "train"],
    }
    # The gate (issue 10): the Deployer runs only after the Evaluator's decision.
    assert order(specs["recloop-retraining"]) == {
        "ingest": [],
        "train": ["ingest"],
        "evaluate": ["ingest", "train"],
        "deploy": ["evaluate", "ingest", "train"],
    }


def test_no_step_installs_packages_at_run_time(tmp_path: Path):
    startup, _ = compile_all(tmp_path)
    text = startup.read_text()
    assert "pip install" not in text


def test_the_gate_and_deploy_steps_both_get_the_skip_switch_and_the_canary_share(tmp_path: Path):
    """A step rebuilds its settings from the parameters it takes; one it does not take falls
    back to its default and overrides the profile. The Evaluator words a skipped gate's record
    by the canary share, and the Deployer marks a canary whose gate was skipped: each needs
    both (before: the demo's skipped gate said "serves all traffic unjudged" beside a 30%
    canary, and the canary's decision did not say the gate was skipped)."""
    startup, _ = compile_all(tmp_path)
    components = yaml.safe_load(startup.read_text())["components"]
    for step in ("comp-evaluate", "comp-deploy"):
        taken = components[step]["inputDefinitions"]["parameters"]
        assert {"gate_skip", "gate_canary_share"} <= set(taken), step
