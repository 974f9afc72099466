"""Exploration at serving: what is served follows exactly the propensities that are logged."""

import asyncio
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.config import ServingConfig
from app.exploration import (
    EPSILON_GREEDY,
    SOFTMAX,
    Exploration,
    ExplorationError,
    probabilities,
    sample,
)
from app.predictor.asgi import exploration_of
from app.predictor.policy import load_policy
from app.predictor.server import PredictorApp

RANK = 5
ARMS = 10


class RecordingSink:
    def __init__(self) -> None:
        self.rows: list[tuple[int, int, float | None]] = []  # context id, action, propensity

    def record(self, served):
        for o, a, p in zip(served.observations, served.actions, served.propensities, strict=True):
            self.rows.append((round(float(o[0]) * 1000), int(a), float(p)))


def serve_many(app: PredictorApp, contexts: np.ndarray, times: int, per_request: int = 500) -> None:
    """Every context asked about `times` times, in requests of up to `per_request` instances."""
    rows = np.repeat(contexts, times, axis=0).tolist()

    async def go() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://p") as client:
            for start in range(0, len(rows), per_request):
                chunk = rows[start : start + per_request]
                body = {"instances": [{"observation": r} for r in chunk]}
                response = await client.post("/predict", json=body)
                assert response.status_code == 200

    asyncio.run(go())


def contexts(n: int) -> np.ndarray:
    rows = np.random.default_rng(3).normal(size=(n, RANK))
    rows[:, 0] = np.arange(n) / 1000  # a tag the sink reads back
    return rows


@pytest.mark.parametrize(
    "exploration",
    [Exploration(EPSILON_GREEDY, epsilon=0.3), Exploration(SOFTMAX, temperature=0.05)],
    ids=["epsilon_greedy", "softmax"],
)
def test_served_distribution_equals_the_logged_propensities(
    trained_policy: Path, exploration: Exploration
):
    """Over 3,000 served predictions per context, each arm's frequency lies within 4.5
    binomial standard deviations of the logged propensity (every arm, every context), the
    logged propensities of one context are one distribution (they sum to 1 over the arms),
    and its most likely arm is the TF-Agents SavedModel's own action."""
    policy = load_policy(str(trained_policy), exploration=exploration)
    sink = RecordingSink()
    app = PredictorApp(lambda: policy, sink=sink, rng=np.random.default_rng(11))
    asyncio.run(app.load())
    probe = contexts(4)
    requests = 3000
    serve_many(app, probe, requests)

    canonical = load_policy(str(trained_policy), fast_path=False).actions(probe)
    for c in range(len(probe)):
        mine = [(a, p) for cid, a, p in sink.rows if cid == c]
        assert len(mine) == requests
        logged: dict[int, float] = {}
        for a, p in mine:
            assert logged.setdefault(a, p) == pytest.approx(p, abs=1e-12)  # one value per arm
        counts = np.bincount([a for a, _ in mine], minlength=ARMS)
        expected = policy.distribution(probe[c : c + 1])[0]
        for a in logged:
            assert logged[a] == pytest.approx(expected[a], abs=1e-12)
        spread = np.sqrt(requests * expected * (1 - expected))
        assert np.all(np.abs(counts - requests * expected) <= 4.5 * spread + 1e-9), (
            counts,
            requests * expected,
        )
        assert expected.sum() == pytest.approx(1.0)
        assert int(np.argmax(expected)) == int(canonical[c])


def test_greedy_logs_propensity_one_and_serves_the_policy_action(trained_policy: Path):
    policy = load_policy(str(trained_policy))
    sink = RecordingSink()
    app = PredictorApp(lambda: policy, sink=sink)
    asyncio.run(app.load())
    probe = contexts(6)
    serve_many(app, probe, 2)
    assert [a for _, a, _ in sink.rows] == policy.actions(probe).tolist() * 2
    assert {p for _, _, p in sink.rows} == {1.0}


def test_sample_draws_each_arm_at_its_probability():
    distribution = np.tile([0.5, 0.0, 0.2, 0.3], (200_000, 1))
    actions, chances = sample(distribution, np.random.default_rng(0))
    assert np.bincount(actions, minlength=4)[1] == 0  # a zero-probability arm is never drawn
    np.testing.assert_allclose(np.bincount(actions) / len(actions), [0.5, 0, 0.2, 0.3], atol=0.005)
    np.testing.assert_array_equal(chances, distribution[0][actions])


def test_probabilities_are_distributions_with_the_greedy_arm_first():
    scores = np.array([[1.0, 3.0, 3.0, 0.0], [0.0, 0.0, 0.0, 5.0]])
    eps = probabilities(scores, Exploration(EPSILON_GREEDY, epsilon=0.2))
    np.testing.assert_allclose(eps, [[0.05, 0.85, 0.05, 0.05], [0.05, 0.05, 0.05, 0.85]])
    soft = probabilities(scores, Exploration(SOFTMAX, temperature=1.0))
    np.testing.assert_allclose(soft.sum(axis=1), 1.0)
    assert soft[0, 1] == pytest.approx(soft[0, 2]) and soft[0, 1] > soft[0, 0] > soft[0, 3]


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        (ServingConfig(exploration="boltzmann"), "serving.exploration"),
        (ServingConfig(exploration="epsilon_greedy", epsilon=0.0), "serving.epsilon"),
        (ServingConfig(exploration="softmax", temperature=-1), "serving.temperature"),
    ],
)
def test_bad_exploration_settings_are_named(settings: ServingConfig, named: str):
    with pytest.raises(ExplorationError, match=named):
        exploration_of(settings)
