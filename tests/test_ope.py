"""Off-policy estimates: coverage of the truth on the simulator; Open Bandit Pipeline agrees."""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from app.agents import AgentSpec, linear_bandit
from app.config import GateConfig
from app.environment import MovieLensBandit, factorize
from app.evaluation import ope, reward_model
from app.exploration import EPSILON_GREEDY, SOFTMAX, Exploration, probabilities, sample
from benchmarks import ope_coverage

FIXTURE = Path(__file__).parent / "fixtures" / "obp_worked_example.json"
USERS, ARMS, RANK = 1500, 8, 4
SEEDS, ROWS, CONFIDENCE = 300, 1000, 0.9


@pytest.fixture(scope="module")
def env() -> MovieLensBandit:
    rng = np.random.default_rng(5)
    taste = rng.normal(size=(USERS, 3)) @ rng.normal(size=(3, ARMS))
    ratings = np.clip(np.round(3 + taste), 1, 5)
    return MovieLensBandit(factorize(ratings, RANK, ARMS), batch_size=ROWS, seed=0)


def trained(env: MovieLensBandit, interactions: int, seed: int):
    """A LinUCB model trained on `interactions` uniformly random interactions."""
    model = linear_bandit(AgentSpec("linucb", ARMS, RANK, alpha=1.0, tikhonov_weight=1.0))
    rng = np.random.default_rng(seed)
    users = rng.integers(env.num_users, size=interactions)
    actions = rng.integers(ARMS, size=interactions)
    model.update(
        env.factorization.user_features[users],
        actions,
        env.factorization.approx_ratings[users, actions],
    )
    return model


@dataclass(frozen=True)
class Run:
    """One logged data set and the truth: the target's and the logging policy's expected
    reward on its contexts (the simulator's rewards are known)."""

    logged: ope.Logged
    target: np.ndarray  # the target's action distribution on the logged contexts
    truth: float
    served: np.ndarray  # the logging policy's action distribution on them
    served_truth: float


def logged_run(env, logging_model, target_model, seed) -> Run:
    """Users, an ε-greedy logging policy, a softmax target, and the truth for both."""
    rng = np.random.default_rng(seed)
    users = rng.choice(env.num_users, size=ROWS, replace=False)
    x = env.factorization.user_features[users]
    served = probabilities(logging_model.scores(x), Exploration(EPSILON_GREEDY, epsilon=0.3))
    actions, propensities = sample(served, rng)
    rewards = env.outcome(users, actions).rewards
    target = probabilities(target_model.scores(x), Exploration(SOFTMAX, temperature=0.3))
    expected = env.factorization.approx_ratings[users]
    truth = float((target * expected).sum(axis=1).mean())
    served_truth = float((served * expected).sum(axis=1).mean())
    return Run(ope.Logged(x, actions, rewards, propensities), target, truth, served, served_truth)


def at_stated_rate(hits: int, trials: int, confidence: float) -> bool:
    """Whether `hits` of `trials` is the stated rate, within 3 binomial standard deviations
    on either side: too rarely is overconfident, too often is an interval wider than stated
    (an infinite interval "covers" every time)."""
    return abs(hits / trials - confidence) <= 3 * np.sqrt(confidence * (1 - confidence) / trials)


def test_intervals_cover_the_true_value_at_their_stated_rate(env: MovieLensBandit):
    """Over 300 seeds, each 90% interval (IPS, SNIPS, DR) holds the target's true expected
    reward on the logged contexts 90% ± 3 binomial standard deviations of the time; the
    logging and target policies differ (the logged mean is far from the truth)."""
    logging_model, target_model = trained(env, 60, seed=1), trained(env, 3000, seed=2)
    covered = {name: 0 for name in ope.ESTIMATORS}
    gaps = []
    for seed in range(SEEDS):
        run = logged_run(env, logging_model, target_model, seed)
        logged = run.logged
        predicted = reward_model.cross_fitted(logged.contexts, logged.actions, logged.rewards, ARMS)
        for name, e in ope.estimate_all(logged, run.target, predicted, CONFIDENCE).items():
            covered[name] += e.low <= run.truth <= e.high
        gaps.append(run.truth - logged.rewards.mean())
    rates = {name: count / SEEDS for name, count in covered.items()}
    assert all(at_stated_rate(count, SEEDS, CONFIDENCE) for count in covered.values()), rates
    assert np.mean(gaps) > 0.2  # the estimators had to correct for the logging policy


def test_the_gate_lower_bound_holds_the_true_difference_at_its_rate(env: MovieLensBandit):
    """The gate's statistic (app/evaluation/gate.py): the one-sided 90% lower bound of
    V̂(candidate) − V̂(serving), paired on the same rows, lies below the true difference
    90% ± 3 binomial standard deviations of 300 seeds, for each estimator; the serving
    policy is the logging one, as in the re-training loop."""
    logging_model, target_model = trained(env, 60, seed=1), trained(env, 3000, seed=2)
    held = {name: 0 for name in ope.ESTIMATORS}
    for seed in range(SEEDS):
        run = logged_run(env, logging_model, target_model, seed)
        logged = run.logged
        predicted = reward_model.cross_fitted(logged.contexts, logged.actions, logged.rewards, ARMS)
        for name in ope.ESTIMATORS:
            _, low = ope.difference_lower_bound(
                name, logged, run.target, run.served, predicted, CONFIDENCE
            )
            held[name] += low <= run.truth - run.served_truth
    rates = {name: count / SEEDS for name, count in held.items()}
    assert all(at_stated_rate(count, SEEDS, CONFIDENCE) for count in held.values()), rates


@pytest.fixture(scope="module")
def gate_regime() -> dict[str, tuple[float, float]]:
    """benchmarks/ope_coverage.py's measurement in the regime the gate runs in: 20 arms,
    ε = 0.1 ε-greedy serving and candidate (dev, prod), 512 logged rows, 300 seeds, 90%."""
    assert (ope_coverage.SEEDS, ope_coverage.CONFIDENCE) == (SEEDS, CONFIDENCE)
    return ope_coverage.measure(ope_coverage.environment(), rows=512, epsilon=0.1)


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="known shortfall, docs/safe-promotion.md 'Where that rate is proved': with 20 arms "
    "and ε = 0.1 a row explored onto the candidate's choice weighs ~181 and is rarely drawn in "
    "512 rows; the normal intervals then lie below the truth (IPS ~0.78, SNIPS ~0.60, "
    "DR ~0.63). Strict: the day they hold, this fails so that the docs are corrected.",
)
def test_intervals_cover_the_true_value_at_their_stated_rate_in_the_gate_regime(gate_regime):
    """The same two-sided check as the friendly regime above, in the gate's regime."""
    rates = {name: covered for name, (covered, _) in gate_regime.items()}
    assert all(at_stated_rate(round(r * SEEDS), SEEDS, CONFIDENCE) for r in rates.values()), rates


def test_the_gate_lower_bound_holds_at_least_its_rate_in_the_gate_regime(gate_regime):
    """What the gate decides on (the paired one-sided 90% lower bound with its default
    estimator, DR) lies below the true difference at least 90% − 3 binomial standard
    deviations of the time in the gate's regime (it is conservative there, ~0.97)."""
    _, held = gate_regime[GateConfig().estimator]
    floor = CONFIDENCE - 3 * np.sqrt(CONFIDENCE * (1 - CONFIDENCE) / SEEDS)
    assert held >= floor, gate_regime


def test_the_coverage_check_rejects_an_estimator_that_ignores_propensities(env):
    """Negative control: the logged mean reward with its own interval is not an estimate of
    the target's value, and the same check fails it."""
    logging_model, target_model = trained(env, 60, seed=1), trained(env, 3000, seed=2)
    covered = 0
    for seed in range(100):
        run = logged_run(env, logging_model, target_model, seed)
        r = run.logged.rewards
        half = ope.z_value(CONFIDENCE) * r.std(ddof=1) / np.sqrt(len(r))
        covered += r.mean() - half <= run.truth <= r.mean() + half
    assert not at_stated_rate(covered, 100, CONFIDENCE)


def test_the_coverage_check_rejects_intervals_wider_than_stated(env):
    """Negative control: DR's estimates with intervals twice as wide as its 90% ones cover
    nearly always (about 99.9%); that is not 90% coverage, and the same check fails it."""
    logging_model, target_model = trained(env, 60, seed=1), trained(env, 3000, seed=2)
    covered = 0
    for seed in range(SEEDS):
        run = logged_run(env, logging_model, target_model, seed)
        logged = run.logged
        predicted = reward_model.cross_fitted(logged.contexts, logged.actions, logged.rewards, ARMS)
        e = ope.dr(logged, run.target, predicted, CONFIDENCE)
        half = e.high - e.value
        covered += e.value - 2 * half <= run.truth <= e.value + 2 * half
    assert not at_stated_rate(covered, SEEDS, CONFIDENCE)


def test_matches_open_bandit_pipeline():
    """The worked example (tests/fixtures/obp_worked_example.py, run once with obp 0.5.7 in a
    throwaway environment): the same point estimates to 1e-9. OBP's intervals are bootstrap
    ones, ours normal: for IPS and DR they agree in location and width to within 15%. For
    SNIPS, OBP bootstraps the mean of w_i r_i / mean(w) with the denominator held fixed (so
    the rewards' offset, ~3 stars, stays in its spread); ours linearises the ratio (the
    delta method), which is narrower here and calibrated by the coverage test above. The
    interval of OBP's own terms, computed our way, matches OBP's."""
    fixture = json.loads(FIXTURE.read_text())
    i = {k: np.array(v) for k, v in fixture["inputs"].items()}
    logged = ope.Logged(i["contexts"], i["actions"], i["rewards"], i["propensities"])
    ours = ope.estimate_all(logged, i["target"], i["predicted"], 0.95)
    for name, reference in fixture["obp"].items():
        assert ours[name].value == pytest.approx(reference["value"], abs=1e-9)
    w = ope.weights(logged, i["target"])
    obp_snips_terms = w * logged.rewards / w.mean()
    compared = {
        ope.IPS: ours[ope.IPS],
        ope.DR: ours[ope.DR],
        ope.SNIPS: ope.interval(obp_snips_terms.mean(), obp_snips_terms, 0.95),
    }
    for name, estimate in compared.items():
        low, high = fixture["obp"][name]["bootstrap_95"]
        assert estimate.high - estimate.low == pytest.approx(high - low, rel=0.15), name
        assert (estimate.low + estimate.high) / 2 == pytest.approx(
            (low + high) / 2, abs=0.15 * (high - low)
        ), name
    snips = ours[ope.SNIPS]
    assert snips.high - snips.low < 0.5 * (compared[ope.SNIPS].high - compared[ope.SNIPS].low)


def test_cross_fitted_reward_model_recovers_a_linear_reward():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 3))
    actions = rng.integers(4, size=4000)
    theta = rng.normal(size=(4, 3))
    rewards = (x @ theta.T)[np.arange(4000), actions] + 2.0
    predicted = reward_model.cross_fitted(x, actions, rewards, 4, ridge=1e-3)
    np.testing.assert_allclose(predicted, x @ theta.T + 2.0, atol=0.01)


@pytest.mark.parametrize(
    ("propensities", "problem"),
    [([0.5, 0.0], "propensity"), ([0.5, np.nan], "propensity"), ([0.5, 1.5], "propensity")],
)
def test_logged_data_without_valid_propensities_is_refused(propensities, problem):
    with pytest.raises(ope.EvaluationError, match=problem):
        ope.Logged(np.zeros((2, 1)), np.array([0, 1]), np.ones(2), np.array(propensities))
