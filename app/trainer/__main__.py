"""`python -m app.trainer …`: the Vertex AI custom-training entrypoint."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Sequence

from app.config import load_settings
from app.trainer.flags import parse_args
from app.trainer.run import run

INTERRUPTED = 130


def _interrupt(signum: int, frame: object) -> None:
    """First Ctrl-C: stop cleanly (KeyboardInterrupt). Any later one ends the process at
    once, even if TensorFlow swallowed the first. Proved by tests/test_cli.py::
    test_a_second_ctrl_c_ends_the_process_even_if_the_first_was_swallowed and
    test_two_ctrl_c_while_saving_end_the_process_without_a_policy."""
    signal.signal(signal.SIGINT, lambda *_: os._exit(INTERRUPTED))
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None, prog: str = "python -m app.trainer") -> int:
    """Proved by tests/test_cli.py::test_ctrl_c_stops_training_cleanly."""
    args = parse_args(argv, prog)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _interrupt)
    try:
        result = run(args, load_settings(), say=print)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no new policy was saved", file=sys.stderr)
        return INTERRUPTED
    if result.resumed_from_loop:
        print(f"resumed from the checkpoint after loop {result.resumed_from_loop}")
    print(
        f"trained {result.args.agent}: {result.history.interactions} interactions at "
        f"{result.history.interactions_per_second:,.0f}/s, {result.objective:.4f} "
        f"final regret; policy in {result.policy_dir}, metrics in {result.metrics_path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
