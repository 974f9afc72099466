"""`make pipelines`: compile both pipelines to YAML for Vertex AI Pipelines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kfp import compiler

from pipelines.components import DEFAULT_IMAGE
from pipelines.definitions import RETRAINING, STARTUP, build_pipelines


def compile_all(output_dir: Path, image: str = DEFAULT_IMAGE) -> list[Path]:
    output_dir.mkdir(parents=True, exist_ok=True)
    built = build_pipelines(image)
    paths = []
    for name, function in ((STARTUP, built.startup), (RETRAINING, built.retraining)):
        path = output_dir / f"{name}.yaml"
        compiler.Compiler().compile(pipeline_func=function, package_path=str(path))
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.compile", description=__doc__)
    parser.add_argument(
        "--image", default=DEFAULT_IMAGE, help="trainer image every step runs in (by digest in CI)"
    )
    parser.add_argument("--output-dir", type=Path, default=Path("build/pipelines"))
    args = parser.parse_args(argv)
    for path in compile_all(args.output_dir, args.image):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
