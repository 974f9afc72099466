"""Hot swap: new policy versions deployed while the predictor serves a steady load.

Through a real `python -m app.predictor` process following a deployment folder's CURRENT
pointer (app/deployer/pointer.py): no request fails, every response comes from one version
(label and actions), versions only move forward; and, in process, reloading many times
keeps nothing of the replaced policies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import threading
import time
import tracemalloc
import weakref
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.config import DataConfig, Settings
from app.deployer.pointer import deploy
from app.local.processes import PYTHON, free_port, running
from app.policy_store import read_metadata
from app.predictor.policy import ServingPolicy, load_policy
from app.predictor.server import PredictorApp
from app.trainer.flags import TrainingArgs
from app.trainer.run import run

RANK = 5
VERSIONS = ("v-swap-1", "v-swap-2")
CLIENTS = 6


@pytest.fixture(scope="module")
def policies(movielens_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two versions that choose differently (other seeds and exploration)."""
    out = {}
    for n, version in enumerate(VERSIONS):
        settings = Settings(
            artifacts_dir=str(tmp_path_factory.mktemp(version)),
            data=DataConfig(movielens_dir=str(movielens_dir), download=False),
        )
        args = TrainingArgs(
            training_loops=15 + 10 * n,
            rank_k=RANK,
            num_actions=10,
            agent_alpha=[0.1, 5.0][n],
            seed=n,
            progress=False,
            policy_version=version,
        )
        out[version] = Path(run(args, settings).policy_dir)
    return out


def requests_for(client: int) -> list[tuple[dict[str, Any], np.ndarray]]:
    """A few bodies per client, single and batched (Vertex sample) forms, with their rows."""
    rng = np.random.default_rng(client)
    bodies = []
    for _ in range(4):
        rows = rng.normal(size=(6, RANK)).round(6)
        listed = rows.tolist()
        bodies.append(({"instances": [{"observation": r} for r in listed]}, rows))
        batched = {"instances": [{"observation": listed[:3]}, {"observation": listed[3:]}]}
        bodies.append((batched, rows))
    return bodies


def answered(payload: dict[str, Any]) -> tuple[set[str], list[int]]:
    versions, actions = set(), []
    for p in payload["predictions"]:
        versions.add(p["policy_version"])
        actions.extend(p["actions"] if "actions" in p else [p["action"]])
    return versions, actions


def test_deploys_under_load_drop_nothing_and_never_mix_versions(
    policies: dict[str, Path], tmp_path: Path
):
    deployments = tmp_path / "deployments"
    deploy(str(policies[VERSIONS[0]]), str(deployments))
    expected = {v: load_policy(str(p)) for v, p in policies.items()}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"AIP_HTTP_PORT": str(port), "AIP_STORAGE_URI": str(deployments)}
    failures: list[str] = []
    seen: list[list[str]] = [[] for _ in range(CLIENTS)]
    done = threading.Event()

    async def client_loop(n: int) -> int:
        served = 0
        work = requests_for(n)
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            while not done.is_set():
                body, rows = work[served % len(work)]
                try:
                    response = await client.post("/predict", json=body)
                except httpx.HTTPError as err:
                    failures.append(f"client {n}: {type(err).__name__}: {err}")
                    continue
                served += 1
                if response.status_code != 200:
                    failures.append(f"client {n}: {response.status_code} {response.text}")
                    continue
                versions, actions = answered(response.json())
                if len(versions) != 1:
                    failures.append(f"client {n}: one response mixes {sorted(versions)}")
                    continue
                (version,) = versions
                if actions != expected[version].actions(rows).tolist():
                    failures.append(f"client {n}: actions of another version than {version}")
                if not seen[n] or seen[n][-1] != version:
                    seen[n].append(version)
        return served

    async def load() -> list[int]:
        return await asyncio.gather(*(client_loop(n) for n in range(CLIENTS)))

    with running([PYTHON, "-m", "app.predictor"], env, base + "/health"):
        counts: list[int] = []
        loader = threading.Thread(target=lambda: counts.extend(asyncio.run(load())))
        loader.start()
        try:
            for version in VERSIONS[1:]:
                time.sleep(0.5)
                deploy(str(policies[version]), str(deployments))
                deadline = time.monotonic() + 30
                while httpx.get(base + "/health").json()["policy_version"] != version:
                    assert time.monotonic() < deadline, f"{version} was never served"
                    time.sleep(0.05)
            time.sleep(0.5)
        finally:
            done.set()
            loader.join(60)

    assert not failures, failures[:5]
    assert sum(counts) > 50 and min(counts) > 0
    for versions in seen:  # each client saw the versions in deployment order, none twice
        assert versions == sorted(versions) and len(versions) == len(set(versions))
        assert versions[-1] == VERSIONS[-1]


class CyclicScorer:
    """Stands in for SavedModelScorer, whose TensorFlow object graph is full of reference
    cycles: only the cyclic collector can free it."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.myself = self
        self.ballast = np.ones(1 << 17)  # 1 MiB a policy: a leak shows in the heap

    def actions(self, observations: np.ndarray) -> np.ndarray:
        return self.inner.actions(observations)


def test_reloads_do_not_leak(trained_policy: Path):
    base = load_policy(str(trained_policy))
    metadata = read_metadata(str(trained_policy))
    built: list[weakref.ref[CyclicScorer]] = []

    def loader() -> ServingPolicy:
        scorer = CyclicScorer(base.scorer)
        built.append(weakref.ref(scorer))
        version = f"v{len(built)}"
        return ServingPolicy(
            dataclasses.replace(metadata, policy_version=version), scorer, str(trained_policy)
        )

    app = PredictorApp(loader, predict_route="/p")
    body = b'{"instances": [{"observation": [0.1, 0.2, 0.3, 0.4, 0.5]}]}'

    async def serve_one() -> int:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        headers = [(b"content-type", b"application/json")]
        scope = {"type": "http", "method": "POST", "path": "/p", "headers": headers}
        await app(scope, receive, send)
        return int(sent[0]["status"])

    async def reloads(n: int) -> None:
        for _ in range(n):
            await app.load()
            assert await serve_one() == 200

    asyncio.run(reloads(5))
    frozen = gc.get_freeze_count()
    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        asyncio.run(reloads(30))
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert gc.get_freeze_count() == frozen  # reloads freeze nothing more
    alive = [i for i, ref in enumerate(built) if ref() is not None]
    # The first policy is frozen with TensorFlow's objects at start-up; every replaced one
    # after it is freed; the last one serves.
    assert alive == [0, len(built) - 1]
    assert after - before < 2 * 2**20, f"{after - before} bytes kept over 30 reloads"
    gc.unfreeze()  # leave the collector as other tests expect it


def test_the_watcher_waits_for_the_first_load(trained_policy: Path):
    policy = load_policy(str(trained_policy))
    release = threading.Event()
    calls: list[int] = []

    def slow_loader() -> ServingPolicy:
        calls.append(1)
        release.wait(10)
        return policy

    app = PredictorApp(slow_loader, marker=lambda: "v1", reload_seconds=0.01)

    async def scenario() -> int:
        lifespan: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await lifespan.put({"type": "lifespan.startup"})

        async def send(message: dict[str, Any]) -> None:
            pass

        running_app = asyncio.create_task(app({"type": "lifespan"}, lifespan.get, send))
        await asyncio.sleep(0.3)  # many watch periods while the first load is still going
        release.set()
        while app.policy is None:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        await lifespan.put({"type": "lifespan.shutdown"})
        await running_app
        return len(calls)

    assert asyncio.run(scenario()) == 1
