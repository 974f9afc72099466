"""`recloop`: the command line in front of training, tuning and serving."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from app.config import load_settings

app = typer.Typer(
    help=(
        "recloop — reinforcement-learning recommendations (contextual bandits on MovieLens).\n\n"
        "Start with `recloop train`, then `recloop serve`, and send the predictor a request:\n\n"
        "curl -H 'content-type: application/json' -d '{\"instances\": [{\"observation\": [...]}]}' "
        "localhost:8080/predict"
    ),
    no_args_is_help=True,
    add_completion=False,
)

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
        typer.Option(min=1, help="Trials at once [default: one per core locally, 4 on Vertex]."),
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

    result = tune_locally(args, settings, trials, parallel or None, seed)
    pretty = ", ".join(f"{k}={v:.4g}" for k, v in result.best.items())
    typer.echo(
        f"best of {len(result.trials)} trials: {pretty} "
        f"(final regret {result.best_value:.4f}); written to {result.best_path}"
    )


@app.command()
def serve(
    policy: Annotated[
        str | None,
        typer.Option(
            help="Policy folder, local or gs:// "
            "[default: AIP_STORAGE_URI, else <artifacts_dir>/policy]."
        ),
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port (default: AIP_HTTP_PORT, else 8080).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
) -> None:
    """Serve a trained policy over HTTP with the Vertex AI prediction contract."""
    import dataclasses

    from app.predictor.__main__ import serve as run_server
    from app.predictor.asgi import storage_uri_of

    settings = load_settings()
    serving = dataclasses.replace(
        settings.serving,
        port=port if port is not None else settings.serving.port,
        host=host or settings.serving.host,
    )
    uri = policy or storage_uri_of(serving, settings.artifacts_dir)
    typer.echo(f"serving {uri} on http://{serving.host}:{serving.port}{serving.predict_route}")
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
        str | None, typer.Option(help="Compiled template (gs:// or a path); default: compile now.")
    ] = None,
) -> None:
    """Run a pipeline: here with kfp.local, or on Vertex AI Pipelines in a cloud environment."""
    import tempfile

    from app.loop.pipeline_jobs import submit_vertex, vertex_parameters
    from pipelines.compile import compile_all
    from pipelines.run import NAMES, run_local

    if name not in NAMES:
        raise typer.BadParameter(f"choose one of {', '.join(sorted(NAMES))}", param_hint="NAME")
    settings = load_settings(env)
    if env == "local":
        run_local(NAMES[name], settings)
        return
    with tempfile.TemporaryDirectory() as scratch:
        if template is None:
            image = settings.cloud.trainer_image or "recloop-trainer:local"
            compiled = {p.stem: p for p in compile_all(Path(scratch), image)}
            template = str(compiled[NAMES[name]])
        job = submit_vertex(
            NAMES[name], settings, template, vertex_parameters(NAMES[name], settings)
        )
    typer.echo(f"submitted {job.resource_name}")


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
    from app.config import ConfigError
    from app.deployer.rollback import RollbackError, roll_back
    from app.warehouse.factory import open_warehouse

    try:
        settings = load_settings(env)
        serving = roll_back(settings, open_warehouse(settings))
    except (RollbackError, ConfigError, ValueError) as err:
        typer.echo(f"rollback: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"serving {serving}")


ab_app = typer.Typer(help="Online A/B comparison of the policy versions that served.")
app.add_typer(ab_app, name="ab")


@ab_app.command("report")
def ab_report(
    env: Annotated[str, typer.Option(help="local, dev or prod.")] = "local",
    hours: Annotated[float, typer.Option(min=0, help="Interactions of the last N hours.")] = 24,
    plot: Annotated[
        Path | None, typer.Option(help="PNG to write [default: <state_dir>/ab-report.png].")
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


def main() -> None:
    sys.exit(app())


if __name__ == "__main__":
    main()
