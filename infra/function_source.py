"""The Cloud Functions source archive: the entry points, the app modules they import, and
their requirements — nothing else (no tests, no .venv, no trainer or predictor)."""

from __future__ import annotations

import modulefinder
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENTRY = ROOT / "app" / "functions" / "main.py"
# What the function modules import from outside the standard library, pinned as in
# constraints.txt (the one resolved set).
REQUIREMENTS = (
    "functions-framework",
    "google-cloud-aiplatform",
    "google-cloud-bigquery",
    "google-cloud-bigquery-storage",
    "google-cloud-pubsub",
    "google-cloud-storage",
    "httpx",
    "numpy",
    "orjson",
    "pyarrow",
    "pytz",
    "werkzeug",
)
MAIN = '''"""Cloud Functions (gen2, CloudEvent) entry points: simulator, logger, trigger."""

from app.functions.main import logger, simulator, trigger

__all__ = ["logger", "simulator", "trigger"]
'''


def app_modules() -> list[Path]:
    """Every app module the entry points import, found by following their imports."""
    finder = modulefinder.ModuleFinder(
        path=[str(ROOT)], excludes=["tensorflow", "tf_agents", "kfp"]
    )
    finder.run_script(str(ENTRY))
    files = {
        Path(path)
        for name, module in finder.modules.items()
        if (name == "app" or name.startswith("app."))
        and (path := getattr(module, "__file__", None))
    }
    files.add(ENTRY)
    files.add(ROOT / "app" / "profiles" / "__init__.py")
    for package in list(files):  # each package's __init__.py along the way
        for parent in package.relative_to(ROOT).parents:
            init = ROOT / parent / "__init__.py"
            if parent != Path(".") and init.exists():
                files.add(init)
    return sorted(files)


def pinned_requirements() -> list[str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return [f"{name}=={pins[name]}" for name in REQUIREMENTS]


def build(target: Path) -> Path:
    """Writes the source tree to `target` (TerraformAsset zips it)."""
    if target.exists():
        shutil.rmtree(target)
    for file in app_modules():
        destination = target / file.relative_to(ROOT)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, destination)
    profiles = ROOT / "app" / "profiles"
    for profile in profiles.glob("*.toml"):
        shutil.copy2(profile, target / "app" / "profiles" / profile.name)
    (target / "main.py").write_text(MAIN)
    (target / "requirements.txt").write_text("\n".join(pinned_requirements()) + "\n")
    return target
