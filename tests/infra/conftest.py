"""One synthesis of every stack for the whole session (jsii start-up takes seconds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra.golden import synthesize, synthesized


@pytest.fixture(scope="session")
def stacks_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(tmp_path_factory.mktemp("infra") / "cdktf.out")


@pytest.fixture(scope="session")
def stacks(stacks_dir: Path) -> dict[str, dict[str, Any]]:
    return synthesized(stacks_dir)
