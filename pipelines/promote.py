"""`python -m pipelines.promote`: the tested pipeline templates, pointed at another registry.

Prod runs exactly the templates the build compiled and dev tested: only the registry in front
of each step's image changes, never the digest. Every step image must be in the source
registry and pinned by digest, or nothing is written (tests/test_promote.py).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

DIGEST = re.compile(r"@sha256:[0-9a-f]{64}")


class PromotionError(ValueError):
    """A template is not one the build made: an image outside the registry or not by digest."""


def promote(template: dict[str, Any], source_registry: str, target_registry: str) -> dict[str, Any]:
    """The template with each executor's image moved from `source_registry` to `target_registry`."""
    executors = template.get("deploymentSpec", {}).get("executors", {})
    if not executors:
        raise PromotionError("no executors: not a compiled KFP pipeline")
    prefix = source_registry.rstrip("/") + "/"
    for name, executor in executors.items():
        image = executor.get("container", {}).get("image", "")
        if not image.startswith(prefix) or not DIGEST.search(image):
            raise PromotionError(
                f"executor {name} runs {image!r}, not an image of {source_registry} by digest"
            )
        executor["container"]["image"] = target_registry.rstrip("/") + "/" + image[len(prefix) :]
    return template


def promote_folder(
    source: Path, target: Path, source_registry: str, target_registry: str
) -> list[Path]:
    """Promotes every `*.yaml` template in `source` into `target`; writes nothing on any error."""
    templates = sorted(source.glob("*.yaml"))
    if not templates:
        raise PromotionError(f"{source} holds no *.yaml template")
    promoted = {
        path.name: promote(yaml.safe_load(path.read_text()), source_registry, target_registry)
        for path in templates
    }
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, template in promoted.items():
        path = target / name
        path.write_text(yaml.safe_dump(template, sort_keys=False))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.promote", description=__doc__)
    parser.add_argument("--from-registry", required=True, help="where the build pushed (dev)")
    parser.add_argument("--to-registry", required=True, help="where the same digests now live")
    parser.add_argument("source", type=Path, help="folder of compiled templates")
    parser.add_argument("target", type=Path, help="folder for the promoted templates")
    args = parser.parse_args(argv)
    try:
        paths = promote_folder(args.source, args.target, args.from_registry, args.to_registry)
    except (PromotionError, OSError, yaml.YAMLError) as err:
        print(f"promote: {err}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
