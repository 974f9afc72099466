"""The actor-critic's slate policy on the predictor's per-arm serving path, scored in numpy.

A request's observation is the user's state as the agent saw it: the embeddings of the last N
liked movies, oldest first, zero rows padding a shorter history (N × d numbers;
`state_of` builds it from movie indices). The actor maps it to a point a in item-embedding
space and every candidate movie scores v·a, so the served top-k over the candidates is the
actor-critic's slate. The actor's weights are read once from the saved policy's variables
and applied with numpy (ReLU layers, then the direction formula of
app/slate/actor_critic.py's DirectionActor), as the linear agents are served. Parity with
the PolicySaver policy's own slates:
tests/test_slate_serving.py::test_served_scores_rank_as_the_saved_policy_chooses.
"""

from __future__ import annotations

import numpy as np

from app.slate.actor_critic import ACTOR_SCOPE, PRIOR_WEIGHT, RESIDUAL, unit_rows


class ActorArmScorer:
    """Scores movies for states: `scores(states, candidates)` = actor(state) · v."""

    deterministic = True

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray]], items: np.ndarray):
        if not layers or layers[-1][0].shape[1] != items.shape[1]:
            raise ValueError(
                f"the actor outputs {layers[-1][0].shape[1] if layers else 0} numbers; "
                f"the catalogue has {items.shape[1]} features per movie"
            )
        self.layers = [(w.astype(np.float32), b.astype(np.float32)) for w, b in layers]
        self.items = np.asarray(items, dtype=np.float32)
        self.context_dim = int(layers[0][0].shape[0])

    def points(self, states: np.ndarray) -> np.ndarray:
        states = np.asarray(states, dtype=np.float32)
        x = states
        for w, b in self.layers[:-1]:
            x = np.maximum(x @ w + b, 0.0)
        w, b = self.layers[-1]
        turn = RESIDUAL * np.tanh(x @ w + b)
        prior = unit_rows(states.reshape(len(states), -1, self.items.shape[1]).sum(axis=1))
        return unit_rows(PRIOR_WEIGHT * prior + turn)

    def scores(self, contexts: np.ndarray, candidates: np.ndarray | None) -> np.ndarray:
        """contexts × candidates; rows whose scores are not finite are refused by name."""
        from app.predictor.policy import NonFiniteScores

        items = self.items if candidates is None else self.items[candidates]
        with np.errstate(over="ignore", invalid="ignore"):
            scores = (self.points(contexts) @ items.T).astype(np.float64)
        bad = ~np.isfinite(scores).all(axis=1)
        if bad.any():
            raise NonFiniteScores(np.flatnonzero(bad))
        return scores

    def choice_scores(
        self, contexts: np.ndarray, candidates: np.ndarray | None, rng: np.random.Generator
    ) -> np.ndarray:
        return self.scores(contexts, candidates)


def actor_layers(model_variables) -> list[tuple[np.ndarray, np.ndarray]]:
    """(kernel, bias) per dense layer of the saved actor, input to output. A policy saved with
    TF-Agents' tanh ActorNetwork (before the direction actor) is refused: the direction formula
    would serve it other lists than its SavedModel chooses
    (tests/test_slate_serving.py::test_a_policy_saved_with_the_tanh_actor_is_refused)."""
    actor = [v for v in model_variables if v.name.startswith(ACTOR_SCOPE + "/")]
    if any(v.name.startswith(ACTOR_SCOPE + "/action/") for v in actor):
        raise ValueError(
            "the saved policy's actor is TF-Agents' tanh ActorNetwork, which this recloop no "
            "longer serves (docs/slate.md, The agent); train it again"
        )
    kernels = [v.numpy() for v in actor if "/kernel" in v.name]
    biases = [v.numpy() for v in actor if "/bias" in v.name]
    if not kernels or len(kernels) != len(biases):
        raise ValueError("the saved policy holds no actor network (ActorNetwork/ variables)")
    return list(zip(kernels, biases, strict=True))


def scorer_from_saved(saved, items: np.ndarray) -> ActorArmScorer:
    return ActorArmScorer(actor_layers(saved.model_variables), items)


def state_of(history: np.ndarray, items: np.ndarray) -> np.ndarray:
    """rows × (N·d) states from rows of N movie indices (len(items) pads), oldest first."""
    padded = np.vstack([items, np.zeros((1, items.shape[1]), items.dtype)])
    return padded[np.asarray(history)].reshape(len(history), -1)
