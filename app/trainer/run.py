"""Runs one training job end to end: data → environment → learner → saved policy + reports."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from app import movielens, publish
from app.agents import ACTOR_CRITIC, AgentSpec
from app.config import Settings
from app.environment import MovieLensBandit, MovieLensPerArmBandit, factorize, factorize_per_arm
from app.paths import join
from app.policy_store import TRAINED_DIR, TRAINED_PER_ARM_DIR, Catalogue, PolicyMetadata
from app.trainer import report
from app.trainer.checkpoint import Checkpoints
from app.trainer.flags import TrainingArgs
from app.trainer.learners import make_learner
from app.trainer.metrics import History, LoopMetrics
from app.trainer.on_policy import train_on_policy
from app.tuning import space

# What a resumed run must share with the run that wrote the checkpoint.
RUN_IDENTITY = (
    "data_path",
    "agent",
    "per_arm",
    "rank_k",
    "num_actions",
    "batch_size",
    "steps_per_loop",
    "agent_alpha",
    "tikhonov_weight",
    "seed",
)


@dataclass(frozen=True)
class TrainingResult:
    args: TrainingArgs
    history: History
    objective: float
    policy_dir: str
    metrics_path: str
    resumed_from_loop: int = 0


def resolve_args(args: TrainingArgs, settings: Settings) -> tuple[TrainingArgs, str | None]:
    """Fills the artifacts dir from the profile and applies tuned values when asked; also
    says where the tuned values came from (None: none were used)."""
    args = dataclasses.replace(args, artifacts_dir=args.artifacts_dir or settings.artifacts_dir)
    if not args.train_with_best_hyperparameters:
        return args, None
    import tensorflow as tf

    path = join(str(args.artifacts_dir), space.BEST_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"--train-with-best-hyperparameters: {path} does not exist; run `recloop tune` first"
        )
    with tf.io.gfile.GFile(path) as f:
        args, applied = space.apply_best(args, f.read(), path)
    return args, f"{', '.join(sorted(applied)) or 'nothing'} from {path}"


def describe_hyperparameters(args: TrainingArgs, tuned: str | None) -> str:
    """The values a run uses, and which came from tuning (printed before training starts)."""
    values = ", ".join(
        f"{p.name}={getattr(args, p.name):.4g}" for p in space.search_space(args.agent)
    )
    return f"{args.agent}: {values}" + (f" (tuned: {tuned})" if tuned else "")


def build_environment(
    args: TrainingArgs, settings: Settings
) -> tuple[MovieLensBandit | MovieLensPerArmBandit, list[str]]:
    files = movielens.locate(
        args.data_path, settings.data.movielens_dir, settings.data.cache_dir, settings.data.download
    )
    ratings = movielens.load_ratings_matrix(files.ratings)
    env: MovieLensBandit | MovieLensPerArmBandit
    if args.per_arm:
        env = MovieLensPerArmBandit(
            factorize_per_arm(ratings, args.rank_k), args.batch_size, args.num_actions, args.seed
        )
        # Per-arm policies choose from every movie: the titles of the whole catalogue.
        titles = movielens.load_titles(files.items, ratings.shape[1])
    else:
        env = MovieLensBandit(
            factorize(ratings, args.rank_k, args.num_actions), args.batch_size, args.seed
        )
        titles = movielens.load_titles(files.items, args.num_actions)
    return env, titles


def agent_spec(args: TrainingArgs) -> AgentSpec:
    return AgentSpec(
        name=args.agent,
        num_actions=args.num_actions,
        context_dim=args.rank_k,
        alpha=args.agent_alpha,
        tikhonov_weight=args.tikhonov_weight,
        per_arm=args.per_arm,
    )


def run(
    args: TrainingArgs, settings: Settings, say: Callable[[str], None] | None = None
) -> TrainingResult:
    """`say` hears what a person should read before training starts (the values used)."""
    args, tuned = resolve_args(args, settings)
    if say is not None:
        say(f"hyper-parameters of {describe_hyperparameters(args, tuned)}")
    if args.agent == ACTOR_CRITIC:
        from app.slate.trainer import run_actor_critic

        return run_actor_critic(args, settings, say)
    env, titles = build_environment(args, settings)
    learner = make_learner(agent_spec(args), args.seed)
    checkpoint_dir = settings.vertex_job.checkpoint_dir
    checkpoints = Checkpoints(checkpoint_dir, run_identity(args)) if checkpoint_dir else None
    history = checkpoints.restore(learner, env) if checkpoints else History()
    resumed_from_loop = len(history.loops)

    def after_loop(metrics: LoopMetrics) -> None:
        if checkpoints and (metrics.loop + 1) % args.checkpoint_every == 0:
            checkpoints.save(learner, env, history)

    def train(on_loop: Callable[[LoopMetrics], None]) -> History:
        return train_on_policy(
            env, learner, args.training_loops, args.steps_per_loop, history, on_loop
        )

    history = train_with_progress(args, len(history.loops), after_loop, train)
    if checkpoints:
        checkpoints.save(learner, env, history)
    policy_dir = settings.vertex_job.model_dir or join(
        str(args.artifacts_dir), TRAINED_PER_ARM_DIR if args.per_arm else TRAINED_DIR
    )
    return publish_run(
        args,
        settings,
        history,
        publish.Deferred(
            f"the TF-Agents {args.agent} policy from the learned parameters",
            lambda: learner.export_agent().policy,
        ),
        policy_dir,
        publish.bandit_metadata(
            agent_spec(args), policy_version(args), titles, history.interactions
        ),
        f"{args.agent} on MovieLens ({args.num_actions} movies)",
        resumed_from_loop=resumed_from_loop,
        catalogue=catalogue_of(env, titles),
        say=say,
    )


def policy_version(args: TrainingArgs) -> str:
    return args.policy_version or publish.new_version()


def publish_run(
    args: TrainingArgs,
    settings: Settings,
    history: History,
    policy: Any | publish.Deferred,
    policy_dir: str,
    metadata: PolicyMetadata,
    title: str,
    resumed_from_loop: int = 0,
    catalogue: Catalogue | None = None,
    say: Callable[[str], None] | None = None,
    **metrics: Any,
) -> TrainingResult:
    """Publishes any agent's training job (app/publish.py): TensorBoard, then the policy with
    metrics.json (the history's summary plus `metrics`), the curves and its `catalogue` (if
    per-arm) inside its folder; and reports the tuning metric when a trial."""
    artifacts_dir = str(args.artifacts_dir)
    objective = space.objective(history)
    version = metadata.policy_version
    published = publish.publish(
        policy,
        policy_dir,
        metadata,
        history.summary(
            seed=args.seed,
            hyperparameters={p.name: getattr(args, p.name) for p in space.search_space(args.agent)},
            objective={"name": space.METRIC, "value": objective},
            resumed_from_loop=resumed_from_loop,
            **metrics,
        ),
        plot=report.curves(history, title),
        also=[
            (
                f"TensorBoard ({len(history.loops)} loops)",
                lambda: report.write_tensorboard(
                    settings.vertex_job.tensorboard_log_dir
                    or join(join(artifacts_dir, report.TENSORBOARD_DIR), version),
                    history,
                ),
            )
        ],
        catalogue=catalogue,
        say=say,
    )
    if args.run_hyperparameter_tuning:
        import hypertune

        hypertune.HyperTune().report_hyperparameter_tuning_metric(
            hyperparameter_metric_tag=space.METRIC,
            metric_value=objective,
            global_step=len(history.loops),
        )
    return TrainingResult(
        args, history, objective, policy_dir, published.metrics_path, resumed_from_loop
    )


def catalogue_of(
    env: MovieLensBandit | MovieLensPerArmBandit, titles: list[str]
) -> Catalogue | None:
    """What a per-arm policy is served over: every movie of the data, with its features."""
    if not isinstance(env, MovieLensPerArmBandit):
        return None
    features = env.movie_features
    return Catalogue(np.arange(1, len(features) + 1), titles, features)


def run_identity(args: TrainingArgs) -> dict[str, Any]:
    """What a checkpoint records of its run, and what a resuming run must match."""
    return {name: getattr(args, name) for name in RUN_IDENTITY}


def train_with_progress(
    args: TrainingArgs,
    done_loops: int,
    after_loop: Callable[[LoopMetrics], None],
    train: Callable[[Callable[[LoopMetrics], None]], History],
) -> History:
    """Runs `train` (under the profiler when asked), with a progress bar when asked."""

    def profiled(on_loop: Callable[[LoopMetrics], None]) -> History:
        if args.profiler_dir:
            import tensorflow as tf

            tf.profiler.experimental.start(args.profiler_dir)
        try:
            return train(on_loop)
        finally:
            if args.profiler_dir:
                tf.profiler.experimental.stop()

    if not args.progress:
        return profiled(after_loop)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[bold]training {task.fields[agent]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("regret {task.fields[regret]:.3f}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(
            "train", total=args.training_loops, agent=args.agent, regret=np.nan
        )
        progress.update(task, completed=done_loops)

        def on_loop(m: LoopMetrics) -> None:
            after_loop(m)
            progress.update(task, advance=1, regret=m.regret)

        return profiled(on_loop)
