"""Known-harmless messages from libraries, silenced where they come from, one by one.

Each entry names one message; any other warning still shows. Installed by `app/__init__.py`
before TensorFlow, TF-Agents or the Google SDKs are imported; the absl filter by
`app.policy_store.save_tf_policy`, where those messages come from.
Proved by tests/test_cli.py::test_a_training_run_prints_only_recloops_lines.
"""

from __future__ import annotations

import logging
import warnings
from importlib import metadata

# (category, message regex): checked against each warning's text from its start.
KNOWN_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    # google-api-core announces Python 3.11's end of support (2027) once per Vertex module.
    (FutureWarning, r"You are using a Python version .* which Google will stop supporting"),
    # PolicySaver stores TF-Probability specs; loading them needs TFP imported, which we do.
    (UserWarning, r"Encoding a StructuredValue with type tfp\."),
)
# absl (TensorFlow's SavedModel tracing) renames TF-Agents' nested spec names; harmless.
KNOWN_ABSL = ("is not a valid tf.function parameter name. Sanitizing to",)


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


def install() -> None:
    for category, message in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    _drop_gym_notice()


def quiet_absl() -> None:
    """Called where the absl messages come from (saving a policy), so that importing `app`
    stays light (a CLI must react to Ctrl-C from its first moment)."""
    from absl import logging as absl_logging  # creates the "absl" logger as absl wants it

    logger = absl_logging.get_absl_logger()
    if not any(isinstance(f, _DropKnown) for f in logger.filters):
        logger.addFilter(_DropKnown())
