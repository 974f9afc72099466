"""The Deployer's Vertex AI step, run as the pipelines' deploy step runs it (via host.py).

    python app/rehearsal/host.py VERTEX_URL -m app.rehearsal.deploy_step POLICY_DIR INPUTS_JSON

Vertex's executor hands the deploy component its parameter inputs (INPUTS_JSON: the compiled
task's bindings resolved against the job's values, see runner.deploy_inputs); the component
turns them into the step's settings (`steps.step_settings`), and the step's last act is
`vertex.deploy` of the staged policy. This runs exactly that, as the pipelines account, so
the Vertex AI fake receives the Deployer's own `models:upload` and `deployModel`.

Not rehearsed, and why: staging the policy at `gs://…/policies/<version>` and moving
`CURRENT` (TensorFlow's GCS filesystem has a fixed endpoint), and the ledger's BigQuery
transaction before it (multi-statement transactions are beyond the BigQuery fake).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    policy_dir, inputs = argv[0], json.loads(Path(argv[1]).read_text())
    from app.deployer import vertex
    from app.loop.parameters import PipelineParameters
    from app.loop.steps import POLICIES, step_settings
    from app.paths import join
    from app.policy_store import read_metadata

    parameters = PipelineParameters.pick(inputs)
    settings = step_settings(parameters)
    version = read_metadata(policy_dir).policy_version
    policy_uri = join(join(parameters.training_artifacts_dir, POLICIES), version)
    vertex.deploy(policy_uri, version, settings)
    print(f"rehearsal: deployed {policy_uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
