"""Runs a component's real entry point with the Vertex AI SDK pointed at the rehearsal's fake.

    python app/rehearsal/host.py VERTEX_URL -m MODULE [ARGS…]

Run as a script (not `-m app.rehearsal.host`) so that it imports nothing from the
repository: a Cloud Function runs from its source archive alone, and so does its rehearsal.
The Vertex SDK has no emulator variable; this sets what `aiplatform.init` offers for it —
`api_endpoint` and the REST transport — before the entry point runs, so the component's own
code and environment stay exactly as deployed. The SDK's Resource Manager client (its
pipeline-root bucket ownership check asks for the project number) has neither: its client is
given the same endpoint. Everything else reaches the fakes through the SDKs' documented
variables (see app/rehearsal/apis.py).
"""

from __future__ import annotations

import runpy
import sys


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "-m":
        sys.exit("usage: host.py VERTEX_URL -m MODULE [ARGS…]")
    vertex_url, module, args = argv[0], argv[2], argv[3:]
    sys.path.pop(0)  # this script's folder: nothing of the repository beyond what runs

    import functools
    import types

    from google.cloud import aiplatform, resourcemanager
    from google.cloud.aiplatform.utils import resource_manager_utils

    aiplatform.init(api_endpoint=vertex_url, api_transport="rest")
    resource_manager_utils.resourcemanager = types.SimpleNamespace(  # type: ignore[assignment]
        ProjectsClient=functools.partial(
            resourcemanager.ProjectsClient,
            transport="rest",
            client_options={"api_endpoint": vertex_url},
        )
    )
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
