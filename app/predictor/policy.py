"""A policy loaded for serving, and its fast path.

The SavedModel written by PolicySaver is the artifact. For linear agents the predictor reads
its variables once and scores with numpy (microseconds per request); other agents are served
by calling the SavedModel itself. Parity tests check the numpy path against `action()`.

Two kinds are served: global-feature policies (`ServingPolicy`: one arm per action) and
catalogue policies (`PerArmPolicy`: any candidate set of the movies saved beside the policy,
app.policy_store.Catalogue, scored by an `ArmScorer`). `load_for_serving` picks by metadata.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import orjson

from app.agents import ACTOR_CRITIC, LINEAR_AGENTS, LINUCB, AgentSpec, linear_bandit
from app.exploration import GREEDY, SOFTMAX, Exploration, one_hot, probabilities, sample
from app.linear import UCB, LinearState
from app.policy_store import (
    Catalogue,
    PolicyMetadata,
    PolicyStoreError,
    linear_state_from_variables,
    read_catalogue,
    read_metadata,
)
from app.schemas import GLOBAL, PER_ARM, SLATE


class NonFiniteScores(ValueError):
    """Some observation rows give scores that are not finite (values too large to score)."""

    def __init__(self, rows: np.ndarray):
        self.rows = [int(r) for r in rows]
        super().__init__(f"observation rows {self.rows} give scores that are not finite")


def _refuse_non_finite(values: np.ndarray) -> None:
    bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if bad.any():
        raise NonFiniteScores(np.flatnonzero(bad))


class Scorer(Protocol):
    def actions(self, observations: np.ndarray) -> np.ndarray: ...

    def scores(self, observations: np.ndarray) -> np.ndarray | None:
        """Deterministic per-arm scores whose first maximum is the policy's choice, or None."""


class ServingPolicy:
    """A global-feature policy: one observation per row, one arm per action."""

    per_arm = False
    policy_kind = GLOBAL  # what its logged rows say (app/schemas.py POLICY_KINDS)

    def __init__(
        self,
        metadata: PolicyMetadata,
        scorer: Scorer,
        uri: str,
        exploration: Exploration | None = None,
    ):
        self.metadata = metadata
        self.scorer = scorer
        self.uri = uri
        self.exploration = exploration or Exploration()
        # An open canary: the candidate and the share of requests it serves.
        self.canary: tuple[AnyPolicy, float] | None = None
        titles = metadata.titles or [""] * metadata.num_actions
        movie_ids = metadata.movie_ids or list(range(1, metadata.num_actions + 1))
        # One dict per action, copied per response: building a response is a list lookup.
        self.predictions: list[dict[str, Any]] = [
            {
                "action": a,
                "movie_id": movie_ids[a],
                "title": titles[a],
                "policy_version": metadata.policy_version,
            }
            for a in range(metadata.num_actions)
        ]
        # The same, serialised without the closing brace: responses append to it.
        self.fragments = [orjson.dumps(p)[:-1] for p in self.predictions]
        # Served greedily, LinUCB is deterministic (propensity 1); LinTS's and the neural
        # agents' own sampling have no closed form here, so it stays unknown.
        self.greedy_propensity: float | None = 1.0 if metadata.agent == LINUCB else None

    def for_request(self, rng: np.random.Generator) -> AnyPolicy:
        """The version that answers one request (split by request while a canary is open)."""
        if self.canary is not None and rng.random() < self.canary[1]:
            return self.canary[0]
        return self

    @property
    def rank_k(self) -> int:
        return self.metadata.rank_k

    @property
    def version(self) -> str:
        return self.metadata.policy_version

    def actions(self, observations: np.ndarray) -> np.ndarray:
        """The TF-Agents policy's own choice (no exploration)."""
        return self.scorer.actions(observations)

    def distribution(self, observations: np.ndarray) -> np.ndarray:
        """The served action distribution (rows × arms) under this policy's exploration."""
        scores = self.scorer.scores(observations)
        if scores is None:
            return probabilities(
                one_hot(self.actions(observations), self.metadata.num_actions), self.exploration
            )
        return probabilities(scores, self.exploration)

    def choose(
        self, observations: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The actions served and the exact probability of each (None: unknown)."""
        if self.exploration.kind == GREEDY:
            actions = self.actions(observations)
            if self.greedy_propensity is None:
                return actions, None
            return actions, np.full(len(actions), self.greedy_propensity)
        return sample(self.distribution(observations), rng)


class LinearScorer:
    def __init__(self, metadata: PolicyMetadata, state: LinearState):
        spec = AgentSpec(
            metadata.agent,
            metadata.num_actions,
            metadata.rank_k,
            metadata.alpha,
            metadata.tikhonov_weight,
        )
        self.model = linear_bandit(spec)
        self.model.set_state(state)

    def actions(self, observations: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            scores = self.model.scores(observations)
        _refuse_non_finite(scores)
        return np.argmax(scores, axis=1)

    def scores(self, observations: np.ndarray) -> np.ndarray:
        """LinUCB: its upper confidence bounds (argmax = its action); LinTS: the posterior
        mean (its samples have no closed-form choice probability)."""
        with np.errstate(over="ignore", invalid="ignore"):
            mean, variance = self.model.mean_and_variance(observations)
            scores = (
                mean + self.model.alpha * np.sqrt(variance) if self.model.strategy == UCB else mean
            )
        _refuse_non_finite(scores)
        return scores


class SavedModelScorer:
    """Calls the TF-Agents policy itself: the general (slow) path."""

    def __init__(self, saved: Any):
        self.saved = saved

    def actions(self, observations: np.ndarray) -> np.ndarray:
        import tensorflow as tf
        from tf_agents.trajectories import time_step as ts

        # The SavedModel hides its scores; a row whose squared norm overflows cannot score.
        with np.errstate(over="ignore", invalid="ignore"):
            _refuse_non_finite(np.sum(observations * observations, axis=1))
        step = ts.restart(tf.constant(observations, tf.float64), batch_size=len(observations))
        return self.saved.action(step).action.numpy()

    def scores(self, observations: np.ndarray) -> None:
        return None


class ArmScorer(Protocol):
    """Scores catalogue movies for contexts: what the per-arm serving path needs of a policy.

    `candidates` are catalogue indices (None: the whole catalogue); every result is
    contexts × candidates. Deterministic `scores` serve exploration and the slate order;
    `choice_scores` are what the policy itself takes the argmax of (LinTS: one posterior
    sample, so its choice has no known propensity)."""

    context_dim: int
    deterministic: bool

    def scores(self, contexts: np.ndarray, candidates: np.ndarray | None) -> np.ndarray: ...

    def choice_scores(
        self, contexts: np.ndarray, candidates: np.ndarray | None, rng: np.random.Generator
    ) -> np.ndarray: ...


class LinearArmScorer:
    """LinUCB/LinTS over joint features x = [u, u ⊙ v] (app.environment.interaction_features),
    one shared model, as TF-Agents' per-arm linear policy scores them.

    With M⁻¹ = [[P, Q], [Qᵀ, R]] and θ = [θ_u, θ_v], for a user u and movies V (rows v):
      mean = θ_u·u + V (u ⊙ θ_v)
      var  = uᵀPu + V (2 u ⊙ Qᵀu) + rowsum((V W) ⊙ V),  W = diag(u) R diag(u)
    so every candidate's mean and variance come from one matmul V [W | u ⊙ θ_v | 2 u ⊙ Qᵀu]
    over the movies' k features (cache-sized: 1,682 × 20 doubles). Parity with the saved
    TF-Agents policy: tests/test_per_arm_serving.py."""

    def __init__(self, metadata: PolicyMetadata, state: LinearState, catalogue: Catalogue):
        k = metadata.rank_k
        if state.cov_matrix.shape != (1, 2 * k, 2 * k) or catalogue.features.shape[1] != k:
            raise PolicyStoreError(
                f"per-arm policy of rank {k} needs one {2 * k}-dimensional model and "
                f"{k} features per movie; found a model of shape {state.cov_matrix.shape[1:]} "
                f"and {catalogue.features.shape[1]} features per movie"
            )
        self.context_dim = k
        self.alpha = metadata.alpha
        self.deterministic = metadata.agent == LINUCB  # LinTS samples its choice
        inverse = np.linalg.inv(state.cov_matrix[0] + metadata.tikhonov_weight * np.eye(2 * k))
        inverse = (inverse + inverse.T) / 2
        theta = inverse @ state.data_vector[0]
        self._p, self._q, self._r = inverse[:k, :k], inverse[:k, k:], inverse[k:, k:]
        self._theta_u, self._theta_v = theta[:k], theta[k:]
        self._movies = np.ascontiguousarray(catalogue.features, dtype=np.float64)

    def mean_and_variance(
        self, contexts: np.ndarray, candidates: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        u = contexts
        n, k = u.shape
        # Per user, side by side: [W | u ⊙ θ_v | 2 u ⊙ Qᵀu] (k × (k + 2)).
        per_user = np.empty((n, k, k + 2))
        per_user[:, :, :k] = self._r[None] * u[:, :, None] * u[:, None, :]
        per_user[:, :, k] = u * self._theta_v
        per_user[:, :, k + 1] = 2.0 * u * (u @ self._q)
        movies = self._movies if candidates is None else self._movies[candidates]
        out = (movies @ per_user.transpose(1, 0, 2).reshape(k, -1)).reshape(len(movies), n, -1)
        mean = (u @ self._theta_u)[:, None] + out[:, :, k].T
        quadratic = np.einsum("cbj,cj->bc", out[:, :, :k], movies)
        constant = np.einsum("bi,bi->b", u @ self._p, u)[:, None]
        return mean, np.maximum(constant + out[:, :, k + 1].T + quadratic, 0.0)

    def scores(self, contexts: np.ndarray, candidates: np.ndarray | None) -> np.ndarray:
        """LinUCB: its upper confidence bounds; LinTS: the posterior mean."""
        with np.errstate(over="ignore", invalid="ignore"):
            mean, variance = self.mean_and_variance(contexts, candidates)
            scores = mean + self.alpha * np.sqrt(variance) if self.deterministic else mean
        _refuse_non_finite(scores)
        return scores

    def choice_scores(
        self, contexts: np.ndarray, candidates: np.ndarray | None, rng: np.random.Generator
    ) -> np.ndarray:
        if self.deterministic:
            return self.scores(contexts, candidates)
        with np.errstate(over="ignore", invalid="ignore"):
            mean, variance = self.mean_and_variance(contexts, candidates)
            sampled = rng.normal(mean, self.alpha * np.sqrt(variance))
        _refuse_non_finite(sampled)
        return sampled


@dataclass(frozen=True)
class Slates:
    """What a per-arm policy served: per instance, catalogue indices best first (the first
    is the logged action), their scores, and the first's exact probability (None: unknown)."""

    actions: list[np.ndarray]
    scores: list[np.ndarray]
    propensities: np.ndarray | None

    @property
    def first(self) -> np.ndarray:
        return np.array([a[0] for a in self.actions], dtype=np.int64)


class PerArmPolicy:
    """A catalogue policy: each instance chooses among its candidates (default: every movie).

    Exploration (app/exploration.py) draws the first movie over the candidates' scores, so
    its logged propensity is exact; a top-k slate continues with the best-scoring of the
    rest (tests/test_per_arm_serving.py)."""

    per_arm = True

    def __init__(
        self,
        metadata: PolicyMetadata,
        scorer: ArmScorer,
        catalogue: Catalogue,
        uri: str,
        exploration: Exploration | None = None,
    ):
        self.metadata = metadata
        self.scorer = scorer
        self.catalogue = catalogue
        self.uri = uri
        self.exploration = exploration or Exploration()
        self.canary: tuple[AnyPolicy, float] | None = None
        ids = np.asarray(catalogue.movie_ids, dtype=np.int64)
        self.movie_ids = ids
        self.movie_id_list: list[int] = ids.tolist()
        self.titles = list(catalogue.titles)
        # Movie id → catalogue index (−1: not in the catalogue), one array lookup per request.
        self.index_of = np.full(int(ids.max()) + 1 if len(ids) else 1, -1, dtype=np.int64)
        self.index_of[ids] = np.arange(len(ids))

    def for_request(self, rng: np.random.Generator) -> AnyPolicy:
        if self.canary is not None and rng.random() < self.canary[1]:
            return self.canary[0]
        return self

    @property
    def rank_k(self) -> int:
        return self.scorer.context_dim

    @property
    def policy_kind(self) -> str:
        """What its logged rows say: a slate (actor-critic) policy's observation is its state
        vector, not a per-arm LinUCB's user features, so neither trains on the other's rows."""
        return SLATE if self.metadata.agent == ACTOR_CRITIC else PER_ARM

    @property
    def version(self) -> str:
        return self.metadata.policy_version

    def distribution(self, contexts: np.ndarray, candidates: np.ndarray | None) -> np.ndarray:
        """The served distribution of the first movie over the candidates (rows × candidates)."""
        return probabilities(self.scorer.scores(contexts, candidates), self.exploration)

    def choose(
        self,
        contexts: np.ndarray,
        candidates: list[np.ndarray | None],
        ks: list[int],
        rng: np.random.Generator,
    ) -> Slates:
        """Instances sharing a candidate set (all that gave none share the catalogue) are
        scored together: one matmul per set."""
        n = len(contexts)
        actions: list[np.ndarray] = [np.empty(0, np.int64)] * n
        scores: list[np.ndarray] = [np.empty(0)] * n
        propensities = np.ones(n)
        known = True
        for rows, chosen_from in _groups(candidates):
            try:
                first, slate_scores, p = self._choose_group(contexts[rows], chosen_from, rng)
            except NonFiniteScores as err:
                raise NonFiniteScores(rows[np.asarray(err.rows)]) from None
            for g, row in enumerate(rows.tolist()):
                order = _slate(first[g], slate_scores[g], ks[row])
                actions[row] = order if chosen_from is None else chosen_from[order]
                scores[row] = slate_scores[g][order]
            if p is None:
                known = False
            else:
                propensities[rows] = p
        return Slates(actions, scores, propensities if known else None)

    def _choose_group(
        self, contexts: np.ndarray, candidates: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Positions (within the candidates) of the first movie, the deterministic scores,
        and the first's probability."""
        scores = self.scorer.scores(contexts, candidates)
        if self.exploration.kind == GREEDY:
            if self.scorer.deterministic:
                return np.argmax(scores, axis=1), scores, np.ones(len(contexts))
            chosen = self.scorer.choice_scores(contexts, candidates, rng)
            return np.argmax(chosen, axis=1), scores, None
        first, p = sample(probabilities(scores, self.exploration), rng)
        return first, scores, p


def _groups(candidates: list[np.ndarray | None]) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Rows grouped by candidate set: every row without one together, the others one by one."""
    whole = [i for i, c in enumerate(candidates) if c is None]
    groups: list[tuple[np.ndarray, np.ndarray | None]] = []
    if whole:
        groups.append((np.array(whole, dtype=np.int64), None))
    groups.extend(
        (np.array([i], dtype=np.int64), c) for i, c in enumerate(candidates) if c is not None
    )
    return groups


def _slate(first: int, scores: np.ndarray, k: int) -> np.ndarray:
    """`first`, then the k − 1 best-scoring other candidates, best first (ties: lower index)."""
    if k == 1:
        return np.array([first], dtype=np.int64)
    rest = scores.copy()
    rest[first] = -np.inf
    top = np.argpartition(-rest, k - 2)[: k - 1] if k - 1 < len(rest) else np.arange(len(rest))
    top = top[np.lexsort((top, -rest[top]))]
    return np.concatenate([[first], top]).astype(np.int64)


AnyPolicy = ServingPolicy | PerArmPolicy


def load_policy(
    uri: str, fast_path: bool = True, exploration: Exploration | None = None
) -> ServingPolicy:
    """Loads a global-feature policy folder (local path or gs://) that `recloop train` wrote;
    `exploration` is how it will be served (default: greedy, the policy's own choice)."""
    metadata = read_metadata(uri)
    if metadata.per_arm:
        raise PolicyStoreError(
            f"{uri} holds a per-arm policy; load it with load_for_serving or load_per_arm_policy"
        )
    return _load_global(uri, metadata, fast_path, exploration)


def _load_global(
    uri: str, metadata: PolicyMetadata, fast_path: bool, exploration: Exploration | None
) -> ServingPolicy:
    saved = _load_saved_model(uri)
    scorer: Scorer
    if fast_path and metadata.agent in LINEAR_AGENTS:
        num_models = metadata.num_actions
        scorer = LinearScorer(
            metadata, linear_state_from_variables(saved.model_variables, num_models)
        )
    else:
        if exploration is not None and exploration.kind == SOFTMAX:
            raise PolicyStoreError(
                f"{uri} holds a {metadata.agent} policy, which exposes no scores: "
                "serve it greedy or epsilon_greedy, not softmax"
            )
        scorer = SavedModelScorer(saved)
    return ServingPolicy(metadata, scorer, uri, exploration)


def _load_saved_model(uri: str) -> Any:
    import tensorflow as tf
    import tensorflow_probability  # noqa: F401  (registers the distribution specs the SavedModel uses)

    return tf.saved_model.load(uri)


def load_for_serving(uri: str, exploration: Exploration | None = None) -> AnyPolicy:
    """What the predictor serves from `uri`: a per-arm or a global policy, as its metadata says."""
    metadata = read_metadata(uri)
    if metadata.per_arm:
        return _load_per_arm(uri, metadata, exploration)
    return _load_global(uri, metadata, True, exploration)


def load_per_arm_policy(uri: str, exploration: Exploration | None = None) -> PerArmPolicy:
    metadata = read_metadata(uri)
    if not metadata.per_arm:
        raise PolicyStoreError(f"{uri} holds a global-feature policy, not a per-arm one")
    return _load_per_arm(uri, metadata, exploration)


def _load_per_arm(
    uri: str, metadata: PolicyMetadata, exploration: Exploration | None
) -> PerArmPolicy:
    loader = ARM_SCORERS.get(metadata.agent)
    if loader is None:
        raise PolicyStoreError(
            f"{uri} holds a per-arm {metadata.agent} policy; the predictor serves per-arm "
            f"{', '.join(sorted(ARM_SCORERS))} policies"
        )
    catalogue = read_catalogue(uri)
    return PerArmPolicy(metadata, loader(uri, metadata, catalogue), catalogue, uri, exploration)


def _linear_arm_scorer(uri: str, metadata: PolicyMetadata, catalogue: Catalogue) -> ArmScorer:
    saved = _load_saved_model(uri)
    return LinearArmScorer(
        metadata, linear_state_from_variables(saved.model_variables, 1), catalogue
    )


def _actor_arm_scorer(uri: str, metadata: PolicyMetadata, catalogue: Catalogue) -> ArmScorer:
    """The list-wise actor-critic: observations are states, a slate is the top-k by v·actor(s)
    (app/slate/serving.py; tests/test_slate_serving.py)."""
    from app.slate.serving import scorer_from_saved

    return scorer_from_saved(_load_saved_model(uri), catalogue.features)


# The per-arm serving path's kinds of scorer, by the agent named in the policy's metadata: a
# new kind adds a loader returning an ArmScorer.
ARM_SCORERS: dict[str, Callable[[str, PolicyMetadata, Catalogue], ArmScorer]] = {
    **{agent: _linear_arm_scorer for agent in LINEAR_AGENTS},
    ACTOR_CRITIC: _actor_arm_scorer,
}


def open_canary(serving: AnyPolicy, candidate: AnyPolicy, share: float) -> None:
    """Lets `candidate` answer `share` of the requests; a request is parsed before the split
    is drawn, so both must read requests alike (same kind, same observation length)."""
    if candidate.per_arm != serving.per_arm or candidate.rank_k != serving.rank_k:
        kinds = {True: "per-arm", False: "global"}
        raise PolicyStoreError(
            f"canary {candidate.version} ({kinds[candidate.per_arm]}, rank {candidate.rank_k}) "
            f"cannot share traffic with {serving.version} "
            f"({kinds[serving.per_arm]}, rank {serving.rank_k})"
        )
    serving.canary = (candidate, share)
