"""cdktf app: `python main.py` (cdktf synth) writes every stack of every environment.

RECLOOP_INFRA_ENVS limits which environments are synthesised (make synth ENV=dev).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the repository root: `app` (schemas) and `infra`

from cdktf import App  # noqa: E402

from infra import config, function_source  # noqa: E402
from infra.stacks.app import AppStack  # noqa: E402
from infra.stacks.bootstrap import BootstrapStack  # noqa: E402
from infra.stacks.data import DataStack  # noqa: E402


def build(outdir: Path, envs: tuple[str, ...] = config.ENVIRONMENTS) -> App:
    app = App(outdir=str(outdir))
    source = function_source.build(outdir.parent / "build" / "function-source")
    for env in envs:
        settings = config.load(env)
        data = DataStack(app, settings)
        AppStack(app, settings, data, source)
        BootstrapStack(app, settings)
    return app


if __name__ == "__main__":
    envs = tuple(sys.argv[1:]) or config.ENVIRONMENTS
    build(HERE / "cdktf.out", envs).synth()
