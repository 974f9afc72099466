"""`make install` says how far pip is in a few lines (tools/pip_progress.awk), not silence."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("awk") is None, reason="awk is not installed")
def test_pips_real_output_becomes_a_few_progress_lines(tmp_path):
    package = tmp_path / "tiny"
    (package / "tiny").mkdir(parents=True)
    (package / "tiny" / "__init__.py").write_text("")
    (package / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "tiny"\nversion = "1.0"\n'
    )
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--progress-bar",
            "off",
            "--no-index",
            "--no-build-isolation",
            "--target",
            str(tmp_path / "site"),
            str(package),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    shown = subprocess.run(
        ["awk", "-f", str(ROOT / "tools" / "pip_progress.awk")],
        input=pip.stdout,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert shown == ["  building tiny", "  installing 1 packages", "  installed"], pip.stdout
