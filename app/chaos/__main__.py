"""`python -m app.chaos` (`make chaos`): every fault scenario, then .recloop/chaos/report.json.

Exits 1 when any scenario loses or duplicates an interaction (or fails otherwise).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

from rich.console import Console

from app.chaos import rig
from app.chaos.scenarios import (
    SCENARIOS,
    Context,
    Result,
    run_ledger_scenario,
    run_trainer_preempted,
)
from app.config import load_settings

NAMES = (*SCENARIOS, "trainer_preempted")
REPORT_KEYS = ("name", "interactions", "trained_once", "lost", "duplicated", "passed", "seconds")


def run_all(
    folder: Path,
    size: int,
    trainer_loops: int,
    names: tuple[str, ...] = NAMES,
    console: Console | None = None,
) -> list[Result]:
    console = console or Console()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    results: list[Result] = []
    with contextlib.ExitStack() as stack:
        emulated = rig.available()
        if emulated:
            with console.status("starting the Pub/Sub emulator…"):
                stack.enter_context(rig.emulator(folder))
        else:
            console.print(
                "[yellow]Pub/Sub emulator not installed: delivery scenarios run in-process"
            )
        for number, name in enumerate(names, start=1):
            ctx = Context(folder / name, size, emulated)
            with console.status(f"[{number}/{len(names)}] {name}…"):
                if name == "trainer_preempted":
                    result = run_trainer_preempted(ctx, trainer_loops)
                else:
                    result = run_ledger_scenario(name, ctx)
            mark = "[green]pass" if result.passed else "[red]FAIL"
            console.print(
                f"{mark}[/] {name}: {result.interactions} interactions, {result.trained_once} "
                f"trained once, {result.lost} lost, {result.duplicated} duplicated "
                f"({result.seconds:.1f}s) {result.note}"
            )
            results.append(result)
    return results


def write_report(path: Path, results: list[Result]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scenarios = [{k: v for k, v in asdict(r).items() if k in REPORT_KEYS} for r in results]
    path.write_text(json.dumps({"scenarios": scenarios}, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.chaos", description=__doc__)
    parser.add_argument("--size", type=int, default=96, help="interactions per scenario")
    parser.add_argument("--trainer-loops", type=int, default=400)
    parser.add_argument("--only", nargs="*", choices=NAMES, help="run only these scenarios")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    state = Path(load_settings().state_dir) / "chaos"
    results = run_all(state / "scenarios", args.size, args.trainer_loops, tuple(args.only or NAMES))
    report = state / "report.json"
    write_report(report, results)
    failed = [r.name for r in results if not r.passed]
    Console().print(f"report: {report}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
