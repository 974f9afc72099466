"""Running the cloud components as deployed, against local or request-capturing services.

`make rehearse` (app/rehearsal/runner.py) starts each cloud component as a process with
exactly the environment the cloud gives it — a Cloud Function's from the synthesized
`<env>-app` stack, the predictor's from the Deployer's `Model.upload` request plus the
`AIP_*` variables Vertex sets — with Pub/Sub served by the emulator and the other Google
APIs by request-capturing fakes served over HTTP, shared by all processes (apis.py). It
follows one simulator tick through the loop and checks each seam from the receiving side.
Proved by tests/test_rehearse.py.

fakes.py holds in-process fakes (Vertex AI at the gRPC channel, BigQuery's HTTP session) for
request-level unit tests.
"""
