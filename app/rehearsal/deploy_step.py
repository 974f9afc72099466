"""The pipelines' deploy step, run the way Vertex AI Pipelines runs it (via app/rehearsal/host.py).

    python app/rehearsal/host.py VERTEX_URL -m app.rehearsal.deploy_step POLICY_DIR PARAMETERS_JSON

Vertex's executor calls the KFP component function with the job's parameter values (those
the component declares) and its input artifacts; so does this, with the trained policy as
the `model` artifact and an ingest manifest as `examples`. The Deployer then sends its
requests to the Vertex AI and BigQuery fakes.

One step is not rehearsed: copying the policy to `gs://…/policies/<version>`. TensorFlow's
GCS filesystem has a fixed endpoint, so `app.deployer.local.deploy` is replaced here by its
outcome (the version it would publish); the URI handed to `Model.upload` is unchanged.
"""

from __future__ import annotations

import inspect
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class _Artifact:
    path: str


def _published_version(policy_dir: str, policies_dir: str) -> str:
    from app.policy_store import read_metadata

    version = read_metadata(policy_dir).policy_version
    print(f"rehearsal: would copy {policy_dir} to {policies_dir}/{version} (not rehearsed)")
    return version


def main(argv: list[str]) -> int:
    policy_dir, parameters = argv[0], json.loads(Path(argv[1]).read_text())
    from app.deployer import local
    from app.loop.ingester import MANIFEST, IngestResult
    from pipelines import components

    local.deploy = _published_version
    examples = Path(tempfile.mkdtemp(prefix="rehearsal-examples-"))
    (examples / MANIFEST).write_text(
        json.dumps(asdict(IngestResult(examples=0, watermark="", since="", shards=[])))
    )
    signature = inspect.signature(components.deploy)
    artifacts: dict[str, Any] = {
        "model": _Artifact(policy_dir),
        "examples": _Artifact(str(examples)),
    }
    kwargs = {
        name: artifacts.get(name, parameters.get(name))
        for name in signature.parameters
        if name in artifacts or name in parameters
    }
    missing = [n for n in signature.parameters if n not in kwargs]
    if missing:
        print(f"the deploy step takes {', '.join(missing)}, which the job does not pass")
        return 2
    version = components.deploy(**kwargs)
    print(f"rehearsal: deployed {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
