"""The loop's hyper-parameter defaults, declared once.

The trainer's flags (app/trainer/flags.py), the loop's configuration (app/config.py
LoopConfig) and the pipeline parameters (app/loop/parameters.py) all read them from here
(tests/test_pipelines.py::test_hyperparameter_defaults_have_one_source). The list-wise
actor-critic's tuned values live here too: its agent (app/slate/actor_critic.py) and the
trainer's flags read them (tests/test_slate_trainer.py::test_actor_critic_defaults_have_one_source).

The Vertex sample's pipeline defaults (alpha 10, tikhonov 0.01) keep exploring for thousands
of interactions; the loop's short cycles learn with alpha 1 and tikhonov 1, which also keeps
TF-Agents' float32 solve well conditioned (see the parity tests).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Hyperparameters:
    rank_k: int = 20
    num_actions: int = 20
    batch_size: int = 8
    agent_alpha: float = 1.0
    tikhonov_weight: float = 1.0


DEFAULTS = Hyperparameters()
# What `recloop tune` writes in the artifacts directory; the pipelines' Trainer reads it there.
BEST_FILE = "best_hyperparameters.json"


def best_hyperparameters_path(artifacts_dir: str) -> str:
    """Where `recloop tune` leaves its winner, and where the pipelines look for it."""
    return artifacts_dir.rstrip("/") + "/" + BEST_FILE


# `recloop train`'s collect-then-train iterations (also the pipelines' actor_critic training).
TRAINING_LOOPS = 300


@dataclass(frozen=True)
class ActorCriticHyperparameters:
    """The actor-critic's (TD3) tuned values; TF-Agents' own defaults (gamma 1, tau 1) do not
    fit a list-wise recommender (docs/slate.md). The actor's point is a unit direction, so
    exploration noise of std s per coordinate moves it by about s·√d (d = 18): 0.3 (≈ 1.3)
    made the training lists near random, 0.1 (≈ 0.4) keeps them near the actor's."""

    gamma: float = 0.9
    actor_learning_rate: float = 1e-3
    critic_learning_rate: float = 1e-3
    exploration_std: float = 0.1


ACTOR_CRITIC_DEFAULTS = ActorCriticHyperparameters()
