"""The direct reward model of the doubly robust estimate: ridge regression per arm.

q̂(x, a) = [x, 1]·θ_a with θ_a = (X_aᵀX_a + λI)⁻¹ X_aᵀ r_a over the interactions where a was
served. Cross-fitted: each row is predicted by the model fitted on the other fold, so the
model's errors on a row are independent of that row's own reward (what DR's interval needs).
"""

from __future__ import annotations

import numpy as np

FOLDS = 2


def fit(contexts: np.ndarray, actions: np.ndarray, rewards: np.ndarray, arms: int, ridge: float):
    """θ (arms × (d + 1)); an arm with no data predicts 0 plus the ridge's shrinkage."""
    x = np.hstack([contexts, np.ones((len(contexts), 1))])
    d = x.shape[1]
    theta = np.zeros((arms, d))
    order = np.argsort(actions, kind="stable")
    bounds = np.searchsorted(actions[order], np.arange(arms + 1))
    for a in range(arms):
        rows = order[bounds[a] : bounds[a + 1]]
        xa = x[rows]
        theta[a] = np.linalg.solve(xa.T @ xa + ridge * np.eye(d), xa.T @ rewards[rows])
    return theta


def predict(theta: np.ndarray, contexts: np.ndarray) -> np.ndarray:
    return np.hstack([contexts, np.ones((len(contexts), 1))]) @ theta.T


def cross_fitted(
    contexts: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    arms: int,
    ridge: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """q̂ for every row and arm (n × arms), each row predicted by the other folds' model."""
    folds = np.random.default_rng(seed).integers(FOLDS, size=len(actions))
    predicted = np.empty((len(actions), arms))
    for k in range(FOLDS):
        held = folds == k
        theta = fit(contexts[~held], actions[~held], rewards[~held], arms, ridge)
        predicted[held] = predict(theta, contexts[held])
    return predicted
