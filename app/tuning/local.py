"""Local tuning with Optuna: trials run in parallel worker processes, one per core."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

from app.config import Settings
from app.paths import join
from app.trainer.flags import TrainingArgs
from app.tuning import space

TRIALS_FILE = "tuning_trials.json"


@dataclass(frozen=True)
class TuningResult:
    best: dict[str, float]
    best_value: float
    trials: list[tuple[dict[str, float], float]]
    best_path: str


def evaluate(args: TrainingArgs, settings: Settings, values: dict[str, float]) -> float:
    """One trial: train in memory with `values`, return the objective (no policy is saved)."""
    from app.agents import ACTOR_CRITIC
    from app.trainer.learners import make_learner
    from app.trainer.on_policy import train_on_policy
    from app.trainer.run import agent_spec, build_environment

    trial_args = space.with_values(args, values)
    if trial_args.agent == ACTOR_CRITIC:
        from app.slate.trainer import train_in_memory

        return space.objective(train_in_memory(trial_args, settings).history)
    env, _ = build_environment(trial_args, settings)
    learner = make_learner(agent_spec(trial_args), trial_args.seed)
    history = train_on_policy(env, learner, trial_args.training_loops, trial_args.steps_per_loop)
    return space.objective(history)


def tune(
    args: TrainingArgs,
    settings: Settings,
    trials: int,
    parallel: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> TuningResult:
    import optuna
    import tensorflow as tf

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    parallel = max(1, min(parallel or os.cpu_count() or 1, trials))
    distributions: dict[str, optuna.distributions.BaseDistribution] = {
        p.name: optuna.distributions.FloatDistribution(p.low, p.high, log=p.log_scale)
        for p in space.search_space(args.agent)
    }
    study = optuna.create_study(direction=space.GOAL, sampler=optuna.samplers.TPESampler(seed=seed))
    artifacts_dir = args.artifacts_dir or settings.artifacts_dir

    from rich.progress import Progress

    with (
        ProcessPoolExecutor(max_workers=parallel, mp_context=get_context("spawn")) as pool,
        Progress(disable=not progress) as bar,
    ):
        task = bar.add_task(f"tuning {args.agent} ({parallel} in parallel)", total=trials)
        done = 0
        while done < trials:
            batch = [study.ask(distributions) for _ in range(min(parallel, trials - done))]
            futures = [pool.submit(evaluate, args, settings, t.params) for t in batch]
            for trial, future in zip(batch, futures, strict=True):
                study.tell(trial, future.result())
                bar.advance(task)
            done += len(batch)

    best = {k: float(v) for k, v in study.best_params.items()}
    tf.io.gfile.makedirs(artifacts_dir)
    best_path = join(artifacts_dir, space.BEST_FILE)
    with tf.io.gfile.GFile(best_path, "w") as f:
        f.write(space.dumps_best(args.agent, best, float(study.best_value)))
    history = [(dict(t.params), float(t.value)) for t in study.trials if t.value is not None]
    return TuningResult(best, float(study.best_value), history, best_path)
