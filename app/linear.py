"""Vectorised LinUCB / Linear Thompson Sampling: TF-Agents' linear bandit math in numpy.

State and update rule are those of `LinearBanditAgent` (gamma = 1, no bias): per model, a
covariance `A = Σ x xᵀ` and a data vector `b = Σ r x`; scoring is that of
`LinearBanditPolicy`: with `M = A + λI`, mean `bᵀ M⁻¹ x`, variance `xᵀ M⁻¹ x`. One model per
arm, or one shared model over [global, arm] features for per-arm observations. Parity tests
check both against TF-Agents itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.environment import GLOBAL_KEY, PER_ARM_KEY, Observation

UCB = "ucb"
THOMPSON = "thompson"


@dataclass
class LinearState:
    """The variables TF-Agents keeps for a linear bandit agent, one row per model."""

    cov_matrix: np.ndarray  # models × d × d
    data_vector: np.ndarray  # models × d
    num_samples: np.ndarray  # models

    @classmethod
    def zeros(cls, num_models: int, dim: int) -> LinearState:
        return cls(
            np.zeros((num_models, dim, dim)), np.zeros((num_models, dim)), np.zeros(num_models)
        )


class LinearBandit:
    CHUNK_ROWS = 4096  # bounds the arms × rows × d scratch array of an update

    def __init__(
        self,
        num_actions: int,
        context_dim: int,
        *,
        alpha: float,
        tikhonov_weight: float,
        strategy: str = UCB,
        per_arm: bool = False,
        arm_dim: int = 0,
        seed: int | None = None,
    ):
        if strategy not in (UCB, THOMPSON):
            raise ValueError(f"unknown exploration strategy {strategy!r}")
        if alpha < 0 or tikhonov_weight <= 0:
            raise ValueError("alpha must be ≥ 0 and tikhonov_weight > 0")
        self.num_actions = num_actions
        self.per_arm = per_arm
        self.dim = context_dim + (arm_dim if per_arm else 0)
        self.alpha = alpha
        self.tikhonov_weight = tikhonov_weight
        self.strategy = strategy
        self.rng = np.random.default_rng(seed)
        self.state = LinearState.zeros(1 if per_arm else num_actions, self.dim)
        self._refresh()

    # -- training ---------------------------------------------------------------------------
    def update(self, observations: Observation, actions: np.ndarray, rewards: np.ndarray) -> None:
        """Adds a batch of (observation, action, reward) rows, as `agent.train` would."""
        actions = np.asarray(actions, dtype=np.int64).reshape(-1)
        rewards = np.asarray(rewards, dtype=np.float64).reshape(-1)
        s = self.state
        if self.per_arm:
            x = self._chosen_features(observations, actions)
            s.cov_matrix[0] += x.T @ x
            s.data_vector[0] += rewards @ x
            s.num_samples[0] += len(actions)
        else:
            x = np.asarray(observations, dtype=np.float64)
            for start in range(0, len(actions), self.CHUNK_ROWS):
                rows = slice(start, start + self.CHUNK_ROWS)
                self._update_disjoint(x[rows], actions[rows], rewards[rows])
        self._refresh()

    def _update_disjoint(self, x: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> None:
        # Rows masked per arm (arms × rows × d): every arm's XᵀX is then one batched matmul.
        mask = (actions[None, :] == np.arange(self.num_actions)[:, None]).astype(np.float64)
        masked = mask[:, :, None] * x[None, :, :]
        s = self.state
        s.cov_matrix += np.matmul(masked.transpose(0, 2, 1), masked)
        s.data_vector += (mask * rewards[None, :]) @ x
        s.num_samples += mask.sum(axis=1)

    def set_state(self, state: LinearState) -> None:
        self.state = state
        self._refresh()

    def _refresh(self) -> None:
        """Caches M⁻¹ and θ = M⁻¹ b so that scoring is two einsums."""
        eye = np.eye(self.dim)
        self._inverse = np.linalg.inv(self.state.cov_matrix + self.tikhonov_weight * eye)
        self._theta = np.matmul(self._inverse, self.state.data_vector[:, :, None])[:, :, 0]
        # [M₀⁻¹ | M₁⁻¹ | …] side by side: x·M_k⁻¹ for every arm k is then one GEMM.
        self._inverse_side_by_side = self._inverse.transpose(1, 0, 2).reshape(self.dim, -1)

    # -- scoring ----------------------------------------------------------------------------
    def mean_and_variance(self, observations: Observation) -> tuple[np.ndarray, np.ndarray]:
        """Estimated reward and its variance, each batch × num_actions."""
        if self.per_arm:
            assert isinstance(observations, dict)
            g = np.asarray(observations[GLOBAL_KEY], dtype=np.float64)
            arms = np.asarray(observations[PER_ARM_KEY], dtype=np.float64)
            x = np.concatenate(
                [np.broadcast_to(g[:, None, :], (*arms.shape[:2], g.shape[1])), arms], axis=2
            )
            mean = x @ self._theta[0]
            variance = np.sum((x @ self._inverse[0]) * x, axis=2)
        else:
            x = np.asarray(observations, dtype=np.float64)
            mean = x @ self._theta.T
            x_inverse = (x @ self._inverse_side_by_side).reshape(len(x), -1, self.dim)
            variance = np.einsum("bkj,bj->bk", x_inverse, x)
        return mean, np.maximum(variance, 0.0)

    def scores(self, observations: Observation) -> np.ndarray:
        mean, variance = self.mean_and_variance(observations)
        spread = self.alpha * np.sqrt(variance)
        if self.strategy == UCB:
            return mean + spread
        return self.rng.normal(mean, spread)

    def act(self, observations: Observation) -> np.ndarray:
        return np.argmax(self.scores(observations), axis=1)

    def _chosen_features(self, observations: Observation, actions: np.ndarray) -> np.ndarray:
        assert isinstance(observations, dict)
        g = np.asarray(observations[GLOBAL_KEY], dtype=np.float64)
        arms = np.asarray(observations[PER_ARM_KEY], dtype=np.float64)
        return np.concatenate([g, arms[np.arange(len(actions)), actions]], axis=1)
