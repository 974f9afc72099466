"""`python -m app.slate` (`make slate`): train and compare every slate method on MovieLens 100K."""

from __future__ import annotations

import argparse
import sys

from app import movielens, publish
from app.config import ConfigError, Settings, load_settings
from app.slate import data as slate_data
from app.slate.run import REPORT_FILE, SlateArgs, SlateResult, run, write_report
from app.slate.save import save_actor_critic

DEFAULT_OUTPUT = ".recloop/slate"


def parse(argv: list[str]) -> tuple[argparse.Namespace, SlateArgs]:
    defaults = SlateArgs()
    parser = argparse.ArgumentParser(prog="python -m app.slate", description=__doc__)
    parser.add_argument("--data-path", help="u.data or its folder (default: MOVIELENS_DIR)")
    parser.add_argument("--output-dir", default=DEFAULT_OUTPUT)
    parser.add_argument("--slate-size", type=int, default=defaults.slate_size)
    parser.add_argument("--horizon", type=int, default=defaults.horizon)
    parser.add_argument("--episodes", type=int, default=defaults.episodes)
    parser.add_argument("--parallel-episodes", type=int, default=defaults.parallel_episodes)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--no-progress", action="store_true")
    options = parser.parse_args(argv)
    args = SlateArgs(
        slate_size=options.slate_size,
        horizon=options.horizon,
        episodes=options.episodes,
        parallel_episodes=options.parallel_episodes,
        seed=options.seed,
    )
    return options, args


def produce(
    args: SlateArgs, output_dir: str, data_path: str | None, settings: Settings, progress: bool
) -> SlateResult:
    """Everything `make slate` does: data, training, evaluation, report, saved actor-critic."""
    files = movielens.locate(
        data_path, settings.data.movielens_dir, settings.data.cache_dir, settings.data.download
    )
    data = slate_data.build(movielens.load_rating_events(files.ratings), seed=args.seed)
    titles = movielens.load_titles(files.items, data.num_movies)
    result = run(data, args, progress=progress)
    write_report(output_dir, result)
    version = publish.new_version()
    save_actor_critic(output_dir, result, data, args, titles, version)
    return result


def main(argv: list[str] | None = None) -> int:
    try:
        options, args = parse(sys.argv[1:] if argv is None else argv)
        result = produce(
            args, options.output_dir, options.data_path, load_settings(), not options.no_progress
        )
    except (ValueError, movielens.MovieLensError, ConfigError, OSError) as err:
        print(f"slate: {err}", file=sys.stderr)
        return 2
    print(f"wrote {options.output_dir}/{REPORT_FILE} ({result.seconds:.0f} s)")
    for name, metrics in result.report["methods"].items():
        print(
            f"  {name:16s} return {metrics['return']:+.3f}  "
            f"P@{args.slate_size} {metrics['precision_at_k']:.3f}  "
            f"NDCG@{args.slate_size} {metrics['ndcg_at_k']:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
