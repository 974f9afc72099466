"""The actor-critic's artifacts, published as every trainer publishes (app/publish.py).

`<output>/actor_critic/policy/` (PolicySaver SavedModel of the slate policy plus
recloop_policy.json and its catalogue, with `metrics.json` (per training batch
`average_return`, and the critic's `loss`) and `training_curves.png` inside it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from app import publish
from app.paths import join
from app.policy_store import Catalogue, PolicyMetadata
from app.slate.actor_critic import ACTOR_CRITIC, ActorCritic
from app.slate.data import SlateData
from app.slate.policy import slate_policy


@dataclass(frozen=True)
class SlatePolicy:
    """The actor as a PolicySaver slate policy, its metadata, and the catalogue the
    predictor's per-arm path serves it over (movie ids, titles, item embeddings)."""

    policy: Any
    metadata: PolicyMetadata
    catalogue: Catalogue


def slate_policy_of(
    agent: ActorCritic,
    data: SlateData,
    history_length: int,
    slate_size: int,
    version: str,
    titles: list[str],
    trained_interactions: int,
) -> SlatePolicy:
    movie_ids = np.arange(1, data.num_movies + 1)
    return SlatePolicy(
        slate_policy(agent.actor_network, data.item_embeddings, history_length, slate_size),
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
    agent = result.methods[ACTOR_CRITIC]
    assert isinstance(agent, ActorCritic)
    folder = join(directory, ACTOR_CRITIC)
    policy_dir = join(folder, "policy")
    slate = slate_policy_of(
        agent,
        data,
        args.history_length,
        args.slate_size,
        version,
        titles,
        args.episodes * args.horizon * args.slate_size,
    )
    curve = result.curves[ACTOR_CRITIC]
    publish.publish(
        slate.policy,
        policy_dir,
        slate.metadata,
        {
            "average_return": curve,
            "loss": agent.losses,
            "seed": args.seed,
            "hyperparameters": {"gamma": agent.config.gamma, **_scalars(agent.config)},
            "test": result.report["methods"][ACTOR_CRITIC],
        },
        plot=publish.Plot(
            "actor-critic (TD3) on the slate environment",
            [
                publish.Panel(
                    "mean episode return", curve, "training batch of episodes", smooth=False
                ),
                publish.Panel("TD3 loss", agent.losses, "gradient step", smooth=False),
            ],
        ),
        catalogue=slate.catalogue,
    )
    return policy_dir


def _scalars(config) -> dict:
    from dataclasses import asdict

    return {k: v for k, v in asdict(config).items() if isinstance(v, int | float)}
