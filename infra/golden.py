"""Golden copies of the synthesised stacks, reviewed like code.

`make golden` rewrites infra/golden/*.json; a test fails when synthesis no longer matches
them, so every infrastructure change appears in review as a diff of these files. The
function archive's content hash is masked (it changes with any app code change).
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).resolve().parent / "golden"
_HASHES = (
    (re.compile(r"functions/[0-9A-Fa-f]{16,}\.zip"), "functions/<archive-hash>.zip"),
    (
        re.compile(r"assets/function_source/[0-9A-Fa-f]{16,}/"),
        "assets/function_source/<archive-hash>/",
    ),
)


def normalize(text: str) -> dict[str, Any]:
    for pattern, replacement in _HASHES:
        text = pattern.sub(replacement, text)
    document: dict[str, Any] = json.loads(text)
    return document


def synthesized(stacks: Path) -> dict[str, dict[str, Any]]:
    return {p.parent.name: normalize(p.read_text()) for p in sorted(stacks.glob("*/cdk.tf.json"))}


def synthesize(outdir: Path) -> Path:
    from infra.main import build

    build(outdir).synth()
    return outdir / "stacks"


def write(stacks: Path) -> None:
    GOLDEN.mkdir(exist_ok=True)
    for name, document in synthesized(stacks).items():
        (GOLDEN / f"{name}.json").write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] != ["write"]:
        sys.exit("usage: python -m infra.golden write")
    with tempfile.TemporaryDirectory() as scratch:
        write(synthesize(Path(scratch) / "cdktf.out"))
    print(f"wrote {GOLDEN}")
