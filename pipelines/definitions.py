"""The start-up (Generator → Ingester → Trainer → Evaluator → Deployer) and re-training
(Ingester → Trainer → Evaluator → Deployer) pipelines.

Their signatures are generated from app.loop.parameters.PipelineParameters (the one
declaration of names, types and defaults; KFP reads `inspect.signature`), and every step
receives its parameters by name (tests/test_pipelines.py).
"""

import dataclasses
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kfp import dsl

from app.loop.parameters import RETRAINING, STARTUP, STARTUP_ONLY, PipelineParameters
from pipelines.components import DEFAULT_IMAGE, build

__all__ = ["RETRAINING", "STARTUP", "Pipelines", "build_pipelines", "signature"]


# The ledger's run id (app/warehouse/ledger.py), not a parameter: a retried task of the same
# pipeline job claims, trains on and publishes exactly what its first attempt did.
RUN_ID = dsl.PIPELINE_JOB_NAME_PLACEHOLDER


@dataclass(frozen=True)
class Pipelines:
    startup: Any
    retraining: Any


def signature(exclude: tuple[str, ...] = ()) -> inspect.Signature:
    """A pipeline signature: one parameter per PipelineParameters field, same type and default."""
    hints = typing.get_type_hints(PipelineParameters)
    return inspect.Signature(
        [
            inspect.Parameter(
                f.name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=f.default,
                annotation=hints[f.name],
            )
            for f in dataclasses.fields(PipelineParameters)
            if f.name not in exclude
        ],
        return_annotation=None,
    )


def _with_signature(body: Callable[[dict[str, Any]], None], sig: inspect.Signature) -> Any:
    """A function KFP can trace: it takes the generated parameters, positionally or by name."""

    def pipeline(*args: Any, **kwargs: Any) -> None:
        body(dict(sig.bind(*args, **kwargs).arguments))

    pipeline.__signature__ = sig  # type: ignore[attr-defined]
    pipeline.__annotations__ = {p.name: p.annotation for p in sig.parameters.values()}
    return pipeline


def _call(step: Any, parameters: dict[str, Any], **artifacts: Any) -> Any:
    """Runs a step with the pipeline parameters it declares, by name."""
    names = [n for n in step.component_spec.inputs if n not in artifacts]
    unknown = [n for n in names if n not in parameters]
    if unknown:
        raise TypeError(f"step {step.name} takes {unknown}, which are no pipeline parameters")
    return step(**artifacts, **{n: parameters[n] for n in names})


def build_pipelines(image: str = DEFAULT_IMAGE) -> Pipelines:
    ops = build(image)

    def train_and_deploy(ingested: Any, parameters: dict[str, Any]) -> None:
        examples = ingested.outputs["examples"]
        trained = _call(ops.train, parameters, examples=examples)
        model = trained.outputs["model"]
        evaluated = _call(ops.evaluate, parameters, model=model, examples=examples)
        _call(
            ops.deploy,
            parameters,
            model=model,
            examples=examples,
            decision=evaluated.outputs["Output"],
        )

    def startup_body(parameters: dict[str, Any]) -> None:
        generated = _call(ops.generate, parameters)
        ingested = _call(ops.ingest, parameters, run_id=RUN_ID).after(generated)
        train_and_deploy(ingested, parameters)

    def retraining_body(parameters: dict[str, Any]) -> None:
        train_and_deploy(_call(ops.ingest, parameters, run_id=RUN_ID), parameters)

    startup = dsl.pipeline(
        name=STARTUP, description="Generator → Ingester → Trainer → Evaluator → Deployer"
    )(_with_signature(startup_body, signature()))
    retraining = dsl.pipeline(
        name=RETRAINING, description="Ingester → Trainer → Evaluator → Deployer"
    )(_with_signature(retraining_body, signature(exclude=STARTUP_ONLY)))
    return Pipelines(startup, retraining)
