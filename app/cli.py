"""`recloop`: the command line in front of training, tuning and serving."""

from __future__ import annotations

import signal
import sys

# Ctrl-C while the imports below load (about a second) ends quietly; `main` then restores
# Python's KeyboardInterrupt (tests/test_cli.py::test_serve_stops_on_ctrl_c_while_starting).
signal.signal(signal.SIGINT, lambda *_: sys.exit(130))

import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated  # noqa: E402

import typer  # noqa: E402
from typer._click import exceptions as click_errors  # noqa: E402  (typer 0.29 vendors click here)

from app.agents import LINUCB, PIPELINE_AGENTS  # noqa: E402
from app.config import ConfigError, Settings, load_settings  # noqa: E402
from app.policy_store import PolicyStoreError  # noqa: E402
from app.predictor.location import DEFAULT_DESCRIPTION  # noqa: E402

app = typer.Typer(
    help=(
        "recloop — reinforcement-learning recommendations (contextual bandits on MovieLens).\n\n"
        "Start with `recloop train`, then `recloop serve`, and send the predictor a request:\n\n"
        "curl -H 'content-type: application/json' -d '{\"instances\": [{\"observation\": [...]}]}' "
        "localhost:8080/predict"
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

DEBUG_FLAG = "--debug"


@app.callback()
def _options(
    debug: Annotated[
        bool, typer.Option(DEBUG_FLAG, help="Show the full traceback when something fails.")
    ] = False,
) -> None:
    """Global options (`--debug` is read by `main`, wherever it appears on the line)."""


FORWARD = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


@app.command(context_settings=FORWARD, add_help_option=False)
def train(ctx: typer.Context) -> None:
    """Train a policy on MovieLens and save it (`recloop train --help` lists every flag)."""
    from app.trainer.__main__ import main

    raise typer.Exit(main(ctx.args, prog="recloop train"))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def tune(
    ctx: typer.Context,
    trials: Annotated[int, typer.Option(min=1, help="How many trials to run.")] = 16,
    parallel: Annotated[
        int | None,
        typer.Option(
            min=1, help="Trials at once.", show_default="one per core locally, 4 on Vertex"
        ),
    ] = None,
    vertex: Annotated[
        bool,
        typer.Option(
            "--vertex", help="Run as a Vertex AI HyperparameterTuningJob instead of locally."
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the search itself.")] = 0,
) -> None:
    """Search agent_alpha and tikhonov_weight; the winner goes to best_hyperparameters.json.

    Any trainer flag may follow (e.g. --training-loops 200 --agent lints); then train with
    `recloop train --train-with-best-hyperparameters`.
    """
    from app.trainer.flags import parse_args

    args = parse_args(ctx.args, prog="recloop tune")
    settings = load_settings()
    artifacts_dir = args.artifacts_dir or settings.artifacts_dir
    if vertex:
        from app.tuning.vertex import run_tuning_job

        path = run_tuning_job(
            args,
            settings,
            artifacts_dir,
            f"recloop-tune-{time.strftime('%Y%m%d-%H%M%S')}",
            trials,
            parallel or 4,
        )
        typer.echo(f"best hyper-parameters written to {path}")
        return
    from app.tuning.local import tune as tune_locally

    result = tune_locally(args, settings, trials, parallel or None, seed, args.progress)
    pretty = ", ".join(f"{k}={v:.4g}" for k, v in result.best.items())
    typer.echo(
        f"best of {len(result.trials)} {args.agent} trials: {pretty} "
        f"(final regret {result.best_value:.4f}); written to {result.best_path}"
    )


@app.command()
def serve(
    policy: Annotated[
        str | None,
        typer.Option(
            help="Policy folder (local or gs://), or a deployment folder whose CURRENT "
            "pointer is followed and hot-swapped.",
            show_default=DEFAULT_DESCRIPTION,
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            help="Port to listen on; 0 picks a free one and reports it.",
            show_default="AIP_HTTP_PORT, else 8080",
        ),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(
            help="Interface to listen on (0.0.0.0: every interface).",
            show_default="serving.host: 127.0.0.1 locally, 0.0.0.0 in dev and prod",
        ),
    ] = None,
    reuse_port: Annotated[
        bool,
        typer.Option(
            "--reuse-port",
            help="Share a port another server listens on (SO_REUSEPORT); refused otherwise.",
        ),
    ] = False,
    access_log: Annotated[
        bool, typer.Option("--access-log", help="Log one line per request on stdout.")
    ] = False,
) -> None:
    """Serve a policy over HTTP with the Vertex AI prediction contract."""
    import dataclasses

    from app.predictor.__main__ import claim_port
    from app.predictor.__main__ import serve as run_server
    from app.predictor.location import check_policy, storage_uri_of

    settings = load_settings()
    serving = dataclasses.replace(
        settings.serving,
        port=port if port is not None else settings.serving.port,
        host=host or settings.serving.host,
        reuse_port=reuse_port or settings.serving.reuse_port,
        access_log=access_log or settings.serving.access_log,
    )
    uri = policy or storage_uri_of(serving, settings.artifacts_dir)
    serving = dataclasses.replace(serving, port=claim_port(serving))
    version = check_policy(uri)
    shown = f"policy {version}" if version else "loaded by the server, retried until it loads"
    typer.echo(
        f"serving {uri} ({shown}) on http://{serving.host}:{serving.port}{serving.predict_route}"
    )
    run_server(serving, uri)


pipeline_app = typer.Typer(help="Compile and run the start-up and re-training pipelines.")
app.add_typer(pipeline_app, name="pipeline")


@pipeline_app.command("compile")
def pipeline_compile(
    image: Annotated[
        str, typer.Option(help="Trainer image every step runs in.")
    ] = "recloop-trainer:local",
    output_dir: Annotated[Path, typer.Option(help="Where the YAML goes.")] = Path(
        "build/pipelines"
    ),
) -> None:
    """Compile both pipelines to YAML for Vertex AI Pipelines."""
    from pipelines.compile import compile_all

    for path in compile_all(output_dir, image):
        typer.echo(path)


@pipeline_app.command("run")
def pipeline_run(
    name: Annotated[str, typer.Argument(help="startup or retraining")] = "startup",
    env: Annotated[
        str, typer.Option(help="local runs here with kfp.local; dev or prod submits to Vertex AI.")
    ] = "local",
    template: Annotated[
        str | None,
        typer.Option(help="Compiled template (gs:// or a path).", show_default="compile now"),
    ] = None,
    best_hyperparameters: Annotated[
        str | None,
        typer.Option(
            help="A best_hyperparameters.json of `recloop tune` for the pipelines' --agent: "
            "the Trainer trains with its values when it exists; '' trains with the "
            "configured ones.",
            show_default="<artifacts_dir>/best_hyperparameters.json",
        ),
    ] = None,
    agent: Annotated[
        str,
        typer.Option(
            help="The Trainer's agent: linucb or lints (from the logged examples), or "
            "actor_critic (the list-wise agent, trained on the slate environment; docs/slate.md).",
        ),
    ] = LINUCB,
) -> None:
    """Run a pipeline: here with kfp.local, or on Vertex AI Pipelines in a cloud environment."""
    import tempfile

    from app.loop.pipeline_jobs import submit_vertex, vertex_parameters
    from pipelines.compile import compile_all
    from pipelines.run import NAMES, run_local

    if name not in NAMES:
        raise typer.BadParameter(f"choose one of {', '.join(sorted(NAMES))}", param_hint="NAME")
    if agent not in PIPELINE_AGENTS:
        raise typer.BadParameter(
            f"choose one of {', '.join(PIPELINE_AGENTS)}", param_hint="--agent"
        )
    settings = load_settings(env)
    tuned = _tuned_values(settings, best_hyperparameters, agent)
    if env == "local":
        from pipelines.progress import run_with_progress

        terminal = sys.stdout  # kfp.local's own output goes to the log file meanwhile
        run_with_progress(
            name,
            settings,
            lambda log: run_local(NAMES[name], settings, log, **tuned, agent=agent),
            lambda line: print(line, file=terminal, flush=True),
        )
        return
    with tempfile.TemporaryDirectory() as scratch:
        if template is None:
            from app import wiring

            # What submitting needs first (the project, above all), then the released image.
            wiring.require(settings, wiring.SUBMISSION)
            wiring.require(settings, wiring.PIPELINE_COMPILATION)
            image = str(settings.cloud.trainer_image)  # an image by digest: required above
            compiled = {p.stem: p for p in compile_all(Path(scratch), image)}
            template = str(compiled[NAMES[name]])
        job = submit_vertex(
            NAMES[name],
            settings,
            template,
            vertex_parameters(NAMES[name], settings, **tuned, agent=agent),
        )
    typer.echo(f"submitted {job.resource_name}")


def _tuned_values(settings: Settings, path: str | None, agent: str) -> dict[str, str]:
    """The pipelines' `best_hyperparameters` parameter (default: where `recloop tune` writes);
    a local file is checked now, so a mismatch is one line here, not a failed Trainer step,
    and the values used are printed. Proved by
    tests/test_tuning.py::test_pipelines_take_best_hyperparameters; that the Trainer then
    trains with them (kfp.local) by
    tests/test_cli.py::test_pipeline_run_startup_succeeds_with_steps_and_a_summary."""
    from app.hyperparameters import best_hyperparameters_path

    if path == "":
        return {"best_hyperparameters": ""}
    chosen = path or best_hyperparameters_path(settings.artifacts_dir)
    if "://" not in chosen:
        from app.tuning.space import read_best

        values = read_best(chosen, agent)
        if values is None and path:
            raise FileNotFoundError(f"--best-hyperparameters: {path} does not exist")
        if values is not None:
            shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
            typer.echo(f"tuned values from {chosen}: {shown}")
    return {"best_hyperparameters": chosen}


@app.command()
def promotions(
    env: Annotated[
        str, typer.Option(help="local reads the DuckDB warehouse; dev or prod, BigQuery.")
    ] = "local",
) -> None:
    """Every promotion decision (gate and canary) with the numbers it was taken on."""
    from app.cli_reports import promotions_table
    from app.warehouse.factory import open_warehouse

    settings = load_settings(env)
    typer.echo(promotions_table(open_warehouse(settings).promotions()))


@app.command()
def rollback(
    env: Annotated[str, typer.Option(help="local, dev or prod (its Vertex endpoint).")] = "local",
) -> None:
    """Return to the policy that served before the current one (locally and on Vertex)."""
    from app.deployer.rollback import on_vertex, roll_back
    from app.warehouse.factory import open_warehouse

    settings = load_settings(env)
    on_vertex(settings)  # refused without the Deployer's settings before the warehouse opens
    typer.echo(f"serving {roll_back(settings, open_warehouse(settings))}")


@app.command("retraining-bytes")
def retraining_bytes(
    env: Annotated[str, typer.Option(help="dev or prod (their BigQuery warehouse).")] = "dev",
) -> None:
    """Bytes BigQuery would scan for the next re-training, per query (dry runs: free)."""
    from app.warehouse.bigquery_store import BigQueryWarehouse
    from app.warehouse.factory import open_warehouse

    settings = load_settings(env)
    warehouse = open_warehouse(settings)
    if not isinstance(warehouse, BigQueryWarehouse):
        raise ValueError(f"the {env} warehouse is {settings.warehouse.backend}: BigQuery only")
    loop = settings.loop
    scanned = warehouse.retraining_bytes(loop.rank_k, loop.num_actions)
    for name, size in [*scanned.items(), ("total", sum(scanned.values()))]:
        typer.echo(f"{name:<10} {size / 1e9:>12,.3f} GB")


ab_app = typer.Typer(help="Online A/B comparison of the policy versions that served.")
app.add_typer(ab_app, name="ab")


@ab_app.command("report")
def ab_report(
    env: Annotated[str, typer.Option(help="local, dev or prod.")] = "local",
    hours: Annotated[float, typer.Option(min=0, help="Interactions of the last N hours.")] = 24,
    plot: Annotated[
        Path | None, typer.Option(help="PNG to write.", show_default="<state_dir>/ab-report.png")
    ] = None,
) -> None:
    """Per-version online reward with 95% confidence intervals, printed and plotted."""
    from datetime import UTC, datetime, timedelta

    from app.cli_reports import ab_plot, ab_table
    from app.warehouse.factory import open_warehouse

    settings = load_settings(env)
    since = datetime.now(UTC) - timedelta(hours=hours)
    stats = open_warehouse(settings).rewards_by_version(since)
    typer.echo(ab_table(stats))
    if stats:
        path = plot or Path(settings.state_dir) / "ab-report.png"
        ab_plot(stats, path)
        typer.echo(f"plot: {path}")


def _user_errors() -> tuple[type[BaseException], ...]:
    from google.auth.exceptions import DefaultCredentialsError

    from app.deployer.rollback import RollbackError
    from app.predictor.__main__ import PortUnavailable
    from pipelines.progress import PipelineFailed

    return (
        ConfigError,
        RollbackError,  # nothing deployed, or nothing served before it
        DefaultCredentialsError,  # a cloud profile on a machine with no credentials
        PolicyStoreError,
        PortUnavailable,
        PipelineFailed,
        FileNotFoundError,
        ValueError,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; a mistake is one line on stderr and exit code 2 (`--debug`: traceback).

    Proved by tests/test_cli.py::test_configuration_mistakes_are_one_line.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args
    if debug:  # accepted anywhere on the line; typer sees it where the callback takes it
        args = [DEBUG_FLAG, *(a for a in args if a != DEBUG_FLAG)]
    try:
        result = app(args=args, prog_name="recloop", standalone_mode=False)
    except click_errors.NoArgsIsHelpError as err:
        print(err.format_message())
        return 2
    except click_errors.UsageError as err:
        hint = f" (see `{err.ctx.command_path} --help`)" if err.ctx else ""
        print(f"error: {err.format_message()}{hint}", file=sys.stderr)
        return 2
    except (typer.Abort, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return 130
    except typer.Exit as stop:
        return stop.exit_code
    except _user_errors() as err:
        if debug:
            traceback.print_exc()
        from google.auth.exceptions import DefaultCredentialsError

        about = "Google Cloud credentials: " if isinstance(err, DefaultCredentialsError) else ""
        print(f"error: {about}{err}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
