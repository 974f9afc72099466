"""Reading synthesised Terraform JSON the way a plan review would."""

from __future__ import annotations

from typing import Any


def resources(stack: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return dict(stack.get("resource", {}).get(kind, {}))


def one(stack: dict[str, Any], kind: str, **match: Any) -> dict[str, Any]:
    found = [
        r for r in resources(stack, kind).values() if all(r.get(k) == v for k, v in match.items())
    ]
    assert len(found) == 1, f"expected one {kind} with {match}, found {len(found)}"
    return found[0]


def walk(value: Any) -> Any:
    """Every string anywhere in a document."""
    if isinstance(value, dict):
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)
    elif isinstance(value, str):
        yield value
