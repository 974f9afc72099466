"""`make bench`: training and serving, recloop beside TF-Agents, into docs/benchmarks.md."""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path

from rich.console import Console

from app.config import DataConfig, Settings, load_settings
from app.trainer.run import run
from benchmarks import quick, report, soak
from benchmarks import scaling as scaling_page
from benchmarks.serving import bench_serving_isolated, require_wrk
from benchmarks.synth import bench_synth
from benchmarks.training import bench_training, reference_args

DOCS = Path("docs")


def main() -> int:
    console = Console()
    require_wrk()
    movielens_dir = load_settings().data.movielens_dir
    if not movielens_dir:
        console.print(
            "[red]set MOVIELENS_DIR to the ml-100k folder (the benchmark uses the real data set)"
        )
        return 2
    # No spinners while measuring: on two cores their redraws take CPU from what is measured.
    console.print("training: recloop (10 seeds + 20,000 loops) and TF-Agents' reference loop…")
    training = bench_training(movielens_dir)
    console.print(f"training: {training.speedup:,.0f}× the reference")
    console.print("serving: wrk against both servers…")
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(
            artifacts_dir=scratch, data=DataConfig(movielens_dir=movielens_dir, download=False)
        )
        policy = run(reference_args(300, 0), settings).policy_dir
        # The per-arm variant over every MovieLens movie (20 candidates per training step).
        per_arm = run(dataclasses.replace(reference_args(300, 0), per_arm=True), settings)
        serving = bench_serving_isolated(policy, rank_k=20, per_arm_dir=per_arm.policy_dir)
    console.print("infrastructure: synthesising every stack…")
    synth_seconds = bench_synth()
    console.print("scaling: warehouse training beside agent.train and Vowpal Wabbit, Logger…")
    scaling = quick.measure()
    console.print(f"logging soak: the predictor at full rate for {soak.SOAK_SECONDS} s…")
    logging_soak = soak.measure()
    soak.save(logging_soak)
    path = report.write(DOCS, training, serving, synth_seconds, scaling, logging_soak)
    console.print(f"wrote {path} and {path.with_suffix('.png')}")
    # docs/scaling.md from this same run's figures, not from an earlier bench-quick.
    quick.save(scaling)
    return scaling_page.main()


if __name__ == "__main__":
    sys.exit(main())
