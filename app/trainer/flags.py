"""The trainer's command line: the Vertex sample's flags, plus `--agent`, `--seed`, `--per-arm`.

Typer, like the rest of `recloop`, in its plain style (no rich markup: bracketed defaults are
shown as written). Vertex AI passes flags as `--name=value` (tuning: `--name_with_underscores`).

Flag destinations are the names the tuning search space uses (`agent_alpha`,
`tikhonov_weight`), so a tuned value can only ever land on the flag it was tuned for.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import typer
from typer._click import exceptions as click_errors  # typer 0.29 vendors click here
from typer._click.core import ParameterSource

from app.agents import ACTOR_CRITIC, LINUCB, TRAINABLE_AGENTS
from app.hyperparameters import ACTOR_CRITIC_DEFAULTS, DEFAULTS, TRAINING_LOOPS


@dataclass(frozen=True)
class TrainingArgs:
    data_path: str | None = None
    artifacts_dir: str | None = None
    profiler_dir: str | None = None
    batch_size: int = DEFAULTS.batch_size
    training_loops: int = TRAINING_LOOPS
    steps_per_loop: int = 2
    rank_k: int = DEFAULTS.rank_k
    num_actions: int = DEFAULTS.num_actions
    tikhonov_weight: float = DEFAULTS.tikhonov_weight
    agent_alpha: float = DEFAULTS.agent_alpha
    gamma: float = ACTOR_CRITIC_DEFAULTS.gamma
    actor_learning_rate: float = ACTOR_CRITIC_DEFAULTS.actor_learning_rate
    critic_learning_rate: float = ACTOR_CRITIC_DEFAULTS.critic_learning_rate
    exploration_std: float = ACTOR_CRITIC_DEFAULTS.exploration_std
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


def _at_least_one(value: int) -> int:
    if value < 1:
        raise typer.BadParameter(f"must be a whole number ≥ 1, got {value}")
    return value


def _positive_float(value: float) -> float:
    if not value > 0 or value == float("inf"):
        raise typer.BadParameter(f"must be a finite number > 0, got {value}")
    return value


def _non_negative_float(value: float) -> float:
    if not value >= 0 or value == float("inf"):
        raise typer.BadParameter(f"must be a finite number ≥ 0, got {value}")
    return value


def _discount(value: float) -> float:
    if not 0.0 <= value < 1.0:
        raise typer.BadParameter(f"must be in [0, 1), got {value}")
    return value


def _agent(value: str) -> str:
    if value not in TRAINABLE_AGENTS:
        raise typer.BadParameter(f"choose one of {', '.join(TRAINABLE_AGENTS)}, got {value!r}")
    return value


# Flags that mean something for one kind of agent only: given explicitly for the other, they
# are refused (the slate environment plays the whole catalogue with its own embeddings).
BANDIT_ONLY = (
    "per_arm",
    "num_actions",
    "rank_k",
    "steps_per_loop",
    "agent_alpha",
    "tikhonov_weight",
)
ACTOR_CRITIC_ONLY = ("gamma", "actor_learning_rate", "critic_learning_rate", "exploration_std")


def _misplaced_flag(args: TrainingArgs) -> str | None:
    """The first flag given that does not apply to the chosen agent, said in one line."""
    wrong = BANDIT_ONLY if args.agent == ACTOR_CRITIC else ACTOR_CRITIC_ONLY
    for name in wrong:
        if name in args.explicit:
            return f"{_flag(name)} does not apply to --agent {args.agent}"
    return None


_D = TrainingArgs()

trainer_cli = typer.Typer(add_completion=False, rich_markup_mode=None)


@trainer_cli.command(
    help=(
        "Train a contextual-bandit policy (or, with --agent actor_critic, the list-wise "
        "actor-critic on the sequential slate environment) on MovieLens 100K and save it "
        "with TF-Agents' PolicySaver. Runs as a Vertex AI custom-training job (AIP_MODEL_DIR, "
        "AIP_CHECKPOINT_DIR, AIP_TENSORBOARD_LOG_DIR are honoured) or locally."
    )
)
def _command(
    ctx: typer.Context,
    data_path: Annotated[
        str | None,
        typer.Option(
            help="u.data of MovieLens 100K.", show_default="MOVIELENS_DIR, else the download cache"
        ),
    ] = None,
    artifacts_dir: Annotated[
        str | None,
        typer.Option(
            help="Where the policy (with its metrics.json and plots inside) goes: local or gs://.",
            show_default="the profile's artifacts_dir, .recloop/artifacts locally",
        ),
    ] = None,
    profiler_dir: Annotated[
        str | None, typer.Option(help="Write a TensorFlow profiler trace here.")
    ] = None,
    policy_version: Annotated[
        str | None,
        typer.Option(help="Label served with every prediction.", show_default="a UTC timestamp"),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(callback=_at_least_one, help="Users observed per environment step.")
    ] = _D.batch_size,
    training_loops: Annotated[
        int, typer.Option(callback=_at_least_one, help="Collect-then-train iterations.")
    ] = _D.training_loops,
    steps_per_loop: Annotated[
        int, typer.Option(callback=_at_least_one, help="Environment steps collected per loop.")
    ] = _D.steps_per_loop,
    seed: Annotated[int, typer.Option(help="Same seed, same numbers.")] = _D.seed,
    checkpoint_every: Annotated[
        int,
        typer.Option(
            callback=_at_least_one,
            help="Loops between checkpoints in AIP_CHECKPOINT_DIR (a restarted job resumes there).",
        ),
    ] = _D.checkpoint_every,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")
    ] = _D.progress,
    agent: Annotated[
        str,
        typer.Option(callback=_agent, help=f"TF-Agents agent: {', '.join(TRAINABLE_AGENTS)}."),
    ] = _D.agent,
    per_arm: Annotated[
        bool,
        typer.Option(
            "--per-arm",
            help="Per-arm MovieLens: each candidate movie scored by user ⊙ movie features, "
            "candidates drawn from all movies (saved to policy-per-arm/).",
        ),
    ] = False,
    rank_k: Annotated[
        int, typer.Option(callback=_at_least_one, help="SVD rank: observation size.")
    ] = _D.rank_k,
    num_actions: Annotated[
        int, typer.Option(callback=_at_least_one, help="Movies to choose from.")
    ] = _D.num_actions,
    tikhonov_weight: Annotated[
        float,
        typer.Option(callback=_positive_float, help="Ridge regularisation of linear agents."),
    ] = _D.tikhonov_weight,
    agent_alpha: Annotated[
        float,
        typer.Option(
            callback=_non_negative_float, help="Exploration scale of LinUCB/LinTS/NeuralLinUCB."
        ),
    ] = _D.agent_alpha,
    gamma: Annotated[
        float,
        typer.Option(callback=_discount, help=f"{ACTOR_CRITIC}: discount of the critic's value."),
    ] = _D.gamma,
    actor_learning_rate: Annotated[
        float, typer.Option(callback=_positive_float, help=f"{ACTOR_CRITIC}: actor's Adam rate.")
    ] = _D.actor_learning_rate,
    critic_learning_rate: Annotated[
        float,
        typer.Option(callback=_positive_float, help=f"{ACTOR_CRITIC}: critics' Adam rate."),
    ] = _D.critic_learning_rate,
    exploration_std: Annotated[
        float,
        typer.Option(
            callback=_non_negative_float,
            help=f"{ACTOR_CRITIC}: Gaussian exploration around the actor's point.",
        ),
    ] = _D.exploration_std,
    run_hyperparameter_tuning: Annotated[
        bool,
        typer.Option(
            "--run-hyperparameter-tuning",
            help="Act as a tuning trial: report the objective with cloudml-hypertune.",
        ),
    ] = False,
    train_with_best_hyperparameters: Annotated[
        bool,
        typer.Option(
            "--train-with-best-hyperparameters",
            help="Use <artifacts-dir>/best_hyperparameters.json written by `recloop tune` "
            "(flags given explicitly keep their values).",
        ),
    ] = False,
) -> TrainingArgs:
    values = {k: v for k, v in ctx.params.items()}
    given = frozenset(
        name for name in values if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE
    )
    return TrainingArgs(**values, explicit=given)


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
    """The trainer's flags; a mistake prints one line and exits with 2, `--help` exits 0."""
    tokens = _dashed(sys.argv[1:] if argv is None else argv)
    command = typer.main.get_command(trainer_cli)
    try:
        result = command.main(args=tokens, prog_name=prog, standalone_mode=False)
    except click_errors.UsageError as err:
        print(f"error: {err.format_message()} (see `{prog} --help`)", file=sys.stderr)
        raise SystemExit(2) from None
    if not isinstance(result, TrainingArgs):  # --help was shown
        raise SystemExit(0)
    if (problem := _misplaced_flag(result)) is not None:
        print(f"error: {problem} (see `{prog} --help`)", file=sys.stderr)
        raise SystemExit(2)
    return result
