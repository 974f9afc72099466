"""Known-harmless messages from libraries, silenced where they come from, one by one.

Each entry names one message; any other warning still shows. Installed by `app/__init__.py`
before TensorFlow, TF-Agents or the Google SDKs are imported; the absl filter by
`app.policy_store.save_tf_policy`, where those messages come from.
Proved by tests/test_cli.py::test_a_training_run_prints_only_recloops_lines,
::test_a_neural_agent_prints_no_foreign_warning and
::test_gym_does_not_turn_on_every_deprecation_warning; the TensorBoard retracing line by
tests/test_trainer.py::test_many_runs_in_one_process_print_no_retracing_warning.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import logging
import sys
import warnings
from collections.abc import Iterator
from importlib import metadata
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

# (category, message regex): checked against each warning's text from its start.
KNOWN_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    # google-api-core announces Python 3.11's end of support (2027) once per Vertex module.
    (FutureWarning, r"You are using a Python version .* which Google will stop supporting"),
    # PolicySaver stores TF-Probability specs; loading them needs TFP imported, which we do.
    (UserWarning, r"Encoding a StructuredValue with type tfp\."),
)
KNOWN_ABSL = (
    # absl (TensorFlow's SavedModel tracing) renames TF-Agents' nested spec names; harmless.
    "is not a valid tf.function parameter name. Sanitizing to",
    # PolicySaver of the neural agents (ε-greedy, NeuralLinUCB), which have no distribution;
    # the predictor scores and explores itself (app/predictor/policy.py), never calling it.
    "Could not serialize policy.distribution() for policy",
)


class _DropKnown(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not any(known in message for known in KNOWN_ABSL)


def _drop_gym_notice() -> None:
    """gym prints an "unmaintained" banner on import (TF-Agents imports gym; recloop never
    uses it); the banner comes from gym_notices, keyed by gym's version."""
    try:
        from gym_notices import notices

        notices.notices.pop(metadata.version("gym"), None)
    except (ImportError, metadata.PackageNotFoundError):
        pass


# gym.logger turns every DeprecationWarning of every library on ("once", put first) when
# TF-Agents imports gym: tf_keras's random.randint(1, 1e9) then printed one per actor-critic run.
_GYM_FILTER = ("once", None, DeprecationWarning, None, 0)


class _GymLoggerFinder(importlib.abc.MetaPathFinder):
    """Takes gym.logger's filter away as soon as gym.logger has run (importing gym here
    would cost a quarter of a second on every command)."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> ModuleSpec | None:
        if name != "gym.logger":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            if _GYM_FILTER in warnings.filters:
                warnings.filters.remove(_GYM_FILTER)  # type: ignore[attr-defined]
                warnings._filters_mutated()  # type: ignore[attr-defined]

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install() -> None:
    for category, message in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    _drop_gym_notice()
    if not any(isinstance(f, _GymLoggerFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _GymLoggerFinder())


def quiet_absl() -> None:
    """Called where the absl messages come from (saving a policy), so that importing `app`
    stays light (a CLI must react to Ctrl-C from its first moment)."""
    from absl import logging as absl_logging  # creates the "absl" logger as absl wants it

    logger = absl_logging.get_absl_logger()
    if not any(isinstance(f, _DropKnown) for f in logger.filters):
        logger.addFilter(_DropKnown())


class _DropRetracing(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in str(record.msg)


@contextlib.contextmanager
def retracing_by_design() -> Iterator[None]:
    """Around a tf.function that is traced once per call by design (the TensorBoard writer
    of a run is captured when traced): several runs in one process (tuning, `make bench`)
    otherwise made TensorFlow warn about retracing. Other retracing still shows.
    Proved by tests/test_trainer.py::test_many_runs_in_one_process_print_no_retracing_warning."""
    import tensorflow as tf

    logger = tf.get_logger()
    drop = _DropRetracing()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)
