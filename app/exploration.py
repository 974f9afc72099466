"""Exploration at serving time, with the exact probability of every action served.

A deterministic policy (LinUCB as trained) logs propensity 1 for the action it chose and 0
for every other: no off-policy estimate of another policy is possible from such logs. Serving
explores over the TF-Agents policy's scores instead, and the probability of the action served
is logged with it:

- `greedy`: the policy's own choice (propensity 1; for LinTS, no closed form: unknown);
- `epsilon_greedy`: the policy's choice with probability 1 − ε, else a uniform arm;
- `softmax`: arm a with probability exp(s_a / τ) / Σ_b exp(s_b / τ) over the policy's scores.

The same `probabilities` function gives a candidate policy's action distribution to the
off-policy estimators (app/evaluation/ope.py), so a candidate is judged as it would be served.
The served distribution equals the logged propensities: tests/test_exploration.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GREEDY = "greedy"
EPSILON_GREEDY = "epsilon_greedy"
SOFTMAX = "softmax"
KINDS = (GREEDY, EPSILON_GREEDY, SOFTMAX)


class ExplorationError(ValueError):
    """An exploration setting is out of range."""


@dataclass(frozen=True)
class Exploration:
    kind: str = GREEDY
    epsilon: float = 0.1  # epsilon_greedy: share of uniformly random actions
    temperature: float = 0.25  # softmax: in reward units (stars)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ExplorationError(
                f"serving.exploration must be one of {', '.join(KINDS)}, got {self.kind!r}"
            )
        if not 0.0 < self.epsilon <= 1.0 and self.kind == EPSILON_GREEDY:
            raise ExplorationError(f"serving.epsilon must be in (0, 1], got {self.epsilon}")
        if not self.temperature > 0.0 and self.kind == SOFTMAX:
            raise ExplorationError(f"serving.temperature must be > 0, got {self.temperature}")


def probabilities(scores: np.ndarray, exploration: Exploration) -> np.ndarray:
    """Each row's action distribution (rows × arms) given the policy's scores; the greedy
    arm is the first maximum, as np.argmax and TF-Agents' policies break ties."""
    scores = np.asarray(scores, dtype=np.float64)
    rows, arms = scores.shape
    if exploration.kind == SOFTMAX:
        shifted = (scores - scores.max(axis=1, keepdims=True)) / exploration.temperature
        weights = np.exp(shifted)
        return weights / weights.sum(axis=1, keepdims=True)
    greedy = np.zeros((rows, arms))
    greedy[np.arange(rows), np.argmax(scores, axis=1)] = 1.0
    if exploration.kind == GREEDY:
        return greedy
    return (1.0 - exploration.epsilon) * greedy + exploration.epsilon / arms


def one_hot(actions: np.ndarray, arms: int) -> np.ndarray:
    """A deterministic choice as a distribution (for policies that expose no scores)."""
    out = np.zeros((len(actions), arms))
    out[np.arange(len(actions)), np.asarray(actions, dtype=np.int64)] = 1.0
    return out


def sample(distribution: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One action per row drawn from `distribution`, and its probability (the propensity)."""
    cumulative = np.cumsum(distribution, axis=1)
    draws = rng.random((len(distribution), 1)) * cumulative[:, -1:]
    actions = np.minimum((cumulative <= draws).sum(axis=1), distribution.shape[1] - 1)
    return actions, distribution[np.arange(len(actions)), actions]
