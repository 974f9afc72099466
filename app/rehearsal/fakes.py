"""Request-capturing fakes of Google APIs, for tests and `make rehearse`.

`FakeVertex` stands in for Vertex AI at the gRPC channel: the real google-cloud-aiplatform
SDK builds every request, serializes it to wire bytes, and the fake decodes those bytes,
records them (`requests`) and answers like the service would (done long-running operations,
models, endpoints, pipeline jobs). Assertions then look at what Vertex receives, not at the
calls our code makes. Credentials are anonymous; nothing leaves the process.

`FakeBigQueryHttp` stands in for BigQuery's REST API as the google-cloud-bigquery client's
HTTP session (`client._http`): it records method, path and JSON body of every request,
answers `GET` of datasets and tables it was told exist (404 otherwise), and refuses
everything else (501), creation included.

`FakeBigQueryWrite` is the Storage Write API's `BigQueryWrite/AppendRows` as a real gRPC
server on 127.0.0.1 (local-connection credentials: no TLS, the caller's token still sent),
which the real BigQueryWriteClient reaches through `warehouse.write_api_emulator_host`: it
decodes every request with the library's own types, records it with the caller's token, and
answers with `answer` (tests queue row errors; `make rehearse` stores the rows).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

PROJECT_NUMBER = "123456789"


@dataclass
class Request:
    method: str  # e.g. "ModelService/UploadModel"
    body: Any  # the request message, decoded from the bytes the SDK sent


class _Call:
    def trailing_metadata(self) -> tuple[()]:
        return ()


class _UnaryUnary:
    def __init__(self, vertex: FakeVertex, method: str, serialize: Any, deserialize: Any):
        self.vertex, self.method = vertex, method
        self.serialize, self.deserialize = serialize, deserialize

    def with_call(self, request: Any, **_: Any) -> tuple[Any, _Call]:
        wire = self.serialize(request)
        decoded = _decode(type(request), wire)
        name = self.method.rsplit(".", 1)[-1]  # "/google.cloud.aiplatform.v1.X/Y" → "X/Y"
        self.vertex.requests.append(Request(name, decoded))
        response = self.vertex.answer(name, decoded)
        return self.deserialize(_encode(response)), _Call()

    def __call__(self, request: Any, **kwargs: Any) -> Any:
        return self.with_call(request, **kwargs)[0]


class _Channel:
    """Just enough of grpc.Channel for the gapic transports: unary calls are answered,
    streaming stubs can be made but refuse to be called."""

    def __init__(self, vertex: FakeVertex):
        self.vertex = vertex

    def unary_unary(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool = False,
    ) -> _UnaryUnary:
        return _UnaryUnary(self.vertex, method, request_serializer, response_deserializer)

    def _streaming(self, method: str, *_: Any, **__: Any) -> Callable[..., Any]:
        """Clients prepare streaming stubs too (the prediction client does); none is answered."""

        def refuse(*_: Any, **__: Any) -> Any:
            raise NotImplementedError(f"FakeVertex does not stream ({method})")

        return refuse

    unary_stream = stream_unary = stream_stream = _streaming

    def close(self) -> None:
        pass


_FILTER_TOKEN = re.compile(r'\s*(?:([()])|(AND|OR)\b|(\w+)\s*=\s*"([^"]*)")')


def _selects(expression: str, job: Any) -> bool:
    """Vertex's list filter for the fields recloop uses: `field="value"` comparisons of
    display_name and state (by enum name), AND, OR and parentheses. Anything else is refused,
    so a filter the fake cannot read fails the test instead of selecting everything."""
    fields = {"display_name": job.display_name, "state": type(job.state)(job.state).name}
    tokens: list[str | bool] = []
    position, end = 0, len(expression.rstrip())
    while position < end:
        match = _FILTER_TOKEN.match(expression, position)
        if match is None or (match.group(3) and match.group(3) not in fields):
            raise ValueError(f"FakeVertex cannot read the filter {expression!r}")
        bracket, operator, name, value = match.groups()
        tokens.append(bracket or operator or fields[name] == value)
        position = match.end()
    if not tokens:
        return True

    def either() -> bool:  # OR binds looser than AND, as in Vertex's filter syntax
        held = both()
        while tokens and tokens[0] == "OR":
            tokens.pop(0)
            held = both() or held
        return held

    def both() -> bool:
        held = term()
        while tokens and tokens[0] == "AND":
            tokens.pop(0)
            held = term() and held
        return held

    def term() -> bool:
        token = tokens.pop(0)
        if token == "(":
            held = either()
            if not tokens or tokens.pop(0) != ")":
                raise ValueError(f"FakeVertex: unbalanced parentheses in {expression!r}")
            return held
        if isinstance(token, bool):
            return token
        raise ValueError(f"FakeVertex cannot read the filter {expression!r}")

    selected = either()
    if tokens:
        raise ValueError(f"FakeVertex cannot read the filter {expression!r}")
    return selected


def _check_traffic(endpoint: Any) -> None:
    """As Vertex refuses it: a traffic split naming a model not deployed, or (with any model
    deployed) one whose percentages do not add up to 100."""
    split, deployed = dict(endpoint.traffic_split), {d.id for d in endpoint.deployed_models}
    if not set(split) <= deployed:
        raise ValueError(f"traffic split {split} names models not deployed ({sorted(deployed)})")
    if deployed and sum(split.values()) != 100:
        raise ValueError(f"traffic split {split} does not add up to 100")


def _decode(kind: Any, wire: bytes) -> Any:
    return kind.deserialize(wire) if hasattr(kind, "deserialize") else kind.FromString(wire)


def _encode(message: Any) -> bytes:
    kind: Any = type(message)
    return kind.serialize(message) if hasattr(kind, "serialize") else message.SerializeToString()


@dataclass
class FakeVertex:
    """Vertex AI in one region of one project, as the SDK's gRPC transport sees it."""

    project: str = "recloop-dev"
    location: str = "us-central1"
    requests: list[Request] = field(default_factory=list)
    models: dict[str, Any] = field(default_factory=dict)  # resource name → Model
    endpoints: dict[str, Any] = field(default_factory=dict)  # resource name → Endpoint
    pipeline_jobs: list[Any] = field(default_factory=list)
    tuning_jobs: dict[str, Any] = field(default_factory=dict)
    # Trials a tuning job reports when it finishes: ({parameter: value}, final_regret).
    tuning_trials: list[tuple[dict[str, float], float]] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def parent(self) -> str:
        return f"projects/{PROJECT_NUMBER}/locations/{self.location}"

    def add_endpoint(self, endpoint_id: str, deployed_model_ids: tuple[str, ...] = ()) -> str:
        """An endpoint infra created, with models already deployed on it."""
        from google.cloud.aiplatform_v1 import types

        name = f"{self.parent}/endpoints/{endpoint_id}"
        self.endpoints[name] = types.Endpoint(
            name=name,
            display_name=f"endpoint-{endpoint_id}",
            deployed_models=[types.DeployedModel(id=i) for i in deployed_model_ids],
            traffic_split={i: 100 // max(1, len(deployed_model_ids)) for i in deployed_model_ids},
        )
        return name

    def add_model(self, display_name: str) -> str:
        from google.cloud.aiplatform_v1 import types

        name = f"{self.parent}/models/{next(self._ids)}"
        self.models[name] = types.Model(name=name, display_name=display_name, version_id="1")
        return name

    def sent(self, method: str) -> list[Any]:
        """Bodies of the requests of one method ("ModelService/UploadModel"), in order."""
        return [r.body for r in self.requests if r.method == method]

    @contextlib.contextmanager
    def install(self) -> Iterator[FakeVertex]:
        """Routes every Vertex AI gRPC channel the SDK opens to this fake."""
        import google.auth
        from google.api_core import grpc_helpers
        from google.auth.credentials import AnonymousCredentials
        from google.cloud.aiplatform.utils import gcs_utils

        with (
            mock.patch.object(grpc_helpers, "create_channel", lambda *a, **k: _Channel(self)),
            mock.patch.object(
                google.auth, "default", lambda *a, **k: (AnonymousCredentials(), self.project)
            ),
            # The SDK checks the pipeline root's bucket over the GCS JSON API; record it.
            mock.patch.object(
                gcs_utils,
                "create_gcs_bucket_for_pipeline_artifacts_if_it_does_not_exist",
                lambda **kwargs: self.requests.append(Request("Storage/EnsureBucket", kwargs)),
            ),
        ):
            yield self

    def answer(self, method: str, body: Any) -> Any:
        handler: Callable[[Any], Any] | None = getattr(
            self, "_" + method.replace("/", "_").lower(), None
        )
        if handler is None:
            raise NotImplementedError(f"FakeVertex does not answer {method}")
        return handler(body)

    # --- answers, named after the RPCs -------------------------------------------------
    def _done(self, response: Any) -> Any:
        from google.longrunning import operations_pb2
        from google.protobuf import any_pb2

        packed = any_pb2.Any()
        packed.Pack(type(response).pb(response))
        return operations_pb2.Operation(
            name=f"{self.parent}/operations/{next(self._ids)}", done=True, response=packed
        )

    def _endpointservice_getendpoint(self, body: Any) -> Any:
        return self.endpoints[body.name]

    def _modelservice_listmodels(self, body: Any) -> Any:
        from google.cloud.aiplatform_v1 import types

        wanted = body.filter.partition('display_name="')[2].rstrip('"')
        return types.ListModelsResponse(
            models=[m for m in self.models.values() if not wanted or m.display_name == wanted]
        )

    def _modelservice_getmodel(self, body: Any) -> Any:
        return self.models[body.name.split("@")[0]]

    def _modelservice_uploadmodel(self, body: Any) -> Any:
        from google.cloud.aiplatform_v1 import types

        name = body.parent_model or f"{self.parent}/models/{next(self._ids)}"
        version = str(next(self._ids))
        model: Any = types.Model(body.model)
        model.name, model.version_id = name, version
        # What Vertex reports for a custom-container model; without it the SDK drops
        # machine_type and replica counts from DeployModel.
        model.supported_deployment_resources_types = [
            types.Model.DeploymentResourcesType.DEDICATED_RESOURCES
        ]
        self.models[name] = model
        return self._done(types.UploadModelResponse(model=name, model_version_id=version))

    def _endpointservice_deploymodel(self, body: Any) -> Any:
        from google.cloud.aiplatform_v1 import types

        endpoint = self.endpoints[body.endpoint]
        deployed = types.DeployedModel(body.deployed_model)
        deployed.id = str(next(self._ids))
        endpoint.deployed_models.append(deployed)
        split = dict(body.traffic_split)
        endpoint.traffic_split = {deployed.id if k == "0" else k: v for k, v in split.items()}
        _check_traffic(endpoint)
        return self._done(types.DeployModelResponse(deployed_model=deployed))

    def _endpointservice_undeploymodel(self, body: Any) -> Any:
        from google.cloud.aiplatform_v1 import types

        endpoint = self.endpoints[body.endpoint]
        if body.deployed_model_id not in {d.id for d in endpoint.deployed_models}:
            raise ValueError(f"{body.deployed_model_id} is not deployed on {body.endpoint}")
        kept = [d for d in endpoint.deployed_models if d.id != body.deployed_model_id]
        del endpoint.deployed_models[:]
        endpoint.deployed_models.extend(kept)
        split = dict(body.traffic_split) or {
            k: v for k, v in endpoint.traffic_split.items() if k != body.deployed_model_id
        }
        endpoint.traffic_split = split
        _check_traffic(endpoint)
        return self._done(types.UndeployModelResponse())

    def _pipelineservice_createpipelinejob(self, body: Any) -> Any:
        from google.cloud.aiplatform_v1 import types

        job: Any = types.PipelineJob(body.pipeline_job)
        job.name = f"{self.parent}/pipelineJobs/{body.pipeline_job_id or next(self._ids)}"
        job.state = types.PipelineState.PIPELINE_STATE_PENDING
        self.pipeline_jobs.append(job)
        return job

    def _pipelineservice_listpipelinejobs(self, body: Any) -> Any:
        """The jobs `body.filter` selects, evaluated like Vertex: a wrong single-flight filter
        (one that misses a just-submitted, PENDING job) lets a second run through."""
        from google.cloud.aiplatform_v1 import types

        jobs = [j for j in self.pipeline_jobs if _selects(body.filter, j)]
        return types.ListPipelineJobsResponse(pipeline_jobs=jobs)

    def _jobservice_createhyperparametertuningjob(self, body: Any) -> Any:
        """The job is accepted and, at once, finished with `tuning_trials`."""
        from google.cloud.aiplatform_v1 import types

        job: Any = types.HyperparameterTuningJob(body.hyperparameter_tuning_job)
        job.name = f"{self.parent}/hyperparameterTuningJobs/{next(self._ids)}"
        job.state = types.JobState.JOB_STATE_SUCCEEDED
        metric = job.study_spec.metrics[0].metric_id
        for i, (values, objective) in enumerate(self.tuning_trials):
            job.trials.append(
                types.Trial(
                    id=str(i + 1),
                    state=types.Trial.State.SUCCEEDED,
                    parameters=[
                        types.Trial.Parameter(parameter_id=k, value=v) for k, v in values.items()
                    ],
                    final_measurement=types.Measurement(
                        metrics=[types.Measurement.Metric(metric_id=metric, value=objective)]
                    ),
                )
            )
        self.tuning_jobs[job.name] = job
        return job

    def _jobservice_gethyperparametertuningjob(self, body: Any) -> Any:
        return self.tuning_jobs[body.name]


@dataclass
class _Response:
    status_code: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})

    @property
    def content(self) -> bytes:
        return json.dumps(self.body).encode()

    @property
    def text(self) -> str:
        return self.content.decode()

    def json(self) -> dict[str, Any]:
        return self.body

    @property
    def request(self) -> Any:
        return mock.Mock(url="", method="")


@dataclass
class FakeBigQueryHttp:
    """The BigQuery REST API as `client._http` (a requests.Session) of the real client."""

    existing: set[str] = field(default_factory=set)  # "dataset" or "dataset.table"
    requests: list[tuple[str, str, Any]] = field(default_factory=list)  # method, path, body
    is_mtls: bool = False  # read by the client to pick its endpoint

    def request(self, method: str, url: str, data: Any = None, **_: Any) -> _Response:
        path = url.split("/bigquery/v2", 1)[-1].split("?", 1)[0]
        body = json.loads(data) if data else None
        self.requests.append((method, path, body))
        parts = path.strip("/").split("/")  # projects/p/datasets/d[/tables/t]
        if method == "GET" and len(parts) in (4, 6) and parts[2] == "datasets":
            key = parts[3] if len(parts) == 4 else f"{parts[3]}.{parts[5]}"
            if key in self.existing:
                kind = "table" if len(parts) == 6 else "dataset"
                return _Response(200, _resource(kind, parts))
            return _Response(404, {"error": {"code": 404, "message": f"Not found: {path}"}})
        return _Response(501, {"error": {"code": 501, "message": f"fake: {method} {path}"}})


def _resource(kind: str, parts: list[str]) -> dict[str, Any]:
    reference = {"projectId": parts[1], "datasetId": parts[3]}
    if kind == "table":
        return {"tableReference": {**reference, "tableId": parts[5]}, "schema": {"fields": []}}
    return {"datasetReference": reference}


@dataclass
class Append:
    """One AppendRowsRequest as BigQuery received it."""

    request: Any  # google.cloud.bigquery_storage_v1.types.AppendRowsRequest
    token: str | None  # the bearer token of the call, if it carried one

    def schema(self) -> Any:
        """The writer schema, as the Arrow IPC bytes sent decode."""
        import pyarrow as pa

        return pa.ipc.read_schema(
            pa.py_buffer(self.request.arrow_rows.writer_schema.serialized_schema)
        )

    def rows(self) -> Any:
        """The rows sent, as an Arrow table of the writer schema."""
        import pyarrow as pa

        batch = pa.ipc.read_record_batch(
            pa.py_buffer(self.request.arrow_rows.rows.serialized_record_batch), self.schema()
        )
        return pa.Table.from_batches([batch])


WRITE_SERVICE = "google.cloud.bigquery.storage.v1.BigQueryWrite"


class FakeBigQueryWrite:
    """BigQuery's Storage Write API (AppendRows only) as a gRPC server on 127.0.0.1."""

    def __init__(self, answer: Callable[[Append], Any] | None = None):
        self.appends: list[Append] = []
        # Answers to give, in order, before `answer` (default: every append accepted).
        self.queued: list[Any] = []
        self.answer = answer or (lambda append: accepted())
        self.host = ""
        self._lock = threading.Lock()

    def _append_rows(self, requests: Iterator[Any], context: Any) -> Iterator[Any]:
        metadata = dict(context.invocation_metadata())
        auth = metadata.get("authorization", "")
        token = auth.removeprefix("Bearer ") if auth else None
        for request in requests:
            append = Append(request, token)
            with self._lock:
                self.appends.append(append)
                answer = self.queued.pop(0) if self.queued else None
            yield answer if answer is not None else self.answer(append)

    @contextlib.contextmanager
    def serving(self) -> Iterator[FakeBigQueryWrite]:
        from concurrent import futures

        import grpc
        from google.cloud.bigquery_storage_v1 import types

        handler = grpc.method_handlers_generic_handler(
            WRITE_SERVICE,
            {
                "AppendRows": grpc.stream_stream_rpc_method_handler(
                    self._append_rows,
                    request_deserializer=types.AppendRowsRequest.deserialize,
                    response_serializer=types.AppendRowsResponse.serialize,
                )
            },
        )
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), handlers=[handler])
        local = grpc.local_server_credentials(grpc.LocalConnectionType.LOCAL_TCP)
        port = server.add_secure_port("127.0.0.1:0", local)
        server.start()
        self.host = f"127.0.0.1:{port}"
        try:
            yield self
        finally:
            server.stop(grace=None)


def accepted() -> Any:
    """An append's success on the default stream (no offset)."""
    from google.cloud.bigquery_storage_v1 import types

    return types.AppendRowsResponse(append_result=types.AppendRowsResponse.AppendResult())


def row_errors(*indexes: int, message: str = "invalid row") -> Any:
    """BigQuery's answer to an append with corrupt rows: none of the request's rows stored."""
    from google.cloud.bigquery_storage_v1 import types

    return types.AppendRowsResponse(
        row_errors=[
            types.RowError(index=i, code=types.RowError.RowErrorCode.FIELDS_ERROR, message=message)
            for i in indexes
        ]
    )


def refused(code: int, message: str) -> Any:
    """An append answered with an error status (google.rpc.Status; 3: INVALID_ARGUMENT)."""
    from google.cloud.bigquery_storage_v1 import types
    from google.rpc import status_pb2

    return types.AppendRowsResponse(error=status_pb2.Status(code=code, message=message))
