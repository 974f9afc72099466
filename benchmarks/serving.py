"""Serving: requests/s and latency under wrk, 16 connections, for recloop and the baseline."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.local.processes import PYTHON, free_port, running

CONNECTIONS = 16
DURATION_S = 10
REPEATS = 3  # each row is the median run of three, so one noisy interval cannot decide it


@dataclass(frozen=True)
class LoadResult:
    name: str
    instances_per_request: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def predictions_per_second(self) -> float:
        return self.requests_per_second * self.instances_per_request


def require_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is needed for the serving benchmark: apt-get install wrk")
    return wrk


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def load(
    url: str, body: bytes, name: str, instances: int, duration: int = DURATION_S
) -> LoadResult:
    with tempfile.TemporaryDirectory() as scratch:
        body_file = Path(scratch, "body.json")
        body_file.write_bytes(body)
        script = Path(scratch, "post.lua")
        script.write_text(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'local f = io.open("{body_file}", "rb")\nwrk.body = f:read("*a")\nf:close()\n'
        )
        out = subprocess.run(
            [
                require_wrk(),
                "-t1",
                f"-c{CONNECTIONS}",
                f"-d{duration}s",
                "--latency",
                "-s",
                str(script),
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return LoadResult(name, instances, rps, p50, p99, int(errors.group(1)) if errors else 0)


def median_load(url: str, body: bytes, name: str, instances: int) -> LoadResult:
    runs = sorted(
        (load(url, body, name, instances) for _ in range(REPEATS)),
        key=lambda r: r.requests_per_second,
    )
    return runs[len(runs) // 2]


def synthetic_per_arm_policy(movies: int, rank_k: int, seed: int = 0):
    """A per-arm LinUCB PerArmPolicy over `movies` random movie features, its statistics from
    256 logged rows (no TensorFlow: the in-process decision benchmark)."""
    from app.agents import LINUCB, AgentSpec, linear_bandit
    from app.environment import GLOBAL_KEY, PER_ARM_KEY, interaction_features
    from app.policy_store import Catalogue, PolicyMetadata
    from app.predictor.policy import LinearArmScorer, PerArmPolicy

    rng = np.random.default_rng(seed)
    features = rng.normal(size=(movies, rank_k))
    metadata = PolicyMetadata(LINUCB, True, 20, rank_k, 1.0, 0.001, "v-bench")
    model = linear_bandit(AgentSpec(LINUCB, 20, rank_k, 1.0, 0.001, per_arm=True))
    users = rng.normal(size=(256, rank_k))
    shown = features[rng.integers(movies, size=(256, 20))]
    model.update(
        {GLOBAL_KEY: users, PER_ARM_KEY: interaction_features(users, shown)},
        rng.integers(20, size=256),
        rng.normal(size=256),
    )
    ids = np.arange(1, movies + 1)
    catalogue = Catalogue(ids, [f"Movie {i}" for i in ids], features)
    return PerArmPolicy(
        metadata, LinearArmScorer(metadata, model.state, catalogue), catalogue, "memory"
    )


def body_of(instances: int, rank_k: int, seed: int = 0) -> bytes:
    rows = np.random.default_rng(seed).normal(size=(instances, rank_k)).round(6).tolist()
    return json.dumps({"instances": [{"observation": r} for r in rows]}).encode()


PER_ARM = "recloop predictor, per-arm over 1,682 movies"


def bench_serving(policy_dir: str, rank_k: int, per_arm_dir: str | None = None) -> list[LoadResult]:
    """The global policy at 1 and 100 instances per request, the per-arm one (whole catalogue,
    one instance per request) if given, then the baseline."""
    results = []
    single, batch = body_of(1, rank_k), body_of(100, rank_k)
    for served in (policy_dir, per_arm_dir):
        if served is None:
            continue
        port = free_port()
        env = {"AIP_STORAGE_URI": served, "AIP_HTTP_PORT": str(port)}
        base = f"http://127.0.0.1:{port}"
        with running([PYTHON, "-m", "app.predictor"], env, base + "/health"):
            load(base + "/predict", single, "warm-up", 1, duration=2)
            if served == per_arm_dir:
                results.append(median_load(base + "/predict", single, PER_ARM, 1))
                continue
            results.append(median_load(base + "/predict", single, "recloop predictor", 1))
            results.append(median_load(base + "/predict", batch, "recloop predictor", 100))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [PYTHON, "-m", "benchmarks.baseline_server", str(port), policy_dir]
    with running(command, {}, base + "/health"):
        load(base + "/predict", single, "warm-up", 1, duration=2)
        results.append(load(base + "/predict", single, "baseline (FastAPI + SavedModel)", 1))
        results.append(load(base + "/predict", batch, "baseline (FastAPI + SavedModel)", 100))
    return results


def bench_serving_isolated(
    policy_dir: str, rank_k: int, per_arm_dir: str | None = None
) -> list[LoadResult]:
    """Runs the serving benchmark from a fresh, quiet process: on two cores, a parent that
    still holds TensorFlow's thread pools or animates a progress spinner measurably slows
    the server under test."""
    out = subprocess.run(
        [PYTHON, "-m", "benchmarks.serving", policy_dir, str(rank_k), *filter(None, [per_arm_dir])],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [LoadResult(**row) for row in json.loads(out.strip().splitlines()[-1])]


if __name__ == "__main__":
    import dataclasses
    import sys

    rows = bench_serving(sys.argv[1], int(sys.argv[2]), *sys.argv[3:4])
    print(json.dumps([dataclasses.asdict(r) for r in rows]))
