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
