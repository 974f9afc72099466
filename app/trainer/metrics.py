"""Per-loop training metrics with TF-Agents' bandit-metric semantics.

`regret` is RegretMetric's (optimal reward − received reward, averaged over the loop's
interactions), `suboptimal_arms` SuboptimalArmsMetric's (share of non-optimal actions) and
`average_return` the mean reward (a bandit episode is one step).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.environment import Outcome

SUMMARY_WINDOWS = 200


@dataclass
class LoopMetrics:
    loop: int
    regret: float
    suboptimal_arms: float
    average_return: float


@dataclass
class History:
    loops: list[LoopMetrics] = field(default_factory=list)
    interactions: int = 0
    seconds: float = 0.0

    def record(self, loop: int, actions: np.ndarray, outcomes: list[Outcome]) -> LoopMetrics:
        rewards = np.concatenate([o.rewards for o in outcomes])
        optimal = np.concatenate([o.optimal_rewards for o in outcomes])
        best_actions = np.concatenate([o.optimal_actions for o in outcomes])
        metrics = LoopMetrics(
            loop=loop,
            regret=float(np.mean(optimal - rewards)),
            suboptimal_arms=float(np.mean(actions != best_actions)),
            average_return=float(np.mean(rewards)),
        )
        self.loops.append(metrics)
        self.interactions += len(rewards)
        return metrics

    @property
    def interactions_per_second(self) -> float:
        return self.interactions / self.seconds if self.seconds > 0 else 0.0

    def mean_regret(self, last: int) -> float:
        return (
            float(np.mean([m.regret for m in self.loops[-last:]])) if self.loops else float("nan")
        )

    def to_json(self, **extra: Any) -> dict[str, Any]:
        return {
            "regret": [m.regret for m in self.loops],
            "suboptimal_arms": [m.suboptimal_arms for m in self.loops],
            "average_return": [m.average_return for m in self.loops],
            "interactions": self.interactions,
            "interactions_per_second": self.interactions_per_second,
            **extra,
        }

    def summary(self, **extra: Any) -> dict[str, Any]:
        """metrics.json: each curve as means over at most SUMMARY_WINDOWS windows of equal
        length (a 200,000-loop run stays a few kilobytes); every loop is in TensorBoard.
        Proved by tests/test_trainer.py::test_metrics_json_is_summarised_per_window."""
        window = max(1, -(-len(self.loops) // SUMMARY_WINDOWS))

        def means(key: str) -> list[float]:
            values = np.array([getattr(m, key) for m in self.loops])
            return [float(np.mean(values[i : i + window])) for i in range(0, len(values), window)]

        return {
            "loops": len(self.loops),
            "window_loops": window,
            "regret": means("regret"),
            "suboptimal_arms": means("suboptimal_arms"),
            "average_return": means("average_return"),
            "interactions": self.interactions,
            "interactions_per_second": self.interactions_per_second,
            **extra,
        }

    def dumps(self, **extra: Any) -> str:
        return json.dumps(self.to_json(**extra), indent=2)

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> History:
        loops = [
            LoopMetrics(i, r, s, a)
            for i, (r, s, a) in enumerate(
                zip(
                    payload["regret"],
                    payload["suboptimal_arms"],
                    payload["average_return"],
                    strict=True,
                )
            )
        ]
        return cls(loops=loops, interactions=int(payload["interactions"]))
