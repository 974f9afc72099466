"""The trainer's command line: the Vertex sample's flags, plus `--agent`, `--seed`, `--per-arm`.

Flag destinations are the names the tuning search space uses (`agent_alpha`,
`tikhonov_weight`), so a tuned value can only ever land on the flag it was tuned for.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from app.agents import AGENTS, LINUCB
from app.hyperparameters import DEFAULTS


@dataclass(frozen=True)
class TrainingArgs:
    data_path: str | None = None
    artifacts_dir: str | None = None
    profiler_dir: str | None = None
    batch_size: int = DEFAULTS.batch_size
    training_loops: int = 300
    steps_per_loop: int = 2
    rank_k: int = DEFAULTS.rank_k
    num_actions: int = DEFAULTS.num_actions
    tikhonov_weight: float = DEFAULTS.tikhonov_weight
    agent_alpha: float = DEFAULTS.agent_alpha
    run_hyperparameter_tuning: bool = False
    train_with_best_hyperparameters: bool = False
    agent: str = LINUCB
    per_arm: bool = False
    seed: int = 0
    checkpoint_every: int = 50
    policy_version: str | None = None
    progress: bool = True
    # Destinations of the flags given on the command line: tuned values never replace them.
    explicit: frozenset[str] = frozenset()


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number ≥ 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number ≥ 0, got {text}")
    return value


def build_parser(prog: str = "python -m app.trainer") -> argparse.ArgumentParser:
    d = TrainingArgs()
    p = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Train a contextual-bandit policy on MovieLens 100K and save it with TF-Agents' "
            "PolicySaver. Runs as a Vertex AI custom-training job (AIP_MODEL_DIR, "
            "AIP_CHECKPOINT_DIR, AIP_TENSORBOARD_LOG_DIR are honoured) or locally."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = p.add_argument_group("data and outputs")
    data.add_argument(
        "--data-path",
        help="u.data of MovieLens 100K (default: MOVIELENS_DIR or the download cache)",
    )
    data.add_argument(
        "--artifacts-dir",
        help="where metrics.json, plots and the policy go: local path or gs:// "
        "(default: the profile's artifacts_dir)",
    )
    data.add_argument("--profiler-dir", help="write a TensorFlow profiler trace here")
    data.add_argument(
        "--policy-version", help="label served with every prediction (default: a UTC timestamp)"
    )

    loop = p.add_argument_group("training loop")
    loop.add_argument(
        "--batch-size",
        type=_positive_int,
        default=d.batch_size,
        help="users observed per environment step",
    )
    loop.add_argument(
        "--training-loops",
        type=_positive_int,
        default=d.training_loops,
        help="collect-then-train iterations",
    )
    loop.add_argument(
        "--steps-per-loop",
        type=_positive_int,
        default=d.steps_per_loop,
        help="environment steps collected per loop",
    )
    loop.add_argument("--seed", type=int, default=d.seed, help="same seed, same numbers")
    loop.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        default=d.checkpoint_every,
        help="loops between checkpoints in AIP_CHECKPOINT_DIR (a restarted job resumes there)",
    )
    loop.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bar"
    )

    model = p.add_argument_group("environment and agent")
    model.add_argument("--agent", choices=AGENTS, default=d.agent, help="TF-Agents agent")
    model.add_argument(
        "--per-arm",
        action="store_true",
        help="per-arm MovieLens: user + movie features, candidates drawn from all movies",
    )
    model.add_argument(
        "--rank-k", type=_positive_int, default=d.rank_k, help="SVD rank: observation size"
    )
    model.add_argument(
        "--num-actions", type=_positive_int, default=d.num_actions, help="movies to choose from"
    )
    model.add_argument(
        "--tikhonov-weight",
        type=_positive_float,
        default=d.tikhonov_weight,
        help="ridge regularisation of linear agents",
    )
    model.add_argument(
        "--agent-alpha",
        type=_non_negative_float,
        default=d.agent_alpha,
        help="exploration scale of LinUCB/LinTS/NeuralLinUCB",
    )

    tuning = p.add_argument_group("hyper-parameter tuning")
    tuning.add_argument(
        "--run-hyperparameter-tuning",
        action="store_true",
        help="act as a tuning trial: report the objective with cloudml-hypertune",
    )
    tuning.add_argument(
        "--train-with-best-hyperparameters",
        action="store_true",
        help="use <artifacts-dir>/best_hyperparameters.json written by `recloop tune`",
    )
    return p


def to_argv(args: TrainingArgs, exclude: Sequence[str] = ()) -> list[str]:
    """The command line that reproduces `args` (fields left at their defaults are omitted)."""
    defaults = TrainingArgs()
    argv: list[str] = []
    for f in dataclasses.fields(TrainingArgs):
        value = getattr(args, f.name)
        if f.name in (*exclude, "explicit") or value == getattr(defaults, f.name):
            continue
        if f.name == "progress":
            argv.append("--no-progress")
        elif isinstance(value, bool):
            argv.append(_flag(f.name))
        else:
            argv.append(f"{_flag(f.name)}={value}")
    return argv


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _dashed(argv: Sequence[str]) -> list[str]:
    """Accepts `--flag_name[=v]` too: Vertex hyper-parameter tuning passes `--<parameter_id>=v`."""
    out = []
    for token in argv:
        if token.startswith("--"):
            name, sep, value = token.partition("=")
            token = name.replace("_", "-") + sep + value
        out.append(token)
    return out


def parse_args(
    argv: Sequence[str] | None = None, prog: str = "python -m app.trainer"
) -> TrainingArgs:
    tokens = _dashed(sys.argv[1:] if argv is None else argv)
    parser = build_parser(prog)
    namespace = parser.parse_args(tokens)
    for action in parser._actions:  # parsed again without defaults: what was given
        action.default = argparse.SUPPRESS
    given = frozenset(vars(parser.parse_args(tokens)))
    return TrainingArgs(**vars(namespace), explicit=given)
