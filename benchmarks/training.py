"""Training: recloop's trainer against TF-Agents' reference loop, same constants, same data."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

import numpy as np

from app.config import DataConfig, Settings
from app.trainer.flags import TrainingArgs
from app.trainer.run import run
from benchmarks import reference

LOOPS = 300
LAST = 50
FULL_SCHEDULE_LOOPS = 20_000  # train_eval_movielens' TRAINING_LOOPS
SEEDS = tuple(range(10))  # recloop runs are cheap: many seeds
REFERENCE_SEEDS = (0, 1, 2)  # each reference run takes minutes


@dataclass(frozen=True)
class TrainingBench:
    ours_rate: float
    ours_full_schedule_rate: float
    ours_full_schedule_seconds: float
    reference_rate: float
    ours_last_regret: list[float]
    reference_last_regret: list[float]
    ours_curve: list[float]
    reference_curve: list[float]

    @property
    def speedup(self) -> float:
        return self.ours_full_schedule_rate / self.reference_rate

    @property
    def regret_margin(self) -> float:
        """Two standard errors of the difference of the two means: the seed-to-seed noise."""
        ours, theirs = np.array(self.ours_last_regret), np.array(self.reference_last_regret)
        variance = ours.var(ddof=1) / len(ours) + (
            theirs.var(ddof=1) / len(theirs) if len(theirs) > 1 else 0.0
        )
        return float(2 * np.sqrt(variance))

    @property
    def regret_ok(self) -> bool:
        """No worse: our mean regret is not above the reference's by more than the noise."""
        ours, theirs = np.mean(self.ours_last_regret), np.mean(self.reference_last_regret)
        return bool(ours <= theirs + self.regret_margin)


def reference_args(loops: int, seed: int) -> TrainingArgs:
    return TrainingArgs(
        batch_size=reference.BATCH_SIZE,
        steps_per_loop=reference.STEPS_PER_LOOP,
        rank_k=reference.RANK_K,
        num_actions=reference.NUM_ACTIONS,
        agent_alpha=reference.AGENT_ALPHA,
        tikhonov_weight=reference.TIKHONOV_WEIGHT,
        training_loops=loops,
        seed=seed,
        progress=False,
    )


def bench_training(movielens_dir: str) -> TrainingBench:
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(
            artifacts_dir=scratch, data=DataConfig(movielens_dir=movielens_dir, download=False)
        )
        ours = [run(reference_args(LOOPS, seed), settings).history for seed in SEEDS]
        full = run(reference_args(FULL_SCHEDULE_LOOPS, 0), settings).history
    theirs = [
        reference.run_reference(f"{movielens_dir}/u.data", LOOPS, seed) for seed in REFERENCE_SEEDS
    ]
    return TrainingBench(
        ours_rate=float(np.mean([h.interactions_per_second for h in ours])),
        ours_full_schedule_rate=full.interactions_per_second,
        ours_full_schedule_seconds=full.seconds,
        reference_rate=float(np.mean([r.interactions_per_second for r in theirs])),
        ours_last_regret=[h.mean_regret(LAST) for h in ours],
        reference_last_regret=[float(np.mean(r.regret[-LAST:])) for r in theirs],
        ours_curve=[
            float(np.mean(v))
            for v in zip(*[[m.regret for m in h.loops] for h in ours], strict=True)
        ],
        reference_curve=[float(np.mean(v)) for v in zip(*[r.regret for r in theirs], strict=True)],
    )
