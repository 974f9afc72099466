"""`recloop train --agent actor_critic` (also `python -m app.trainer`, the Vertex AI training
entrypoint): the list-wise actor-critic as an agent of recloop's trainer.

It trains on the sequential slate environment (app/slate/environment.py) from the train
users' episodes — the trainer's flags keep their meaning: `--training-loops` batches of
`--batch-size` users, each user playing one episode of lists — and writes what every agent
writes, in its policy folder: metrics.json (`regret` against the one-step oracle list,
`suboptimal_arms`, `average_return` = mean episode return, plus the TD3 `loss` and the greedy
policy's `test` return / P@K / NDCG@K on the held-out test users), training_curves.png and the
PolicySaver slate policy with recloop_policy.json, in `<artifacts>/policy-slate/` (or
AIP_MODEL_DIR); TensorBoard in `<artifacts>/tensorboard/<version>/`. Not resumable from
AIP_CHECKPOINT_DIR: a restarted job trains again.
Proved by tests/test_slate_trainer.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from app import movielens, publish
from app.agents import ACTOR_CRITIC
from app.config import Settings
from app.paths import join
from app.policy_store import TRAINED_SLATE_DIR
from app.slate import data as slate_data
from app.slate import run as slate_run
from app.slate.actor_critic import ActorCritic, ActorCriticConfig
from app.slate.environment import SlateEnvironment
from app.slate.save import slate_policy_of
from app.trainer.flags import TrainingArgs
from app.trainer.metrics import SUMMARY_WINDOWS, History, LoopMetrics


@dataclass
class Trained:
    data: slate_data.SlateData
    slate_args: slate_run.SlateArgs
    agent: ActorCritic
    history: History


def slate_args(args: TrainingArgs) -> slate_run.SlateArgs:
    config = ActorCriticConfig(
        gamma=args.gamma,
        actor_learning_rate=args.actor_learning_rate,
        critic_learning_rate=args.critic_learning_rate,
        exploration_std=args.exploration_std,
    )
    return slate_run.SlateArgs(
        episodes=args.training_loops * args.batch_size,
        parallel_episodes=args.batch_size,
        seed=args.seed,
        actor_critic=config,
    )


def load_data(args: TrainingArgs, settings: Settings) -> tuple[slate_data.SlateData, list[str]]:
    files = movielens.locate(
        args.data_path, settings.data.movielens_dir, settings.data.cache_dir, settings.data.download
    )
    data = slate_data.build(movielens.load_rating_events(files.ratings), seed=args.seed)
    return data, movielens.load_titles(files.items, data.num_movies)


def train_in_memory(
    args: TrainingArgs,
    settings: Settings,
    on_loop: Callable[[LoopMetrics], None] | None = None,
    data: slate_data.SlateData | None = None,
) -> Trained:
    """Trains on the train users' episodes; nothing is saved (a tuning trial stops here)."""
    data = data if data is not None else load_data(args, settings)[0]
    sargs = slate_args(args)
    env = SlateEnvironment(
        data,
        data.train_users,
        slate_size=sargs.slate_size,
        horizon=sargs.horizon,
        history_length=sargs.history_length,
        seed=args.seed,
    )
    agent = ActorCritic(
        ACTOR_CRITIC, env.state_dim, data.item_embeddings, sargs.actor_critic, args.seed
    )
    started = time.perf_counter()
    loops = slate_run.train(agent, env, sargs, on_loop)
    history = History(
        loops=loops,
        interactions=len(loops) * sargs.parallel_episodes * sargs.horizon * sargs.slate_size,
        seconds=time.perf_counter() - started,
    )
    return Trained(data, sargs, agent, history)


def run_actor_critic(args: TrainingArgs, settings: Settings, say: Callable[[str], None] | None):
    from app.trainer.run import policy_version, publish_run, train_with_progress

    data, titles = load_data(args, settings)
    trained: list[Trained] = []

    def train(on_loop: Callable[[LoopMetrics], None]) -> History:
        trained.append(train_in_memory(args, settings, on_loop, data))
        return trained[0].history

    history = train_with_progress(args, 0, lambda _: None, train)
    agent, sargs = trained[0].agent, trained[0].slate_args
    test_env = SlateEnvironment(
        data,
        data.test_users,
        slate_size=sargs.slate_size,
        horizon=sargs.horizon,
        history_length=sargs.history_length,
        seed=args.seed,
    )
    test = slate_run.evaluate(agent, test_env).as_report()
    policy_dir = settings.vertex_job.model_dir or join(str(args.artifacts_dir), TRAINED_SLATE_DIR)
    slate = slate_policy_of(
        agent,
        data,
        sargs.history_length,
        sargs.slate_size,
        policy_version(args),
        titles,
        history.interactions,
    )
    return publish_run(
        args,
        settings,
        history,
        slate.policy,
        policy_dir,
        slate.metadata,
        f"{ACTOR_CRITIC} on the slate environment ({data.num_movies} movies, K {sargs.slate_size})",
        loss=_window_means(agent.losses),
        test=test,
        catalogue=slate.catalogue,
        say=say,
        slate={"k": sargs.slate_size, "horizon": sargs.horizon, "test_users": len(data.test_users)},
    )


def _window_means(values: list[float]) -> list[float]:
    """At most SUMMARY_WINDOWS means (the TD3 loss has several values per training batch)."""
    window = max(1, -(-len(values) // SUMMARY_WINDOWS))
    array = np.asarray(values, dtype=np.float64)
    return [float(array[i : i + window].mean()) for i in range(0, len(array), window)]


def train_and_save(
    data_path: str | None,
    batch_size: int,
    training_loops: int,
    policy_dir: str,
    version: str,
    settings: Settings,
    tuned: dict[str, float] | None = None,
) -> str:
    """The re-training pipeline's Trainer step for `agent` actor_critic: trains with the
    `tuned` values (`recloop tune --agent actor_critic`), else the defaults, says which, and
    publishes the slate policy in `policy_dir`."""
    from app.tuning import space

    args = TrainingArgs(
        agent=ACTOR_CRITIC,
        data_path=data_path,
        batch_size=batch_size,
        training_loops=training_loops,
        progress=False,
    )
    args = space.with_values(args, tuned or {})
    values = ", ".join(f"{p.name}={getattr(args, p.name):.4g}" for p in space.ACTOR_CRITIC_SPACE)
    print(f"training {ACTOR_CRITIC} with {values} ({'tuned' if tuned else 'defaults'})")
    data, titles = load_data(args, settings)
    trained = train_in_memory(args, settings, data=data)
    sargs = trained.slate_args
    slate = slate_policy_of(
        trained.agent,
        data,
        sargs.history_length,
        sargs.slate_size,
        version,
        titles,
        trained.history.interactions,
    )
    # As every trainer's: metrics.json inside the policy folder (app/publish.py).
    publish.publish(
        slate.policy,
        policy_dir,
        slate.metadata,
        trained.history.summary(),
        catalogue=slate.catalogue,
    )
    return version
