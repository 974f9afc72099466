"""The actor-critic's artifacts, laid out as the bandit trainer lays out any agent's.

`<output>/actor_critic/policy/` (PolicySaver SavedModel of the slate policy plus
recloop_policy.json), `metrics.json` (per training batch `average_return`, and the critic's
`loss`) and `training_curves.png`.
"""

from __future__ import annotations

import json

import numpy as np

from app.paths import join
from app.policy_store import Catalogue, PolicyMetadata, save_tf_policy
from app.slate.actor_critic import ACTOR_CRITIC, ActorCritic
from app.slate.data import SlateData
from app.slate.policy import slate_policy
from app.trainer.report import METRICS_FILE, PLOT_FILE, save_png


def save_slate_policy(
    agent: ActorCritic,
    data: SlateData,
    history_length: int,
    slate_size: int,
    policy_dir: str,
    version: str,
    titles: list[str],
    trained_interactions: int,
) -> None:
    """The actor as a PolicySaver slate policy plus recloop_policy.json and the catalogue the
    predictor's per-arm path serves it over (movie ids, titles, item embeddings); `recloop
    train`, the pipeline's Trainer and `make slate` all save through here."""
    policy = slate_policy(agent.actor_network, data.item_embeddings, history_length, slate_size)
    movie_ids = np.arange(1, data.num_movies + 1)
    save_tf_policy(
        policy,
        policy_dir,
        PolicyMetadata(
            agent=ACTOR_CRITIC,
            per_arm=True,
            num_actions=data.num_movies,
            rank_k=data.embedding_dim,
            alpha=0.0,
            tikhonov_weight=0.0,
            policy_version=version,
            movie_ids=movie_ids.tolist(),
            titles=titles,
            trained_interactions=trained_interactions,
        ),
        Catalogue(movie_ids, titles, data.item_embeddings),
    )


def save_actor_critic(directory, result, data: SlateData, args, titles, version) -> str:
    import tensorflow as tf

    agent = result.methods[ACTOR_CRITIC]
    assert isinstance(agent, ActorCritic)
    folder = join(directory, ACTOR_CRITIC)
    policy_dir = join(folder, "policy")
    save_slate_policy(
        agent,
        data,
        args.history_length,
        args.slate_size,
        policy_dir,
        version,
        titles,
        args.episodes * args.horizon * args.slate_size,
    )
    curve = result.curves[ACTOR_CRITIC]
    with tf.io.gfile.GFile(join(folder, METRICS_FILE), "w") as f:
        f.write(
            json.dumps(
                {
                    "average_return": curve,
                    "loss": agent.losses,
                    "agent": ACTOR_CRITIC,
                    "seed": args.seed,
                    "hyperparameters": {"gamma": agent.config.gamma, **_scalars(agent.config)},
                    "policy_dir": policy_dir,
                    "policy_version": version,
                    "test": result.report["methods"][ACTOR_CRITIC],
                },
                indent=2,
            )
        )
    _plot_curve(join(folder, PLOT_FILE), curve, agent.losses)
    return policy_dir


def _scalars(config) -> dict:
    from dataclasses import asdict

    return {k: v for k, v in asdict(config).items() if isinstance(v, int | float)}


def _plot_curve(path: str, curve: list[float], losses: list[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6))
    top.plot(curve)
    top.set_ylabel("mean episode return")
    top.set_xlabel("training batch of episodes")
    top.set_title("actor-critic (TD3) on the slate environment")
    bottom.plot(losses, alpha=0.6)
    bottom.set_ylabel("TD3 loss")
    bottom.set_xlabel("gradient step")
    for axis in (top, bottom):
        axis.grid(alpha=0.3)
    fig.tight_layout()
    save_png(fig, path)
