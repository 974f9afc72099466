"""The search space and objective, declared once for local and Vertex AI tuning.

Parameter names are the trainer's flag destinations (`TrainingArgs` fields), and
`best_hyperparameters.json` is keyed by them: the tuned value reaches exactly the flag it
was tuned as (the Vertex sample read its best trial under other keys and silently trained
with defaults). Each agent has its space (`search_space`): the bandits tune exploration and
ridge, the list-wise actor-critic its discount, learning rates and exploration; all minimise
the same metric (for lists, regret against the one-step oracle list, app/slate/run.py).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Final, cast

from app.agents import ACTOR_CRITIC
from app.hyperparameters import BEST_FILE as BEST_FILE  # the tuners write it
from app.trainer.flags import TrainingArgs
from app.trainer.metrics import History

METRIC: Final = "final_regret"
GOAL: Final = "minimize"


@dataclass(frozen=True)
class DoubleParameter:
    name: str
    low: float
    high: float
    log_scale: bool = True


BANDIT_SPACE: tuple[DoubleParameter, ...] = (
    DoubleParameter("agent_alpha", 0.1, 20.0),
    DoubleParameter("tikhonov_weight", 1e-4, 10.0),
)
ACTOR_CRITIC_SPACE: tuple[DoubleParameter, ...] = (
    DoubleParameter("gamma", 0.0, 0.99, log_scale=False),
    DoubleParameter("actor_learning_rate", 1e-4, 1e-2),
    DoubleParameter("critic_learning_rate", 1e-4, 1e-2),
    DoubleParameter("exploration_std", 0.05, 1.0, log_scale=False),
)


def search_space(agent: str) -> tuple[DoubleParameter, ...]:
    """What tuning varies for `agent` (tests/test_tuning.py, tests/test_slate_trainer.py)."""
    return ACTOR_CRITIC_SPACE if agent == ACTOR_CRITIC else BANDIT_SPACE


def objective(history: History) -> float:
    """Mean regret over the last fifth of the loops: where the policy has settled."""
    return history.mean_regret(last=max(1, len(history.loops) // 5))


def validate(values: dict[str, float], source: str, agent: str) -> dict[str, float]:
    """Checks names and ranges against `agent`'s space; the error names the offending key."""
    known = {p.name: p for p in search_space(agent)}
    clean: dict[str, float] = {}
    for name, value in values.items():
        if name not in known:
            raise ValueError(
                f"{source}: {name!r} is not a tuned hyper-parameter ({', '.join(known)})"
            )
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValueError(f"{source}: {name} must be a finite number, got {value!r}")
        p = known[name]
        if not p.low <= value <= p.high:
            raise ValueError(
                f"{source}: {name}={value} is outside the search range [{p.low}, {p.high}]"
            )
        clean[name] = float(value)
    missing = set(known) - set(clean)
    if missing:
        raise ValueError(f"{source}: missing {', '.join(sorted(missing))}")
    return clean


def dumps_best(agent: str, values: dict[str, float], objective_value: float) -> str:
    """best_hyperparameters.json: the agent the values were tuned for, and the values."""
    return json.dumps(
        {
            "agent": agent,
            "hyperparameters": validate(values, "best", agent),
            METRIC: objective_value,
        },
        indent=2,
    )


def loads_best(payload: str, source: str) -> tuple[str, dict[str, float]]:
    """(agent, values) of a best_hyperparameters.json; a ValueError (one line) says what is
    wrong with it."""
    try:
        document = json.loads(payload)
    except json.JSONDecodeError as err:
        raise ValueError(f"{source} is not valid JSON: {err}") from err
    if not isinstance(document, dict) or not isinstance(document.get("hyperparameters"), dict):
        raise ValueError(f"{source} must hold an object with a 'hyperparameters' object")
    agent = document.get("agent")
    if not isinstance(agent, str):
        raise ValueError(
            f"{source} does not record the agent it was tuned for; run `recloop tune` again"
        )
    return agent, validate(document["hyperparameters"], source, agent)


def check_agent(tuned_for: str, agent: str, source: str) -> None:
    if tuned_for != agent:
        raise ValueError(
            f"{source} was tuned for --agent {tuned_for}, not {agent}: train with --agent "
            f"{tuned_for}, or run `recloop tune --agent {agent}` first"
        )


def apply_best(
    args: TrainingArgs, payload: str, source: str
) -> tuple[TrainingArgs, dict[str, float]]:
    """`args` with the tuned values for the flags not given explicitly (those win), and the
    values applied. Proved by
    tests/test_tuning.py::test_best_values_record_the_agent_and_yield_to_flags."""
    tuned_for, values = loads_best(payload, source)
    check_agent(tuned_for, args.agent, source)
    applied = {k: v for k, v in values.items() if k not in args.explicit}
    return with_values(args, applied), applied


def with_values(args: TrainingArgs, values: dict[str, float]) -> TrainingArgs:
    """`args` with tuned values set (names already checked against the search space)."""
    return dataclasses.replace(args, **cast(dict[str, Any], values))


def read_best(path: str, agent: str) -> dict[str, float] | None:
    """The tuned values in `path` for `agent`, or None if there is no such file; a ValueError
    (one line) if they were tuned for another agent or the file is not one `recloop tune`
    wrote. What the pipelines' Trainer and `recloop pipeline run` apply.
    Proved by tests/test_tuning.py::test_pipelines_take_best_hyperparameters."""
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        tuned_for, values = loads_best(f.read(), path)
    check_agent(tuned_for, agent, path)
    return values
