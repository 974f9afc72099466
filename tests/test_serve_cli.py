"""`recloop serve` as a person runs it: a real process on loopback, every wait bounded."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from app.local.processes import PYTHON, free_port, running

RECLOOP = [PYTHON, "-m", "app.cli"]
LOOPBACK = ["--host", "127.0.0.1"]


def recloop(*args: str, env: dict[str, str] | None = None, timeout: float = 90):
    return subprocess.run(
        [*RECLOOP, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def labelled(policy: Path, target: Path, version: str) -> Path:
    """A copy of `policy` served under another version label."""
    shutil.copytree(policy, target)
    meta = target / "recloop_policy.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "policy_version": version}))
    return target


def health(port: int) -> dict:
    return httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()


def test_busy_port_is_refused_unless_sharing_is_asked(trained_policy: Path, tmp_path: Path):
    port = free_port()
    serve = ["serve", "--policy", str(trained_policy), "--port", str(port), *LOOPBACK]
    log = tmp_path / "first.log"
    with running([*RECLOOP, *serve], {}, f"http://127.0.0.1:{port}/health", log_path=log):
        second = recloop(*serve)
        assert second.returncode == 2
        (line,) = second.stderr.strip().splitlines()
        assert f"port {port}" in line and "already in use" in line and "--reuse-port" in line
        with running(
            [*RECLOOP, *serve, "--reuse-port"],
            {},
            lambda: health(port).get("status") == "ok",
        ) as shared:
            assert shared.poll() is None
        assert '"GET /health' not in log.read_text()  # no access log unless asked


def test_port_zero_reports_the_port_it_got_and_access_log_is_optional(
    trained_policy: Path, tmp_path: Path
):
    log = tmp_path / "serve.log"
    found: list[int] = []

    def ready() -> bool:
        match = re.search(r"http://127\.0\.0\.1:(\d+)/predict", log.read_text())
        if match and int(match.group(1)) != 0:
            found[:] = [int(match.group(1))]
            try:
                return health(found[0]).get("status") == "ok"
            except httpx.TransportError:
                return False
        return False

    command = [*RECLOOP, "serve", "--policy", str(trained_policy), "--port", "0", *LOOPBACK]
    with running([*command, "--access-log"], {}, ready, log_path=log):
        assert health(found[0])["policy_version"] == "v-test-1"
    assert '"GET /health HTTP/1.1" 200' in log.read_text()


def test_serve_help_shows_the_host_each_profile_listens_on():
    """`recloop serve` listens on the profile's serving.host (before, the help said 0.0.0.0
    while the local server bound 127.0.0.1)."""
    from app.config import load_settings

    local, dev, prod = (load_settings(p, environ={}).serving.host for p in ("local", "dev", "prod"))
    assert dev == prod
    shown = " ".join(recloop("serve", "--help").stdout.split())
    assert f"[default: (serving.host: {local} locally, {dev} in dev and prod)]" in shown


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_port_out_of_range_is_one_line(port: str):
    result = recloop("serve", "--port", port)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "serving.port must be between 0 and 65535" in line and port in line


def test_serve_defaults_to_the_deployed_policy(trained_policy: Path, tmp_path: Path):
    from app.deployer.pointer import deploy
    from app.predictor.location import default_location

    artifacts = tmp_path / "artifacts"
    labelled(trained_policy, artifacts / "policy", "v-trained")
    deploy(
        str(labelled(trained_policy, tmp_path / "out", "v-deployed")), str(artifacts / "policies")
    )
    port = free_port()
    env = {"RECLOOP__ARTIFACTS_DIR": str(artifacts)}
    url = f"http://127.0.0.1:{port}/health"
    with running([*RECLOOP, "serve", "--port", str(port), *LOOPBACK], env, url):
        assert health(port)["policy_version"] == "v-deployed"
    (artifacts / "policies" / "CURRENT").unlink()
    assert default_location(str(artifacts)) == f"{artifacts}/policy"  # else what was trained
    shown = " ".join(recloop("serve", "--help").stdout.split())
    assert "else what was deployed (<artifacts_dir>/policies/CURRENT)" in shown


@pytest.mark.parametrize(
    ("case", "said"),
    [
        ("nothing trained", "does not exist"),
        ("empty folder", "has no recloop_policy.json"),
        ("pointer to nothing", "v-gone has no recloop_policy.json"),
        ("empty gs:// store", "gs://recloop-test/policies has no recloop_policy.json"),
        ("unreachable gs:// store", "cannot reach gs://recloop-test/policies: "),
    ],
)
def test_no_usable_policy_is_one_clear_line(tmp_path: Path, case: str, said: str):
    """`recloop serve` with nothing it could serve: one line and exit 2, at once (before:
    a server answering 503 forever; for gs://, TensorFlow's silent retries)."""
    from app.rehearsal.apis import GoogleApis

    env = {"RECLOOP__ARTIFACTS_DIR": str(tmp_path / "artifacts")}
    args = ["serve", "--port", "0", *LOOPBACK]
    if case in ("empty folder", "pointer to nothing"):
        (tmp_path / "policies").mkdir()
        args += ["--policy", str(tmp_path / "policies")]
        if case == "pointer to nothing":
            (tmp_path / "policies" / "CURRENT").write_text("v-gone")
    if "gs://" in case:
        args += ["--policy", "gs://recloop-test/policies"]
    with GoogleApis().serving() as apis:
        # The unreachable store: a port nobody listens on (nothing leaves the machine).
        closed = f"http://127.0.0.1:{free_port()}"
        env["STORAGE_EMULATOR_HOST"] = closed if case.startswith("unreachable") else apis.url
        result = recloop(*args, env=env, timeout=60)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and said in line
    assert "recloop train" in line or "cannot reach" in line


def test_a_gs_policy_is_checked_through_its_pointer(monkeypatch):
    from app.predictor.location import check_policy
    from app.rehearsal.apis import GoogleApis

    with GoogleApis().serving() as apis:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", apis.url)
        apis.objects[("b", "policies/CURRENT")] = b"v7\n"
        apis.objects[("b", "policies/v7/recloop_policy.json")] = b'{"policy_version": "v7"}'
        assert check_policy("gs://b/policies") == "v7"


def test_container_retries_with_backoff_until_a_policy_appears(
    trained_policy: Path, tmp_path: Path
):
    """Vertex's container (`python -m app.predictor`): 503 with the reason, a few log lines
    with growing waits (not one a second), then it serves what appears; a pointer moved to
    nothing afterwards is logged once (it was every second: 58 lines a minute) while the
    policy it had keeps serving."""
    import time

    folder = tmp_path / "policies"
    folder.mkdir()
    port = free_port()
    log = tmp_path / "predictor.log"
    env = {"AIP_STORAGE_URI": str(folder), "AIP_HTTP_PORT": str(port)}

    def unavailable() -> bool:
        try:
            answer = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
        except httpx.TransportError:
            return False
        return answer.status_code == 503 and "retrying in" in answer.json()["reason"]

    with running([PYTHON, "-m", "app.predictor"], env, unavailable, log_path=log):
        time.sleep(7)
        attempts = log.read_text().count("could not load the policy")
        assert 2 <= attempts <= 4, log.read_text()  # every second would be 7 or more
        labelled(trained_policy, folder / "v-late", "v-late")
        (folder / "CURRENT").write_text("v-late")
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and health(port).get("status") != "ok":
            time.sleep(0.5)
        assert health(port)["policy_version"] == "v-late"
        (folder / "CURRENT").write_text("v-gone")
        time.sleep(4)  # the watcher looks every second
        assert log.read_text().count("could not load policy v-gone") == 1, log.read_text()
        assert health(port)["policy_version"] == "v-late"


def test_container_answers_503_while_its_gs_policy_is_unreachable(tmp_path: Path):
    """Vertex's container with an unreachable gs:// store (every HTTPS request goes through a
    proxy port nobody listens on: nothing leaves the machine): it keeps running and its health
    route answers 503 with a reason, so Vertex routes no traffic; it never exits."""
    port = free_port()
    closed = f"http://127.0.0.1:{free_port()}"
    env = {
        "AIP_STORAGE_URI": "gs://recloop-test/policies",
        "AIP_HTTP_PORT": str(port),
        **{name: closed for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY")},
        "NO_PROXY": "127.0.0.1,localhost",
    }
    seen: list[httpx.Response] = []

    def answering() -> bool:
        try:
            seen[:] = [httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)]
        except httpx.TransportError:
            return False
        return True

    log = tmp_path / "predictor.log"
    with running([PYTHON, "-m", "app.predictor"], env, answering, log_path=log) as process:
        for _ in range(3):
            answering()
            (answer,) = seen
            assert answer.status_code == 503
            assert answer.json()["status"] == "unavailable" and answer.json()["reason"]
        assert process.poll() is None
