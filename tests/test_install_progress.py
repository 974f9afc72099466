"""`make install` is never a silent minute: tools/ticking.sh says the quiet pip is still at
work, and hands back its exit status."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TICKING = str(ROOT / "tools" / "ticking.sh")


def test_a_long_command_is_said_to_be_running_and_its_status_kept():
    done = subprocess.run(
        [TICKING, "1", "installing", "sleep", "3.5"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0
    said = done.stdout.splitlines()  # about one a second; a loaded machine may drop one
    assert 2 <= len(said) <= 3
    assert said == [f"  still installing ({s} s)" for s in range(1, len(said) + 1)]
    failed = subprocess.run(
        [TICKING, "1", "installing", "bash", "-c", "echo pip says why >&2; exit 3"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert failed.returncode == 3  # make stops on pip's failure
    assert failed.stderr == "pip says why\n" and failed.stdout == ""
