"""`python -m app.trainer …`: the Vertex AI custom-training entrypoint."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from app.config import load_settings
from app.trainer.flags import parse_args
from app.trainer.run import run


def main(argv: Sequence[str] | None = None, prog: str = "python -m app.trainer") -> int:
    args = parse_args(argv, prog)
    try:
        result = run(args, load_settings(), say=print)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
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
