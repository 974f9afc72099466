"""make demo's console: every step is visible from its first second, also without a terminal."""

import io

from rich.console import Console

from app.demo import doing


def test_a_step_is_a_line_where_no_spinner_can_show():
    """Piped (`make demo | tee`, CI), rich draws no spinner: the step's text is printed instead
    (the start-up pipeline's half minute was silent there)."""
    out = io.StringIO()
    with doing(Console(file=out, force_terminal=False), "start-up pipeline (kfp.local)…"):
        pass
    assert out.getvalue().strip() == "start-up pipeline (kfp.local)…"
