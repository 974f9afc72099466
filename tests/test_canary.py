"""The canary: Vertex traffic split and undeploy of the loser (asserted on the wire), online
reward by policy version from the warehouse, and the sequential decision."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app import objects, wiring
from app.config import Settings, load_settings
from app.deployer import vertex
from app.evaluation import canary
from app.evaluation.canary import RewardStats
from app.evaluation.gate import CANARY, PROMOTED, ROLLED_BACK
from app.loop.parameters import PipelineParameters
from app.policy_store import METADATA_FILE
from app.rehearsal.fakes import FakeVertex
from app.warehouse.duckdb_store import DuckDBWarehouse
from app.warehouse.records import FeedbackRecord, PredictionRecord, TrainingRunRecord
from infra import config as infra_config
from tests.test_gate import Runs, make_runs
from tests.test_vertex_requests import trigger_environment

warnings.filterwarnings("ignore", category=FutureWarning)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("RECLOOP"):
            monkeypatch.delenv(name)


def canary_on(fake: FakeVertex, share: int):
    settings = PipelineParameters.from_settings(
        load_settings(environ=trigger_environment("prod", fake.add_endpoint("77", ("old-1",))))
    ).settings()
    fake.add_model("recloop-policy")
    with fake.install():
        vertex.deploy("gs://recloop-prod-artifacts/policies/v2", "v2", settings, share=share)
    return settings


def test_a_canary_gets_its_share_and_the_serving_model_stays():
    fake = FakeVertex(project="recloop-prod")
    canary_on(fake, 10)
    (deploy,) = fake.sent("EndpointService/DeployModel")
    assert dict(deploy.traffic_split) == {"0": 10, "old-1": 90}
    assert not fake.sent("EndpointService/UndeployModel")


def test_rollback_undeploys_the_candidate_and_gives_its_traffic_back():
    fake = FakeVertex(project="recloop-prod")
    settings = canary_on(fake, 10)
    (endpoint,) = fake.endpoints.values()
    (candidate,) = [d.id for d in endpoint.deployed_models if d.id != "old-1"]
    with fake.install():
        vertex.roll_back("v2", settings)
    (undeploy,) = fake.sent("EndpointService/UndeployModel")
    assert undeploy.deployed_model_id == candidate
    assert dict(undeploy.traffic_split) == {"old-1": 100}
    assert [d.id for d in endpoint.deployed_models] == ["old-1"]


def test_promotion_undeploys_the_serving_model_and_moves_all_traffic():
    fake = FakeVertex(project="recloop-prod")
    settings = canary_on(fake, 10)
    with fake.install():
        vertex.promote("v2", settings)
    (undeploy,) = fake.sent("EndpointService/UndeployModel")
    assert undeploy.deployed_model_id == "old-1"
    (survivor,) = dict(undeploy.traffic_split).items()
    assert survivor[0] != "old-1" and survivor[1] == 100


def test_a_canary_share_outside_1_to_100_is_refused():
    fake = FakeVertex(project="recloop-prod")
    with pytest.raises(ValueError, match=r"1\.\.100 percent"):
        canary_on(fake, 0)
    assert fake.requests == []


def test_online_reward_by_version_comes_from_the_warehouse(tmp_path: Path):
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    start = datetime(2026, 11, 23, 12, tzinfo=UTC)
    rewards = {"v1": [4.0, 5.0, 3.0], "v2": [2.0, 2.0, 5.0, 3.0]}
    before = PredictionRecord("old", 0, start - timedelta(hours=1), "v1", [0.0], 0)
    predictions = [before]
    feedback = [FeedbackRecord("old", 0, start, 1.0, "simulator")]
    for version, values in rewards.items():
        for i, reward in enumerate(values):
            predictions.append(PredictionRecord(version, i, start, version, [0.0], 0, 0.5))
            feedback.append(FeedbackRecord(version, i, start, reward, "simulator"))
    warehouse.insert_predictions(predictions)
    warehouse.insert_feedback(feedback)
    stats = {s.version: s for s in warehouse.rewards_by_version(start)}
    assert (stats["v1"].n, stats["v1"].mean) == (3, pytest.approx(4.0))  # the older one excluded
    assert stats["v2"].variance == pytest.approx(2.0)


def stats(version: str, n: int, mean: float, sd: float = 1.0) -> RewardStats:
    return RewardStats(version, n, mean, sd**2)


def test_the_sequential_decision():
    serving = stats("old", 2000, 3.5)
    assert canary.judge(stats("c", 2000, 3.5), serving, 0.1, 0.95, 1, 5).decision == PROMOTED
    assert canary.judge(stats("c", 2000, 2.5), serving, 0.1, 0.95, 1, 5).decision == ROLLED_BACK
    undecided = canary.judge(stats("c", 40, 3.4), serving, 0.1, 0.95, 1, 5)
    assert undecided.decision == canary.CONTINUE
    assert canary.judge(stats("c", 40, 3.4), serving, 0.1, 0.95, 5, 5).decision == ROLLED_BACK
    assert canary.judge(stats("c", 1, 5.0), serving, 0.1, 0.95, 1, 5).decision == canary.CONTINUE


def test_rollback_by_hand_returns_to_the_version_the_current_one_replaced(
    tmp_path: Path, monkeypatch
):
    from typer.testing import CliRunner

    from app.cli import app
    from app.config import GateConfig
    from app.deployer import pointer
    from app.evaluation import gate

    monkeypatch.setenv("RECLOOP__ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("RECLOOP__WAREHOUSE__DUCKDB_PATH", str(tmp_path / "w.duckdb"))
    policies = tmp_path / "artifacts" / "policies"
    for version in ("v1", "v2"):
        (policies / version).mkdir(parents=True)
    pointer.point(str(policies), "v2")
    runner = CliRunner()
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    warehouse.record_promotion(gate.decide("r2", "v2", "v1", None, None, GateConfig(skip=True)))
    result = runner.invoke(app, ["rollback"])
    assert result.exit_code == 0, result.output
    assert "serving v1" in result.output
    assert pointer.current_version(str(policies)) == "v1"
    last = warehouse.promotions()[-1]
    assert (last.stage, last.decision, last.candidate_version, last.serving_version) == (
        "rollback",
        ROLLED_BACK,
        "v2",
        "v1",
    )


def test_ab_report_prints_and_plots_reward_by_version(tmp_path: Path, monkeypatch):
    from typer.testing import CliRunner

    from app.cli import app

    monkeypatch.setenv("RECLOOP__WAREHOUSE__DUCKDB_PATH", str(tmp_path / "w.duckdb"))
    now = datetime.now(UTC)
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    warehouse.insert_predictions(
        [PredictionRecord(f"r{i}", 0, now, f"v{i % 2}", [0.0], 0, 0.5) for i in range(6)]
    )
    warehouse.insert_feedback(
        [FeedbackRecord(f"r{i}", 0, now, float(i), "simulator") for i in range(6)]
    )
    plot = tmp_path / "ab.png"
    result = CliRunner().invoke(app, ["ab", "report", "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1].split()[:3] == ["v0", "3", "2.000"]  # rewards 0, 2, 4
    assert lines[2].split()[:3] == ["v1", "3", "3.000"]  # rewards 1, 3, 5
    assert plot.stat().st_size > 0


def online(warehouse: DuckDBWarehouse, version: str, rewards: list[float]) -> None:
    """Rewarded interactions served by `version`, now."""
    now = datetime.now(UTC)
    ids = [f"{version}-{i}-{now.timestamp()}" for i in range(len(rewards))]
    warehouse.insert_predictions([PredictionRecord(r, 0, now, version, [0.0], 0, 0.5) for r in ids])
    warehouse.insert_feedback(
        [FeedbackRecord(r, 0, now, x, "simulator") for r, x in zip(ids, rewards, strict=True)]
    )


@pytest.fixture
def runs(tmp_path: Path, movielens_dir: Path, monkeypatch) -> Runs:
    return make_runs(tmp_path, movielens_dir, monkeypatch)


def test_the_canary_rolls_back_a_loser_and_promotes_a_winner_by_itself(runs: Runs, monkeypatch):
    """Local canary through the pipeline steps: the Deployer opens it (serving stays, nothing
    committed), the predictor splits requests by its share, and the Trigger's tick judges it
    on online reward by policy_version."""
    import numpy as np

    from app.deployer import canary as controller
    from app.deployer import pointer
    from app.predictor.asgi import load_deployed
    from pipelines.run import canary_stays_open

    monkeypatch.setenv("RECLOOP__GATE__CANARY_LOOK_EVERY", "50")
    monkeypatch.setenv("RECLOOP__GATE__MARGIN", "0.2")
    settings = load_settings()
    runs.log(40, seed=1)
    runs.run("r1")
    runs.log(40, seed=2)
    assert runs.run("r2", gate_canary_share=30) == (PROMOTED, "v-r2")
    assert pointer.current_version(runs.policies) == "v-r1"  # serving stays until it wins
    assert runs.warehouse.find_run("r2") is None
    opened = controller.read(runs.policies)
    assert opened is not None and (opened.version, opened.share) == ("v-r2", 30)

    deployed = load_deployed(runs.policies)
    rng = np.random.default_rng(0)
    answered = [deployed.for_request(rng).version for _ in range(4000)]
    share = answered.count("v-r2") / len(answered)
    assert abs(share - 0.3) < 4.5 * np.sqrt(0.3 * 0.7 / 4000)
    assert set(answered) == {"v-r1", "v-r2"}

    # What the Trigger launches locally judges the canary first, and re-trains only once
    # it is closed.
    assert canary_stays_open(settings)  # no look due yet
    online(runs.warehouse, "v-r1", [4.0, 4.5] * 40)
    online(runs.warehouse, "v-r2", [2.0, 2.5] * 30)
    assert not canary_stays_open(settings)
    lost = runs.warehouse.promotions()[-1]
    assert (lost.stage, lost.decision, lost.candidate_version) == (CANARY, ROLLED_BACK, "v-r2")
    assert controller.read(runs.policies) is None
    assert pointer.current_version(runs.policies) == "v-r1"
    assert runs.warehouse.find_run("r2") is None  # its examples stay for the next run

    assert runs.run("r3", gate_canary_share=30) == (PROMOTED, "v-r3")
    online(runs.warehouse, "v-r3", [3.0, 4.0] * 100)
    online(runs.warehouse, "v-r1", [3.0, 4.0] * 100)
    won = controller.step(settings, runs.warehouse, runs.policies)
    assert won is not None and won.decision == PROMOTED, won
    assert pointer.current_version(runs.policies) == "v-r3"
    assert runs.warehouse.find_run("r3") is not None  # committed when it won


# --- On Google Cloud: the Trigger judges the canary; Vertex and Cloud Storage on the wire ---


@pytest.fixture
def gcs(request, monkeypatch) -> Iterator[str]:
    """A Cloud Storage emulator (gcp-storage-emulator) holding prod's artifacts bucket (or the
    environment's named by an indirect parameter); the real google-cloud-storage client talks
    to it (STORAGE_EMULATOR_HOST)."""
    from gcp_storage_emulator.server import create_server

    from app import objects

    bucket = infra_config.load(getattr(request, "param", "prod")).name("artifacts")
    server = create_server("localhost", 0, in_memory=True, default_bucket=bucket)
    server.start()
    host, port = server._api._httpd.server_address  # port 0: the one it got
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://{host}:{port}")
    objects._client.cache_clear()
    yield f"gs://{bucket}"
    objects._client.cache_clear()
    server.stop()


@dataclass
class Cloud:
    fake: FakeVertex
    trigger: Settings  # what the Trigger function loads from the environment infra gives it
    policies: str
    warehouse: DuckDBWarehouse

    def deployed(self) -> dict[str, str]:
        """display name → deployed model id, on the endpoint."""
        (endpoint,) = self.fake.endpoints.values()
        return {d.display_name: d.id for d in endpoint.deployed_models}


def cloud(fake: FakeVertex, gcs: str, tmp_path: Path, env: str = "prod", **environ: str) -> Cloud:
    """prod (or `env`): v1 serving alone on the endpoint, its pointer in Cloud Storage."""
    from app.deployer import pointer

    environment = trigger_environment(env, fake.add_endpoint("77"))
    assert environment["RECLOOP__ARTIFACTS_DIR"] == gcs
    trigger = wiring.require(load_settings(environ={**environment, **environ}), wiring.TRIGGER)
    policies = f"{gcs}/policies"
    for version in ("v1", "v2"):
        objects.write_text(f"{policies}/{version}/{METADATA_FILE}", "{}")
    fake.add_model("recloop-policy")
    with fake.install():
        vertex.deploy(f"{policies}/v1", "v1", deployer_settings(trigger))
    pointer.point(policies, "v1")
    return Cloud(fake, trigger, policies, DuckDBWarehouse(tmp_path / "w.duckdb"))


def deployer_settings(trigger: Settings) -> Settings:
    """The Deployer step's settings: Trigger settings → pipeline parameters → step."""
    return PipelineParameters.from_settings(trigger).settings()


def open_canary(c: Cloud, share: int) -> None:
    """What the Deployer step does with a candidate the gate promoted (gate.canary_share)."""
    from app.deployer import canary as controller

    run = TrainingRunRecord("r2", "v2", None, None, 40, 4, 20, f"{c.policies}/v2")
    started = datetime.now(UTC) - timedelta(minutes=1)
    with c.fake.install():
        controller.start(c.policies, run, share, deployer_settings(c.trigger), started)


def tick_without_tensorflow(c: Cloud, monkeypatch) -> str | None:
    """The Trigger function's canary look, with TensorFlow unimportable (it is not in the
    function's requirements)."""
    from app.functions.trigger import judge_canary

    with monkeypatch.context() as m:
        m.setitem(sys.modules, "tensorflow", None)  # `import tensorflow` raises ImportError
        with c.fake.install():
            return judge_canary(c.trigger, c.warehouse)


def test_the_trigger_judges_a_vertex_canary_without_tensorflow(
    gcs: str, tmp_path: Path, monkeypatch
):
    from app.deployer import canary as controller
    from app.deployer import pointer

    fake = FakeVertex(project="recloop-prod")
    c = cloud(fake, gcs, tmp_path, RECLOOP__GATE__CANARY_LOOK_EVERY="50")
    serving = c.deployed()["recloop-policy-v1"]
    open_canary(c, 10)
    canary_id = c.deployed()["recloop-policy-v2"]
    *_, split = fake.sent("EndpointService/DeployModel")
    assert dict(split.traffic_split) == {"0": 10, serving: 90}
    assert controller.read(c.policies) is not None  # the state is in Cloud Storage

    # No look is due yet: the canary stays open and no re-training may start.
    waiting = tick_without_tensorflow(c, monkeypatch)
    assert waiting is not None and "canary v2 is open" in waiting
    assert not fake.sent("EndpointService/UndeployModel")

    online(c.warehouse, "v1", [4.0, 4.5] * 40)
    online(c.warehouse, "v2", [2.0, 2.5] * 30)
    assert tick_without_tensorflow(c, monkeypatch) is None  # decided: re-training may start
    (undeploy,) = fake.sent("EndpointService/UndeployModel")
    assert undeploy.deployed_model_id == canary_id
    assert dict(undeploy.traffic_split) == {serving: 100}
    assert c.deployed() == {"recloop-policy-v1": serving}
    assert controller.read(c.policies) is None
    assert pointer.current_version(c.policies) == "v1"
    assert c.warehouse.find_run("r2") is None  # its examples stay for the next run
    lost = c.warehouse.promotions()[-1]
    assert (lost.stage, lost.decision, lost.candidate_version) == (CANARY, ROLLED_BACK, "v2")


def test_the_trigger_promotes_a_winning_vertex_canary(gcs: str, tmp_path: Path, monkeypatch):
    from app.deployer import canary as controller
    from app.deployer import pointer

    fake = FakeVertex(project="recloop-prod")
    c = cloud(
        fake, gcs, tmp_path, RECLOOP__GATE__CANARY_LOOK_EVERY="50", RECLOOP__GATE__MARGIN="0.2"
    )
    serving = c.deployed()["recloop-policy-v1"]
    open_canary(c, 30)
    candidate = c.deployed()["recloop-policy-v2"]
    online(c.warehouse, "v1", [3.0, 4.0] * 100)
    online(c.warehouse, "v2", [3.0, 4.0] * 100)
    assert tick_without_tensorflow(c, monkeypatch) is None
    (undeploy,) = fake.sent("EndpointService/UndeployModel")
    assert undeploy.deployed_model_id == serving
    assert dict(undeploy.traffic_split) == {candidate: 100}
    assert c.deployed() == {"recloop-policy-v2": candidate}
    assert controller.read(c.policies) is None
    assert pointer.current_version(c.policies) == "v2"  # the pointer in Cloud Storage moved
    assert c.warehouse.find_run("r2") is not None  # committed when it won
    won = c.warehouse.promotions()[-1]
    assert (won.stage, won.decision, won.candidate_version) == (CANARY, PROMOTED, "v2")


@pytest.mark.parametrize(("env", "gcs"), [("dev", "dev"), ("prod", "prod")], indirect=["gcs"])
def test_rollback_by_hand_on_vertex_deploys_the_previous_version_again(
    env: str, gcs: str, tmp_path: Path, monkeypatch, capsys
):
    """`recloop rollback --env dev|prod` after v2 was promoted (v1 no longer deployed). With
    only the profile (an operator's credentials, no Trigger environment) it refuses in one
    line naming the endpoint's setting and moves nothing: before, it moved the pointer and
    recorded a rollback while v2 went on serving every request on Vertex."""
    from typer.testing import CliRunner

    from app.cli import app, main
    from app.config import GateConfig
    from app.deployer import pointer
    from app.evaluation import gate

    fake = FakeVertex(project=f"recloop-{env}")
    c = cloud(fake, gcs, tmp_path, env)
    with fake.install():
        vertex.deploy(f"{c.policies}/v2", "v2", deployer_settings(c.trigger))
    pointer.point(c.policies, "v2")
    v2 = c.deployed()["recloop-policy-v2"]
    c.warehouse.record_promotion(gate.decide("r2", "v2", "v1", None, None, GateConfig(skip=True)))
    monkeypatch.setattr("app.warehouse.factory.open_warehouse", lambda settings: c.warehouse)
    decisions, sent = len(c.warehouse.promotions()), len(fake.requests)

    with fake.install():
        code = main(["rollback", "--env", env])  # the entry point prints the one line
    assert code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "loop.vertex_endpoint (RECLOOP__LOOP__VERTEX_ENDPOINT)" in line
    assert "Trigger's environment" in line
    assert len(fake.requests) == sent  # not a request to Vertex
    assert pointer.current_version(c.policies) == "v2"
    assert len(c.warehouse.promotions()) == decisions  # no rollback recorded

    for name, value in trigger_environment(env, next(iter(fake.endpoints))).items():
        monkeypatch.setenv(name, value)
    with fake.install():
        result = CliRunner().invoke(app, ["rollback", "--env", env])
    assert result.exit_code == 0, result.output
    assert "serving v1" in result.output
    methods = [r.method for r in fake.requests[sent:]]
    assert methods.count("ModelService/UploadModel") == 1
    upload = fake.sent("ModelService/UploadModel")[-1]
    assert upload.model.artifact_uri == f"{c.policies}/v1"
    deploy = fake.sent("EndpointService/DeployModel")[-1]
    assert dict(deploy.traffic_split) == {"0": 100}
    assert deploy.deployed_model.display_name == "recloop-policy-v1"
    undeploy = fake.sent("EndpointService/UndeployModel")[-1]
    assert undeploy.deployed_model_id == v2
    assert dict(undeploy.traffic_split) == {c.deployed()["recloop-policy-v1"]: 100}
    assert list(c.deployed()) == ["recloop-policy-v1"]
    assert pointer.current_version(c.policies) == "v1"
    last = c.warehouse.promotions()[-1]
    assert (last.stage, last.decision, last.serving_version) == ("rollback", ROLLED_BACK, "v1")


def test_rollback_by_hand_on_vertex_during_a_canary_undeploys_the_current_version(
    gcs: str, tmp_path: Path, monkeypatch
):
    """The previous version still deployed beside the current one: only an undeploy."""
    from app.deployer import pointer, rollback

    fake = FakeVertex(project="recloop-prod")
    c = cloud(fake, gcs, tmp_path)
    serving = c.deployed()["recloop-policy-v1"]
    open_canary(c, 20)
    candidate = c.deployed()["recloop-policy-v2"]
    pointer.point(c.policies, "v2")  # say v2 was made current by hand while v1 still serves
    c.warehouse.record_promotion(gate_promoted("v2", "v1"))
    uploads = len(fake.sent("ModelService/UploadModel"))
    with fake.install():
        assert rollback.roll_back(c.trigger, c.warehouse) == "v1"
    (undeploy,) = fake.sent("EndpointService/UndeployModel")
    assert undeploy.deployed_model_id == candidate
    assert dict(undeploy.traffic_split) == {serving: 100}
    assert len(fake.sent("ModelService/UploadModel")) == uploads  # nothing deployed again
    assert pointer.current_version(c.policies) == "v1"


def gate_promoted(candidate: str, serving: str):
    from app.config import GateConfig
    from app.evaluation import gate

    return gate.decide("r", candidate, serving, None, None, GateConfig(skip=True))


def test_the_trigger_starts_no_retraining_while_a_canary_stays_open(tmp_path: Path, monkeypatch):
    """The tick's glue (app/functions/trigger.py::trigger): a canary with no look due means
    no launch; once the look decides, the same tick goes on to start the re-training."""
    from app.deployer import canary as controller
    from app.deployer import pointer
    from app.functions import trigger as function
    from app.functions.trigger import LOCK_FILE, LocalLauncher

    state = tmp_path / "state"
    monkeypatch.setenv("RECLOOP__STATE_DIR", str(state))
    monkeypatch.setenv("RECLOOP__ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("RECLOOP__LOOP__MIN_NEW_EXAMPLES", "0")
    monkeypatch.setenv("RECLOOP__GATE__CANARY_LOOK_EVERY", "50")
    settings = load_settings()
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    launcher = LocalLauncher(str(state), command=(sys.executable, "-c", "pass"))
    monkeypatch.setattr(function, "_context", lambda: (settings, warehouse, launcher))
    policies = str(tmp_path / "artifacts" / "policies")
    for version in ("v1", "v2"):
        (tmp_path / "artifacts" / "policies" / version).mkdir(parents=True)
    pointer.point(policies, "v1")
    run = TrainingRunRecord("r2", "v2", None, None, 40, 4, 20, f"{policies}/v2")
    started = datetime.now(UTC) - timedelta(minutes=1)
    controller.start(policies, run, 10, settings, started)
    launched = Path(state / LOCK_FILE).with_suffix(".log")  # LocalLauncher.start opens it

    function.trigger(None)
    assert not launched.exists()
    online(warehouse, "v1", [4.0, 4.5] * 40)
    online(warehouse, "v2", [2.0, 2.5] * 30)
    function.trigger(None)
    assert warehouse.promotions()[-1].decision == ROLLED_BACK
    assert launched.exists()


def test_rollback_by_hand_while_a_canary_is_open_ends_the_canary(
    gcs: str, tmp_path: Path, monkeypatch
):
    """v1 serves (it replaced v0), v2 is a 10% canary: `recloop rollback` undeploys the
    unjudged candidate with {v1: 100} and closes the canary; v1 keeps serving (undeploying v1
    instead would leave v2 serving all traffic while the pointer names v0)."""
    from app.deployer import canary as controller
    from app.deployer import pointer, rollback

    fake = FakeVertex(project="recloop-prod")
    c = cloud(fake, gcs, tmp_path)
    objects.write_text(f"{c.policies}/v0/{METADATA_FILE}", "{}")  # v0 is still staged
    c.warehouse.record_promotion(gate_promoted("v1", "v0"))
    serving = c.deployed()["recloop-policy-v1"]
    open_canary(c, 10)
    candidate = c.deployed()["recloop-policy-v2"]
    with fake.install():
        assert rollback.roll_back(c.trigger, c.warehouse) == "v1"
    (undeploy,) = fake.sent("EndpointService/UndeployModel")
    assert undeploy.deployed_model_id == candidate
    assert dict(undeploy.traffic_split) == {serving: 100}
    assert c.deployed() == {"recloop-policy-v1": serving}
    assert pointer.current_version(c.policies) == "v1"
    assert controller.read(c.policies) is None  # the Trigger has no canary left to judge
    assert c.warehouse.find_run("r2") is None  # nothing committed: its examples stay
    last = c.warehouse.promotions()[-1]
    assert (last.stage, last.decision) == ("rollback", ROLLED_BACK)
    assert (last.candidate_version, last.serving_version) == ("v2", "v1")


class Cut(Exception):
    """The tick's process ends here (the function's 540 s limit, a crash)."""


# (decision, the rewards that decide it, rewards arriving before the next tick that would
# decide the other way if the canary were judged again)
DECIDING = {
    PROMOTED: ({"v1": [3.0, 4.0] * 100, "v2": [3.0, 4.0] * 30}, {"v2": [1.0, 1.5] * 60}),
    ROLLED_BACK: ({"v1": [4.0, 4.5] * 40, "v2": [2.0, 2.5] * 30}, {"v2": [4.5, 5.0] * 100}),
}
EFFECTS = {
    PROMOTED: ("decision", "undeploy", "commit", "pointer", "record", "close"),
    ROLLED_BACK: ("decision", "undeploy", "record", "close"),
}


def cut_after(c: Cloud, effect: str, m: pytest.MonkeyPatch) -> None:
    """The effect happens, then the tick is cut short (for Vertex: the endpoint answered)."""
    from app.policy_store import POINTER

    def then_cut(original, applies=lambda *a: True):
        def wrapped(*args, **kwargs):
            result = original(*args, **kwargs)
            if applies(*args):
                raise Cut(effect)
            return result

        return wrapped

    if effect == "undeploy":
        m.setattr(c.fake, "answer", then_cut(c.fake.answer, lambda method, _: "Undeploy" in method))
    elif effect in ("commit", "record"):
        name = {"commit": "commit", "record": "record_promotion"}[effect]
        m.setattr(c.warehouse, name, then_cut(getattr(c.warehouse, name)))
    elif effect == "close":
        m.setattr(objects, "remove", then_cut(objects.remove))
    else:  # the decision stored in the state, or the pointer moved
        written = {"decision": '"decided": {', "pointer": ""}[effect]
        target = "CANARY" if effect == "decision" else POINTER
        m.setattr(
            objects,
            "write_text",
            then_cut(objects.write_text, lambda p, t: p.endswith(target) and written in t),
        )


def canary_scenario(
    fake: FakeVertex, gcs: str, folder: Path, decision: str, effect: str | None, monkeypatch
) -> dict:
    """A 30% canary decided by a tick (cut short after `effect`, or not), then rewards that
    point the other way, then the next tick; the end state."""
    from app.deployer import canary as controller
    from app.deployer import pointer

    folder.mkdir()
    settings = {"RECLOOP__GATE__CANARY_LOOK_EVERY": "50", "RECLOOP__GATE__MARGIN": "0.2"}
    c = cloud(fake, gcs, folder, **settings, RECLOOP__GATE__CANARY_MAX_LOOKS="3")
    open_canary(c, 30)
    deciding, contrary = DECIDING[decision]
    for version, rewards in deciding.items():
        online(c.warehouse, version, rewards)
    with monkeypatch.context() as m:
        if effect is not None:
            cut_after(c, effect, m)
        try:
            tick_without_tensorflow(c, monkeypatch)
            assert effect is None, f"the tick was not cut after {effect}"
        except Cut:
            pass
    for version, rewards in contrary.items():
        online(c.warehouse, version, rewards)
    assert tick_without_tensorflow(c, monkeypatch) is None  # no canary left to wait for
    (endpoint,) = fake.endpoints.values()
    names = {d.id: d.display_name for d in endpoint.deployed_models}
    return {
        "traffic": {names[k]: v for k, v in endpoint.traffic_split.items()},
        "deployed": sorted(names.values()),
        "pointer": pointer.current_version(c.policies),
        "canary": controller.read(c.policies),
        "committed": c.warehouse.find_run("r2") is not None,
        "decisions": [
            (p.run_id, p.stage, p.decision, p.candidate_version, p.serving_version, p.reason)
            for p in c.warehouse.promotions()
        ],
    }


@pytest.mark.parametrize(
    ("decision", "effect"), [(d, e) for d, effects in EFFECTS.items() for e in effects]
)
def test_a_tick_cut_short_at_any_effect_ends_as_an_uncut_one(
    decision: str, effect: str, gcs: str, tmp_path: Path, monkeypatch
):
    """docs/safe-promotion.md §4: the decision is stored before its first effect, and the next
    tick completes it instead of judging again. Before, a tick cut after the promote's undeploy
    was judged again on the next tick, flipped to a rollback with only the candidate deployed,
    and raised NothingToRollBackTo on every tick after it (no re-training ever started)."""
    uncut = canary_scenario(
        FakeVertex(project="recloop-prod"), gcs, tmp_path / "uncut", decision, None, monkeypatch
    )
    assert uncut["decisions"][-1][1:3] == (CANARY, decision)
    assert uncut["canary"] is None
    cut = canary_scenario(
        FakeVertex(project="recloop-prod"), gcs, tmp_path / "cut", decision, effect, monkeypatch
    )
    assert cut == uncut


def test_a_canary_undecided_when_its_time_is_up_is_rolled_back(tmp_path: Path, monkeypatch):
    """gate.canary_max_hours: a canary whose candidate never collects a look's rewards is
    rolled back (before, it stayed open and no re-training ever started again). The clock is
    the tick's `now`."""
    from app.deployer import canary as controller
    from app.deployer import pointer

    monkeypatch.setenv("RECLOOP__GATE__CANARY_MAX_HOURS", "6")
    settings = load_settings()
    assert settings.gate.canary_max_hours == 6.0
    assert load_settings(environ={}).gate.canary_max_hours == 24.0  # the default
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    policies = str(tmp_path / "policies")
    for version in ("v1", "v2"):
        (tmp_path / "policies" / version).mkdir(parents=True)
    pointer.point(policies, "v1")
    started = datetime.now(UTC) - timedelta(minutes=1)
    run = TrainingRunRecord("r2", "v2", None, None, 40, 4, 20, f"{policies}/v2")
    controller.start(policies, run, 1, settings, started)
    online(warehouse, "v1", [4.0, 4.5] * 300)
    online(warehouse, "v2", [4.0, 4.5] * 20)  # 40 of the 200 rewards its first look needs

    assert controller.step(settings, warehouse, policies, started + timedelta(hours=5.9)) is None
    assert controller.read(policies) is not None
    closed = controller.step(settings, warehouse, policies, started + timedelta(hours=6))
    assert closed is not None
    assert (closed.stage, closed.decision, closed.candidate_version) == (CANARY, ROLLED_BACK, "v2")
    assert "undecided after 6 h (gate.canary_max_hours)" in closed.reason
    assert "40 vs 600 rewards" in closed.reason
    assert warehouse.promotions()[-1].reason == closed.reason
    assert controller.read(policies) is None  # the Trigger may re-train again
    assert pointer.current_version(policies) == "v1"
    assert warehouse.find_run("r2") is None  # its examples stay for the next run


def test_rollback_by_hand_completes_a_decision_a_cut_tick_left_half_done(
    gcs: str, tmp_path: Path, monkeypatch
):
    """A tick decided to promote v2 and was cut short after undeploying v1: `recloop rollback`
    first completes that promotion (committed, pointer on v2, recorded), then rolls v2 back
    to v1 (deployed again). Before, it took the canary as still undecided, asked Vertex to
    undeploy v2 with nothing else deployed, and failed with NothingToRollBackTo."""
    from app.deployer import canary as controller
    from app.deployer import pointer, rollback

    fake = FakeVertex(project="recloop-prod")
    gate = {"RECLOOP__GATE__CANARY_LOOK_EVERY": "50", "RECLOOP__GATE__MARGIN": "0.2"}
    c = cloud(fake, gcs, tmp_path, **gate, RECLOOP__GATE__CANARY_MAX_LOOKS="3")
    open_canary(c, 30)
    for version, rewards in DECIDING[PROMOTED][0].items():
        online(c.warehouse, version, rewards)
    with monkeypatch.context() as m:
        cut_after(c, "undeploy", m)
        with pytest.raises(Cut):
            tick_without_tensorflow(c, monkeypatch)
    assert list(c.deployed()) == ["recloop-policy-v2"]  # v1 undeployed, nothing else done
    assert pointer.current_version(c.policies) == "v1"

    with fake.install():
        assert rollback.roll_back(c.trigger, c.warehouse) == "v1"
    assert c.warehouse.find_run("r2") is not None  # the promotion was completed first
    assert [(p.stage, p.decision) for p in c.warehouse.promotions()] == [
        (CANARY, PROMOTED),
        ("rollback", ROLLED_BACK),
    ]
    assert list(c.deployed()) == ["recloop-policy-v1"]
    assert pointer.current_version(c.policies) == "v1"
    assert controller.read(c.policies) is None
