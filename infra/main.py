"""cdktf app: `python main.py` (cdktf synth) writes every stack of every environment.

RECLOOP_INFRA_ENVS limits which environments are synthesised (make synth ENV=dev).
A mistake (an unknown environment, a missing setting) is one line on stderr and exit code 2;
`--debug` (`make synth DEBUG=1`) shows the traceback. Proved by
tests/test_cli.py::test_make_synth_mistake_is_one_line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the repository root: `app` (schemas) and `infra`

from infra import config  # noqa: E402

# jsii prints Node's end-of-life banner line by line as Python byte strings (b'!!  …\n');
# recloop says it once, readably, and silences jsii's copy for that Node major only.
JSII_EOL_VARIABLE = "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"
SUPPORTED_NODE = 22


def build(outdir: Path, envs: tuple[str, ...] = config.ENVIRONMENTS):
    from cdktf import App

    from infra import function_source
    from infra.stacks.app import AppStack
    from infra.stacks.bootstrap import BootstrapStack
    from infra.stacks.data import DataStack

    app = App(outdir=str(outdir))
    source = function_source.build(outdir.parent / "build" / "function-source")
    for env in envs:
        settings = config.load(env)
        data = DataStack(app, settings)
        AppStack(app, settings, data, source)
        BootstrapStack(app, settings)
    return app


def note_old_node() -> None:
    try:
        version = subprocess.run(
            ["node", "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        major = int(version.lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return
    if major < SUPPORTED_NODE:
        print(
            f"note: Node {version} is past end of life for jsii/cdktf; "
            f"Node {SUPPORTED_NODE} or newer is supported",
            file=sys.stderr,
        )
        os.environ[JSII_EOL_VARIABLE] = str(major)


def main(argv: list[str]) -> int:
    debug = "--debug" in argv
    envs = tuple(a for a in argv if a != "--debug") or config.ENVIRONMENTS
    try:
        for env in envs:  # checked before Node starts: a typo fails in a second
            config.load(env)
        note_old_node()
        build(HERE / "cdktf.out", envs).synth()
    except (ValueError, OSError) as err:
        if debug:
            traceback.print_exc()
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
