"""`make slate`: trains every method on train users, evaluates on test users, writes the report.

Report (`<output>/report.json`): K, test users, training episodes per learning method, and
per method the mean test-user return (sum over the horizon of each list's mean item reward),
precision@K and NDCG@K of the first list against the user's held-out positives (rating ≥ 4),
ranked over the full catalogue minus the user's train movies. Plus `report.png` (learning
curves and the comparison) and the actor-critic's saved policy, its metrics.json and curves inside.
Test: tests/test_slate_run.py runs this code path on synthetic ratings.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from app.publish import save_png
from app.slate.actor_critic import ACTOR_CRITIC, ACTOR_NO_CRITIC, ActorCritic, ActorCriticConfig
from app.slate.baselines import PerArmLinUCB, PopularSlates, RandomSlates, SlateMethod
from app.slate.data import POSITIVE_RATING, SlateData
from app.slate.environment import HISTORY_LENGTH, HORIZON, SLATE_SIZE, SlateEnvironment
from app.trainer.metrics import LoopMetrics

REPORT_FILE = "report.json"
PLOT_FILE = "report.png"
METHODS = (ACTOR_CRITIC, ACTOR_NO_CRITIC, "linucb_per_arm", "popularity", "random")
LEARNING = (ACTOR_CRITIC, ACTOR_NO_CRITIC, "linucb_per_arm")


@dataclass(frozen=True)
class SlateArgs:
    slate_size: int = SLATE_SIZE
    horizon: int = HORIZON
    history_length: int = HISTORY_LENGTH
    episodes: int = 3200  # training episodes per learning method
    parallel_episodes: int = 32
    seed: int = 0
    actor_critic: ActorCriticConfig = field(default_factory=ActorCriticConfig)

    def __post_init__(self) -> None:
        if self.episodes < self.parallel_episodes or self.parallel_episodes < 1:
            raise ValueError("episodes must be ≥ parallel_episodes ≥ 1")


@dataclass(frozen=True)
class Evaluation:
    episode_return: float
    precision_at_k: float
    ndcg_at_k: float

    def as_report(self) -> dict[str, float]:
        return {
            "return": self.episode_return,
            "precision_at_k": self.precision_at_k,
            "ndcg_at_k": self.ndcg_at_k,
        }


def train(
    method: SlateMethod, env: SlateEnvironment, args: SlateArgs, on_batch=None
) -> list[LoopMetrics]:
    """On-line episodes over train users. Per batch of episodes, the trainer's metrics for
    lists: `average_return` the mean episode return; `regret` the mean, over lists, of the
    one-step oracle list's mean reward minus the list's (`SlateEnvironment.best_slates`);
    `suboptimal_arms` the share of listed movies not in the oracle list."""
    loops = []
    for batch in range(args.episodes // args.parallel_episodes):
        observations = env.reset(args.parallel_episodes)
        total = np.zeros(args.parallel_episodes)
        regret, suboptimal = [], []
        done = False
        while not done:
            slates = method.act(observations, env.excluded, env.slate_size)
            best = env.best_slates()
            regret.append(env.rewards_of(best).mean(axis=1) - env.rewards_of(slates).mean(axis=1))
            suboptimal.append(~(slates[:, :, None] == best[:, None, :]).any(axis=2))
            step = env.step(slates)
            next_observations = env.observe()
            method.learn(observations, slates, step.rewards, next_observations, step.done)
            total += step.rewards.mean(axis=1)
            observations, done = next_observations, step.done
        loops.append(
            LoopMetrics(
                loop=batch,
                regret=float(np.mean(regret)),
                suboptimal_arms=float(np.mean(suboptimal)),
                average_return=float(total.mean()),
            )
        )
        if on_batch is not None:
            on_batch(loops[-1])
    return loops


def evaluate(method: SlateMethod, env: SlateEnvironment) -> Evaluation:
    """One greedy episode per test user: return, and P@K / NDCG@K of the first list."""
    if hasattr(method, "exploring"):
        method.exploring = False
    observations = env.reset(users=env.users)
    positives = env.data.held_out[env.batch_users] >= POSITIVE_RATING
    total = np.zeros(len(env.users))
    first = None
    done = False
    while not done:
        slates = method.act(observations, env.excluded, env.slate_size)
        first = slates if first is None else first
        step = env.step(slates)
        total += step.rewards.mean(axis=1)
        observations, done = env.observe(), step.done
    assert first is not None
    precision, ndcg = ranking_metrics(first, positives)
    return Evaluation(float(total.mean()), precision, ndcg)


def ranking_metrics(slates: np.ndarray, positives: np.ndarray) -> tuple[float, float]:
    """Mean precision@K and binary NDCG@K over users with at least one held-out positive."""
    k = slates.shape[1]
    has = positives.any(axis=1)
    if not has.any():
        return float("nan"), float("nan")
    hits = np.take_along_axis(positives, slates, axis=1)[has].astype(np.float64)
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)
    ideal_counts = np.minimum(positives[has].sum(axis=1), k)
    ideal = np.cumsum(discounts)[ideal_counts - 1]
    return float(hits.mean()), float(np.mean(hits @ discounts / ideal))


def make_methods(data: SlateData, env: SlateEnvironment, args: SlateArgs) -> dict[str, SlateMethod]:
    myopic = ActorCriticConfig(**{**asdict(args.actor_critic), "gamma": 0.0})
    return {
        ACTOR_CRITIC: ActorCritic(
            ACTOR_CRITIC, env.state_dim, data.item_embeddings, args.actor_critic, args.seed
        ),
        ACTOR_NO_CRITIC: ActorCritic(
            ACTOR_NO_CRITIC, env.state_dim, data.item_embeddings, myopic, args.seed
        ),
        "linucb_per_arm": PerArmLinUCB(data.item_embeddings, args.history_length, seed=args.seed),
        "popularity": PopularSlates(data),
        "random": RandomSlates(args.seed),
    }


@dataclass
class SlateResult:
    report: dict
    curves: dict[str, list[float]]
    methods: dict[str, SlateMethod]
    seconds: float


def run(data: SlateData, args: SlateArgs, progress: bool = False) -> SlateResult:
    started = time.perf_counter()
    env_args = {
        "slate_size": args.slate_size,
        "horizon": args.horizon,
        "history_length": args.history_length,
    }
    methods = make_methods(data, SlateEnvironment(data, data.train_users, **env_args), args)
    curves: dict[str, list[float]] = {}
    results: dict[str, dict[str, float]] = {}
    bar = _progress(progress)
    with bar:
        for name in METHODS:
            method = methods[name]
            if name in LEARNING:
                task = bar.add_task(name, total=args.episodes // args.parallel_episodes)
                env = SlateEnvironment(data, data.train_users, seed=args.seed, **env_args)
                loops = train(method, env, args, lambda _, t=task: bar.advance(t))
                curves[name] = [m.average_return for m in loops]
            test_env = SlateEnvironment(data, data.test_users, seed=args.seed, **env_args)
            results[name] = evaluate(method, test_env).as_report()
    report = {
        "k": args.slate_size,
        "test_users": len(data.test_users),
        "episodes": args.episodes,
        "methods": results,
    }
    return SlateResult(report, curves, methods, time.perf_counter() - started)


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]training {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not enabled,
    )


def write_report(directory: str, result: SlateResult) -> str:
    import tensorflow as tf

    from app.paths import join

    tf.io.gfile.makedirs(directory)
    path = join(directory, REPORT_FILE)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(result.report, indent=2))
    _plot(join(directory, PLOT_FILE), result)
    return path


def _plot(path: str, result: SlateResult) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (curves, returns, ranking) = plt.subplots(
        1, 3, figsize=(16, 4.8), gridspec_kw={"width_ratios": [2, 1, 1.4]}
    )
    for name, values in result.curves.items():
        x = np.arange(1, len(values) + 1)
        window = max(1, len(values) // 20)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        curves.plot(x[window - 1 :], smooth, label=name)
    curves.set_xlabel("training batch of episodes (train users, with exploration)")
    curves.set_ylabel("mean episode return")
    curves.set_title("learning curves (same user batches for every method)")
    curves.legend(loc="best")
    curves.grid(alpha=0.3)
    methods = list(result.report["methods"])
    colours = [f"C{i}" for i in range(len(methods))]
    returns.bar(methods, [result.report["methods"][m]["return"] for m in methods], color=colours)
    returns.set_title(f"test return ({result.report['test_users']} users)")
    returns.tick_params(axis="x", labelrotation=45)
    width = 0.8 / len(methods)
    for i, name in enumerate(methods):
        values = [result.report["methods"][name][m] for m in ("precision_at_k", "ndcg_at_k")]
        ranking.bar(np.arange(2) + i * width, values, width, label=name, color=colours[i])
    ranking.set_xticks(np.arange(2) + 0.4 - width / 2)
    ranking.set_xticklabels([f"P@{result.report['k']}", f"NDCG@{result.report['k']}"])
    ranking.set_title("first list vs held-out positives")
    ranking.legend(loc="best", fontsize=8)
    for axis in (returns, ranking):
        axis.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    save_png(fig, path)
