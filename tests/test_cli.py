"""`recloop train` then `recloop serve`, as a newcomer would type them."""

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from app.local.processes import PYTHON, free_port, running

RECLOOP = [PYTHON, "-m", "app.cli"]
LOOPBACK = ["--host", "127.0.0.1"]


def test_help_lists_the_commands():
    out = subprocess.run([*RECLOOP, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("train", "tune", "serve"):
        assert command in out
    train_help = subprocess.run(
        [*RECLOOP, "train", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "Usage: recloop train" in train_help and "--agent-alpha" in train_help
    # One framework, one style: no type tag on flags, no doubled or swallowed defaults.
    for shown in (train_help, out):
        assert "<bool>" not in shown and "(default: None)" not in shown
    flat = " ".join(train_help.split())
    assert "--progress / --no-progress Show a progress bar. [default: progress]" in flat
    tune_help = subprocess.run(
        [*RECLOOP, "tune", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "[default: (one per core locally, 4 on Vertex)" in " ".join(tune_help.split())
    ab_help = subprocess.run(
        [*RECLOOP, "ab", "report", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "PNG to write. [default: (<state_dir>/ab-report.png)]" in " ".join(ab_help.split())


def test_train_then_serve_answers_a_vertex_request(movielens_dir: Path, tmp_path: Path):
    env = {
        "MOVIELENS_DIR": str(movielens_dir),
        "RECLOOP__ARTIFACTS_DIR": str(tmp_path / "artifacts"),
    }
    trained = subprocess.run(
        [
            *RECLOOP,
            "train",
            "--training-loops",
            "20",
            "--rank-k",
            "5",
            "--num-actions",
            "8",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    assert trained.returncode == 0, trained.stderr
    assert "trained linucb" in trained.stdout
    # Without the bar, the saving steps are still said, as plain lines.
    saving = [line.split(":")[0] for line in trained.stdout.splitlines() if "saving" in line]
    assert saving == ["saving 1/3", "saving 2/3", "saving 3/3"]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running([*RECLOOP, "serve", "--port", str(port)], env, base + "/health"):
        response = httpx.post(
            base + "/predict", json={"instances": [{"observation": [0.5, -0.1, 0.2, 0.0, 1.0]}]}
        )
    assert response.status_code == 200
    (prediction,) = response.json()["predictions"]
    assert 0 <= prediction["action"] < 8
    assert prediction["title"] == f"Synthetic Movie {prediction['movie_id']} (1995)"


def test_bad_flag_exits_nonzero_with_the_reason():
    result = subprocess.run([*RECLOOP, "train", "--rank-k", "zero"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "--rank-k" in result.stderr


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["pipeline", "run", "retraining", "--env", "dev"], "RECLOOP__CLOUD__PROJECT_ID"),
        (["pipeline", "run", "retraining", "--env", "staging"], "RECLOOP_PROFILE"),
        (["tune", "--vertex", "--trials", "1"], "RECLOOP__CLOUD__STAGING_BUCKET"),
        (["serve", "--port", "x"], "'--port'"),
    ],
)
def test_configuration_mistakes_are_one_line(args: list[str], named: str):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECLOOP")}
    result = subprocess.run([*RECLOOP, *args], capture_output=True, text=True, env=env, timeout=120)
    assert named in _one_line_error(result)
    debug = subprocess.run(
        [*RECLOOP, *args, "--debug"], capture_output=True, text=True, env=env, timeout=120
    )
    assert debug.returncode == 2
    if "--port" not in args:  # usage mistakes have no traceback to show
        assert "Traceback (most recent call last)" in debug.stderr


@pytest.mark.parametrize("args", [["promotions", "--env", "dev"], ["ab", "report", "--env", "dev"]])
def test_cloud_commands_without_credentials_are_one_line(args: list[str], tmp_path: Path):
    """A cloud profile on a machine with no Google Cloud credentials: one line naming them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECLOOP", "GOOGLE_"))}
    missing = tmp_path / "no-key.json"
    env |= {
        "RECLOOP__CLOUD__PROJECT_ID": "recloop-dev",
        "GOOGLE_APPLICATION_CREDENTIALS": str(missing),
    }
    result = subprocess.run([*RECLOOP, *args], capture_output=True, text=True, env=env, timeout=120)
    line = _one_line_error(result)
    assert "Google Cloud credentials" in line and str(missing) in line


def test_nothing_to_roll_back_to_is_the_common_one_line_error(tmp_path: Path):
    """`recloop rollback` said "rollback: …" and exited 1; now as every other user error."""
    from app.deployer import pointer

    env = {k: v for k, v in os.environ.items() if not k.startswith("RECLOOP")}
    env |= {"RECLOOP__ARTIFACTS_DIR": str(tmp_path / "artifacts")}
    env |= {"RECLOOP__WAREHOUSE__DUCKDB_PATH": str(tmp_path / "w.duckdb")}
    policies = tmp_path / "artifacts" / "policies"
    rollback = [*RECLOOP, "rollback"]
    nothing = subprocess.run(rollback, capture_output=True, text=True, env=env, timeout=120)
    assert _one_line_error(nothing) == f"error: nothing is deployed under {policies}"
    (policies / "v2").mkdir(parents=True)
    pointer.point(str(policies), "v2")
    alone = subprocess.run(rollback, capture_output=True, text=True, env=env, timeout=120)
    assert _one_line_error(alone) == "error: no policy served before v2: nothing to roll back to"
    assert pointer.current_version(str(policies)) == "v2"


def test_make_synth_mistake_is_one_line():
    infra = Path(__file__).resolve().parents[1] / "infra"
    result = subprocess.run(
        [PYTHON, "main.py", "staging"], cwd=infra, capture_output=True, text=True, timeout=60
    )
    assert "ENV=" in _one_line_error(result) and "'staging'" in result.stderr


def test_a_training_run_prints_only_recloops_lines(movielens_dir: Path, tmp_path: Path):
    env = {**os.environ, "MOVIELENS_DIR": str(movielens_dir)}
    args = ["--training-loops", "5", "--rank-k", "5", "--num-actions", "8"]
    result = subprocess.run(
        [*RECLOOP, "train", *args, "--artifacts-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].startswith("hyper-parameters of linucb: agent_alpha=1, tikhonov_weight=1")
    assert lines[1].startswith("training linucb")  # the progress bar, then what is saved:
    # building the TF-Agents policy first (about 3 s of silence after the bar before).
    assert lines[2] == "saving 1/3: the TF-Agents linucb policy from the learned parameters"
    assert [line.split(":")[0] for line in lines[3:5]] == ["saving 2/3", "saving 3/3"]
    assert lines[5].startswith("trained linucb") and len(lines) == 6
    shown = subprocess.run(
        [PYTHON, "-c", "import app, warnings; warnings.warn('a real one', UserWarning)"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert "UserWarning: a real one" in shown.stderr


def test_a_neural_agent_prints_no_foreign_warning(movielens_dir: Path, tmp_path: Path):
    """Before: absl's "Could not serialize policy.distribution()" twice per neural agent."""
    env = {**os.environ, "MOVIELENS_DIR": str(movielens_dir)}
    args = ["--agent", "neural_epsilon_greedy", "--rank-k", "5", "--num-actions", "8"]
    args += ["--training-loops", "1", "--no-progress", "--artifacts-dir", str(tmp_path)]
    result = subprocess.run(
        [*RECLOOP, "train", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines()[-1].startswith("trained neural_epsilon_greedy")


def test_gym_does_not_turn_on_every_deprecation_warning():
    """TF-Agents imports gym, whose logger put ("once", DeprecationWarning) first: every
    library's DeprecationWarning then showed (tf_keras's random.randint(1, 1e9), once per
    `recloop train --agent actor_critic`). A real one in __main__ still shows."""
    code = (
        "import app, gym, random, warnings\n"
        "random.randint(1, 1e9)\n"
        "warnings.warn('a real one', DeprecationWarning)\n"
    )
    result = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "Warning" in line]
    assert "DeprecationWarning: a real one" in line


def test_ctrl_c_stops_training_cleanly(movielens_dir: Path, tmp_path: Path):
    import signal
    import time

    env = {**os.environ, "MOVIELENS_DIR": str(movielens_dir), "PYTHONUNBUFFERED": "1"}
    args = ["--training-loops", "10000000", "--rank-k", "5", "--num-actions", "8"]
    process = subprocess.Popen(
        [*RECLOOP, "train", *args, "--no-progress", "--artifacts-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("hyper-parameters of linucb")
        time.sleep(1)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 130
    assert err.strip().splitlines() == ["interrupted: no new policy was saved"]
    assert not (tmp_path / "policy").exists()


def test_two_ctrl_c_while_saving_end_the_process_without_a_policy(
    movielens_dir: Path, tmp_path: Path
):
    """Ctrl-C twice once saving has begun: the process ends (130) and no folder that looks
    like a complete policy is left."""
    import signal
    import time

    env = {**os.environ, "MOVIELENS_DIR": str(movielens_dir), "PYTHONUNBUFFERED": "1"}
    args = ["--training-loops", "50", "--rank-k", "5", "--num-actions", "8"]
    process = subprocess.Popen(
        [*RECLOOP, "train", *args, "--artifacts-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("saving 1/"):
                break
        process.send_signal(signal.SIGINT)
        time.sleep(0.2)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
    finally:
        process.kill()
    # 130, or killed by the second SIGINT while Python was already finalising (the shell
    # shows 130 for both).
    assert process.returncode in (130, -signal.SIGINT), err
    assert "Traceback" not in err
    assert not (tmp_path / "policy" / "recloop_policy.json").exists()


def test_ctrl_c_while_saving_leaves_no_report_of_an_unsaved_policy(
    movielens_dir: Path, tmp_path: Path
):
    """Ctrl-C while the policy is being saved: no metrics.json or curves describe the version
    that was never saved (they were written to <artifacts_dir> before the policy; now they
    are renamed into place with it, app/publish.py)."""
    import json
    import signal

    from app.policy_store import PolicyStoreError, read_metadata

    env = {**os.environ, "MOVIELENS_DIR": str(movielens_dir), "PYTHONUNBUFFERED": "1"}
    args = ["--training-loops", "50", "--rank-k", "5", "--num-actions", "8"]
    process = subprocess.Popen(
        [*RECLOOP, "train", *args, "--artifacts-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if ": the policy" in line:  # its step, the last
                break
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert not list(tmp_path.rglob("training_curves.png"))
    for path in tmp_path.rglob("metrics.json"):
        metrics = json.loads(path.read_text())
        try:
            saved = read_metadata(metrics["policy_dir"]).policy_version
        except PolicyStoreError:
            saved = None
        assert saved == metrics["policy_version"], f"{path} describes an unsaved policy"


def test_a_second_ctrl_c_ends_the_process_even_if_the_first_was_swallowed():
    """TensorFlow once caught the first KeyboardInterrupt and carried on: the second Ctrl-C
    must still end `recloop train`."""
    import signal

    code = (
        "import sys, time\n"
        "import app.trainer.__main__ as trainer\n"
        "def swallowing(*args, **kwargs):\n"
        "    said = 'training'\n"
        "    while True:\n"
        "        try:\n"
        "            print(said, flush=True)\n"
        "            time.sleep(60)\n"
        "        except KeyboardInterrupt:\n"
        "            said = 'swallowed'\n"
        "trainer.run = swallowing\n"
        "from app.cli import main\n"
        "sys.exit(main(['train', '--no-progress']))\n"
    )
    process = subprocess.Popen(
        [PYTHON, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "training"
        process.send_signal(signal.SIGINT)
        assert process.stdout.readline().strip() == "swallowed"
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 130


def test_serve_stops_on_ctrl_c_while_starting(trained_policy: Path):
    """Ctrl-C (to the server, or to its whole process group as a terminal sends it) or a
    TERM in its first seconds, while the worker still imports TensorFlow: the process ends
    quietly. Before, the worker ignored the stop and was killed 3 s later with Granian's
    "Killing worker-1 after it refused to gracefully stop"."""
    import signal
    import time

    cases = (
        (signal.SIGINT, 0.5, False),
        (signal.SIGINT, 3, True),
        (signal.SIGINT, 3, False),
        (signal.SIGTERM, 3, False),
    )
    for sent, delay, to_group in cases:
        process = subprocess.Popen(
            [*RECLOOP, "serve", "--policy", str(trained_policy), *["--port", "0"], *LOOPBACK],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            time.sleep(delay)
            if to_group:
                os.killpg(process.pid, sent)
            else:
                process.send_signal(sent)
            output, _ = process.communicate(timeout=15)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        said = [line for line in output.splitlines() if not line.startswith("serving ")]
        assert set(said) <= {"interrupted"}, (sent, delay, output)  # and it ended within 15 s


def test_pipeline_run_shows_steps_and_a_summary(tmp_path: Path):
    """A failing step: one line per step, one error line naming the step and the log file
    that holds kfp.local's raw output (227 lines of executor JSON on the terminal before)."""
    env = {**os.environ, "MOVIELENS_DIR": str(tmp_path / "none")}
    env["RECLOOP__DATA__DOWNLOAD"] = "false"
    result = subprocess.run(
        [*RECLOOP, "pipeline", "run", "startup"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=180,
    )
    assert result.returncode == 2
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("pipeline startup, here with kfp.local (full log: ")
    assert lines[1:] == ["  running generate …", lines[2]] and "failure generate" in lines[2]
    (error,) = result.stderr.strip().splitlines()
    assert "Inner task failed: 'generate'" in error
    (log,) = (tmp_path / ".recloop" / "logs").glob("startup-*.log")
    assert str(log.relative_to(tmp_path)) in error and "Executing task" in log.read_text()


@pytest.mark.parametrize("tuned", ["other", "none"])
def test_pipeline_run_startup_succeeds_with_steps_and_a_summary(
    movielens_dir: Path, tmp_path: Path, tuned: str
):
    """The whole start-up pipeline through `recloop pipeline run startup` (kfp.local, small
    data; about 25 s): one line per step, then what was deployed, where and how to serve it;
    kfp.local's executor output only in the log file, nothing on stderr. The deployed policy
    was trained with the `--best-hyperparameters` given (a file elsewhere; '' for the
    configured values), not the LinTS-tuned file at the default path, which LinUCB would
    refuse: the command checked and printed the values but trained with the default file."""
    import json
    import re

    from app.tuning import space

    artifacts = tmp_path / ".recloop" / "artifacts"
    artifacts.mkdir(parents=True)
    default = artifacts / "best_hyperparameters.json"
    default.write_text(space.dumps_best("lints", {"agent_alpha": 7.0, "tikhonov_weight": 3.0}, 0))
    other = tmp_path / "tuned-linucb.json"
    other.write_text(space.dumps_best("linucb", {"agent_alpha": 0.5, "tikhonov_weight": 2.0}, 0))
    given = str(other) if tuned == "other" else ""
    env = {**os.environ, "MOVIELENS_DIR": str(movielens_dir), "RECLOOP__DATA__DOWNLOAD": "false"}
    env |= {"RECLOOP__LOOP__RANK_K": "5", "RECLOOP__LOOP__NUM_ACTIONS": "10"}
    env |= {"RECLOOP__LOOP__AGENT_ALPHA": "1.5", "RECLOOP__LOOP__TIKHONOV_WEIGHT": "0.25"}
    result = subprocess.run(
        [*RECLOOP, "pipeline", "run", "startup", "--best-hyperparameters", given],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    lines = result.stdout.strip().splitlines()
    if tuned == "other":
        said = lines.pop(0)
        assert said == f"tuned values from {other}: agent_alpha=0.5, tikhonov_weight=2", said
    assert lines[0].startswith("pipeline startup, here with kfp.local (full log: .recloop/logs/")
    steps = ["generate", "ingest", "train", "evaluate", "deploy"]
    expected = [
        p for step in steps for p in (rf"  running {step} …", rf"  done    {step} \(\d+ s\)")
    ]
    assert len(lines) == len(expected) + 2, lines
    for line, pattern in zip(lines[1:-1], expected, strict=True):
        assert re.fullmatch(pattern, line), line
    version = (artifacts / "policies" / "CURRENT").read_text().strip()
    assert re.fullmatch(
        rf"finished in \d+ s: policy {version} deployed to \.recloop/artifacts/policies/{version} "
        r"\(CURRENT points at it\); serve it with `recloop serve`",
        lines[-1],
    ), lines[-1]
    deployed = json.loads((artifacts / "policies" / version / "recloop_policy.json").read_text())
    trained_with = (deployed["agent"], deployed["alpha"], deployed["tikhonov_weight"])
    assert trained_with == (("linucb", 0.5, 2.0) if tuned == "other" else ("linucb", 1.5, 0.25))
    (log,) = (tmp_path / ".recloop" / "logs").glob("startup-*.log")
    assert "Executing task" in log.read_text()


def test_old_node_is_said_once_and_readably():
    """jsii printed Node's end-of-life banner as a dozen Python byte strings (b'!!  …')."""
    code = "from infra.main import note_old_node\nnote_old_node()\nimport cdktf\n"
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [PYTHON, "-c", code], capture_output=True, text=True, cwd=root, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "b'!!" not in result.stderr
    assert result.stderr.count("note: Node") <= 1


def test_rollback_on_vertex_without_the_deployers_settings_says_which(tmp_path: Path):
    """`recloop rollback --env dev` as an operator first types it (the profile only): one line
    naming the Deployer's settings and the Trigger's environment, not the warehouse's
    "needs cloud.project_id" (which named no way to set it and, once set, gave way to a
    credentials error before the settings were ever checked)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECLOOP_", "AIP_", "GOOGLE_"))}
    env["RECLOOP__ARTIFACTS_DIR"] = str(tmp_path / "artifacts")
    done = subprocess.run(
        [*RECLOOP, "rollback", "--env", "dev"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and "Trigger's environment" in line, line
    assert "loop.vertex_endpoint (RECLOOP__LOOP__VERTEX_ENDPOINT)" in line, line
    assert "cloud.project_id (RECLOOP__CLOUD__PROJECT_ID)" in line, line
    assert done.stdout == "" and not (tmp_path / "artifacts").exists()
