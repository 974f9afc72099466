"""`python -m app.slate.ab`: A/B of the actor-critic's saved slate policy against the bandit on
simulated live traffic, through the canary's statistics and `recloop ab report`.

Traffic: the slate environment's test users (never trained on), each assigned to one side by
a seeded draw (`share` to the slate policy); each plays one session of `horizon` lists. The
slate side is the saved policy loaded and served as the predictor serves it
(`load_for_serving`, `PerArmPolicy.choose` over each user's unseen movies; parity with the
PolicySaver policy: tests/test_slate_serving.py); the bandit side is per-arm LinUCB
(recloop's LinearBandit over u ⊙ v, the slate report's `linucb_per_arm`), trained on the
train users' episodes first.
Both see the same state and exclusions. Every list served is logged to the warehouse as one
prediction (its side's policy_version, the first movie as the action, propensity 1: both
sides serve greedily) and one feedback row with the list's reward (mean item reward, −1..1);
the comparison is read back with `rewards_by_version`, as the canary and `recloop ab report`
read live traffic, and judged with the canary's rule at one look (app/evaluation/canary.py).
Proved by tests/test_slate_ab.py.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from app import movielens
from app.agents import ACTOR_CRITIC
from app.config import ConfigError, GateConfig, Settings, load_settings
from app.evaluation.canary import RewardStats, Verdict, judge
from app.paths import join
from app.policy_store import TRAINED_SLATE_DIR, PolicyStoreError, read_metadata
from app.schemas import SLATE
from app.slate import data as slate_data
from app.slate.baselines import PerArmLinUCB
from app.slate.environment import HISTORY_LENGTH, SlateEnvironment
from app.slate.run import SlateArgs, train
from app.warehouse.base import Warehouse

if TYPE_CHECKING:
    from app.predictor.policy import PerArmPolicy
from app.warehouse.records import FeedbackRecord, PredictionRecord

SOURCE = "simulated"
BANDIT_VERSION = "linucb_per_arm"


@dataclass(frozen=True)
class ABResult:
    slate: RewardStats
    bandit: RewardStats
    verdict: Verdict  # the slate policy judged as the candidate, the bandit as serving


def simulate(
    data: slate_data.SlateData,
    served: PerArmPolicy,
    bandit: PerArmLinUCB,
    warehouse: Warehouse,
    gate: GateConfig,
    *,
    share: float = 0.5,
    seed: int = 0,
    start: datetime | None = None,
) -> ABResult:
    if not 0.0 < share < 1.0:
        raise ValueError(f"share={share} must be strictly between 0 and 1")
    start = start or datetime.now(UTC)
    rng = np.random.default_rng(seed)
    env = SlateEnvironment(data, data.test_users, seed=seed)
    observations = env.reset(users=env.users)
    to_slate = rng.random(len(env.users)) < share
    slate_version = served.version
    versions = np.where(to_slate, slate_version, f"{BANDIT_VERSION}-{seed}")
    predictions, feedback = [], []
    done = False
    while not done:
        slates = bandit.act(observations, env.excluded, env.slate_size)
        if to_slate.any():
            rows = np.flatnonzero(to_slate)
            # Each user's candidates are the movies not yet seen, as a client would send them.
            candidates: list[np.ndarray | None] = [np.flatnonzero(~env.excluded[r]) for r in rows]
            answer = served.choose(
                observations[rows].astype(np.float64), candidates, [env.slate_size] * len(rows), rng
            )
            slates[rows] = np.stack(answer.actions)
        step = env.step(slates)
        when = start + timedelta(seconds=env.t)
        for row in range(len(slates)):
            request = str(uuid.uuid4())
            predictions.append(
                PredictionRecord(
                    request,
                    0,
                    when,
                    str(versions[row]),
                    observations[row].tolist(),
                    int(slates[row, 0]),
                    1.0,
                    # both sides observe the slate environment's state: no bandit trains on it
                    policy_kind=SLATE,
                )
            )
            feedback.append(
                FeedbackRecord(request, 0, when, float(step.rewards[row].mean()), SOURCE)
            )
        observations, done = env.observe(), step.done
    warehouse.insert_predictions(predictions)
    warehouse.insert_feedback(feedback)
    stats = {s.version: s for s in warehouse.rewards_by_version(start)}
    slate, other = stats[slate_version], stats[f"{BANDIT_VERSION}-{seed}"]
    return ABResult(slate, other, judge(slate, other, gate.margin, gate.confidence, 1, 1))


def trained_bandit(data: slate_data.SlateData, episodes: int, seed: int) -> PerArmLinUCB:
    """Per-arm LinUCB after `episodes` of the train users, as `make slate` trains it; it then
    serves by its mean, as `make slate` evaluates it."""
    bandit = PerArmLinUCB(data.item_embeddings, HISTORY_LENGTH, seed=seed)
    args = SlateArgs(episodes=episodes, parallel_episodes=min(32, episodes), seed=seed)
    train(bandit, SlateEnvironment(data, data.train_users, seed=seed), args)
    bandit.exploring = False
    return bandit


def run_ab(
    settings: Settings,
    policy_dir: str,
    data_path: str | None,
    episodes: int,
    share: float,
    seed: int,
) -> ABResult:
    """Loads the data (split with `seed`: the seed the policy was trained with, so its test
    users are the A/B's traffic), the saved policy and a trained bandit; logs to the
    profile's warehouse."""
    from app.predictor.policy import PerArmPolicy, load_for_serving
    from app.warehouse.factory import open_warehouse

    metadata = read_metadata(policy_dir)
    if metadata.agent != ACTOR_CRITIC:
        raise PolicyStoreError(f"{policy_dir} holds a {metadata.agent} policy, not actor_critic")
    files = movielens.locate(
        data_path, settings.data.movielens_dir, settings.data.cache_dir, settings.data.download
    )
    data = slate_data.build(movielens.load_rating_events(files.ratings), seed=seed)
    served = load_for_serving(policy_dir)
    if not isinstance(served, PerArmPolicy):
        raise PolicyStoreError(f"{policy_dir} is not a per-arm policy")
    warehouse = open_warehouse(settings)
    warehouse.ensure_tables()
    bandit = trained_bandit(data, episodes, seed)
    return simulate(
        data,
        served,
        bandit,
        warehouse,
        settings.gate,
        share=share,
        seed=seed,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.slate.ab", description=__doc__)
    parser.add_argument("--policy", help="the slate policy [default: <artifacts>/policy-slate]")
    parser.add_argument("--data-path", help="u.data or its folder (default: MOVIELENS_DIR)")
    parser.add_argument("--episodes", type=int, default=3200, help="bandit training episodes")
    parser.add_argument("--share", type=float, default=0.5, help="test users sent to the slate")
    parser.add_argument("--seed", type=int, default=0, help="the seed the policy trained with")
    options = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = load_settings()
        policy = options.policy or join(settings.artifacts_dir, TRAINED_SLATE_DIR)
        result = run_ab(
            settings, policy, options.data_path, options.episodes, options.share, options.seed
        )
    except (ValueError, ConfigError, PolicyStoreError, movielens.MovieLensError, OSError) as err:
        print(f"ab: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    for side in (result.slate, result.bandit):
        print(f"  {side.version:28s} {side.n:6d} lists  mean reward {side.mean:+.3f}")
    print(f"{result.verdict.decision}: {result.verdict.reason}")
    print("see also: recloop ab report")
    return 0


if __name__ == "__main__":
    sys.exit(main())
