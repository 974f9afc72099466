"""`recloop`: the command line in front of training, tuning and serving."""

from __future__ import annotations

import sys
import time
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
            settings.cloud,
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


def main() -> None:
    sys.exit(app())


if __name__ == "__main__":
    main()
