"""Request-capturing fakes of the Google APIs the loop calls, served over HTTP on loopback.

The components' own SDKs build and send every request; this server answers the way the
service does and keeps what it received, so the rehearsal asserts what Google would get:

- metadata server (`GCE_METADATA_HOST`/`GCE_METADATA_IP`, google-auth's documented
  overrides): hands each process a token naming the workload identity it runs as
  (`/as/<account>/…`), as Cloud Functions and Vertex AI do;
- Vertex AI REST v1 (the SDK's `api_transport="rest"` with `api_endpoint`, set by
  app/rehearsal/host.py): endpoints, models (`models:upload`, `:deployModel`), `:predict`
  forwarded to the deployed predictor process, pipeline jobs;
- BigQuery REST v2 (`BIGQUERY_EMULATOR_HOST`, honoured by google-cloud-bigquery): tables
  made from the synthesized stack's table schemas in DuckDB, queries run on them;
- BigQuery Storage Write API (`BigQueryWrite/AppendRows` over gRPC, app/rehearsal/fakes.py;
  the Logger's `warehouse.write_api_emulator_host`): appends to a table's default stream,
  their Arrow writer schema and rows checked against the table as BigQuery checks them,
  stored in the same DuckDB tables;
- Cloud Storage JSON API (`STORAGE_EMULATOR_HOST`, honoured by google-cloud-storage):
  downloads of the objects the rehearsal put there (the compiled pipeline templates);
- Resource Manager REST v3 `projects.get` (its client pointed here by host.py), which the
  Vertex SDK asks for the project number when it checks who owns the pipeline root's bucket.

Anything else gets a 404 naming the request, which the component's log then shows.
tests/test_rehearse.py drives the real SDKs against it (BigQuery's rejections, Vertex's
doubles); tests/infra/test_rehearse.py, the whole loop.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import duckdb
import httpx

from app.rehearsal import fakes

TOKEN_PREFIX = "rehearsal-token:"
PROJECT_NUMBER = "123456789"  # every project's number, as Resource Manager and GCS report it
_VERTEX = re.compile(r"^/v1/(projects/[^/]+/locations/[^/]+)/(.+)$")
WRITE_STREAM = re.compile(r"^projects/([^/]+)/datasets/([^/]+)/tables/([^/]+)/streams/_default$")
_BQ_JOBS = re.compile(r"^/bigquery/v2/projects/([^/]+)/jobs$")
_BQ_JOB = re.compile(r"^/bigquery/v2/projects/([^/]+)/(?:jobs|queries)/([^/]+)$")
GCS_OBJECT = re.compile(r"^(?:/download)?/storage/v1/b/([^/]+)/o/(.+)$")
_TABLE = re.compile(r"`([^`.]+)\.([^`.]+)\.([^`.]+)`")
_DUCKDB_TYPES = {
    "STRING": "VARCHAR",
    "INT64": "BIGINT",
    "INTEGER": "BIGINT",
    "FLOAT64": "DOUBLE",
    "FLOAT": "DOUBLE",
    "TIMESTAMP": "TIMESTAMPTZ",
    "BOOL": "BOOLEAN",
    "BOOLEAN": "BOOLEAN",
}
_DEFAULTS = {"CURRENT_TIMESTAMP()": "current_timestamp"}
# GoogleSQL → DuckDB, for what the warehouse's queries use.
_DIALECT = [
    (re.compile(r"@(\w+)"), r"$\1"),
    (re.compile(r"\bIS_NAN\("), "isnan("),
    (re.compile(r"\bIS_INF\("), "isinf("),
    (re.compile(r"\bARRAY_LENGTH\("), "len("),
    (re.compile(r"\bAS STRING\)"), "AS VARCHAR)"),
    (re.compile(r"\bUNNEST\(([^()]*)\) AS (\w+)"), r"UNNEST(\1) AS _\2(\2)"),
]
_BIGQUERY_TYPES = {
    "BIGINT": "INTEGER",
    "INTEGER": "INTEGER",
    "DOUBLE": "FLOAT",
    "VARCHAR": "STRING",
    "BOOLEAN": "BOOLEAN",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMP",
    "TIMESTAMP": "TIMESTAMP",
}


@dataclass(frozen=True)
class Request:
    """One request a component sent, as the service received it."""

    api: str  # vertex | bigquery | storage
    method: str
    path: str
    query: dict[str, str]
    body: Any
    caller: str | None  # the workload identity of the token it carried
    at: float = field(default_factory=time.time)


@dataclass
class Deployment:
    """What Vertex would run after `deployModel`: the uploaded model and how it is deployed."""

    model: dict[str, Any]
    deployed_model: dict[str, Any]


@dataclass
class BigQueryTables:
    """The tables the data stack declares, in DuckDB, keyed by (project, dataset, table)."""

    db: Any = field(default_factory=lambda: duckdb.connect(":memory:"))
    schemas: dict[tuple[str, str, str], list[dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def create(self, project: str, dataset: str, table: str, fields: list[dict[str, Any]]) -> None:
        columns = ", ".join(_column(f) for f in fields)
        with self.lock:
            self.db.execute(f'CREATE TABLE "{self._name(project, dataset, table)}" ({columns})')
        self.schemas[(project, dataset, table)] = fields

    @staticmethod
    def _name(project: str, dataset: str, table: str) -> str:
        return f"{project}.{dataset}.{table}"

    def append(self, key: tuple[str, str, str], rows: Any, defaults: bool) -> tuple[str, list[int]]:
        """Stores an Arrow table of rows as AppendRows does, all or none: returns what is
        wrong with the writer schema, or the rows that are, and stores nothing then. Columns
        the writer leaves out take their default (`defaults`: DEFAULT_VALUE asked) or NULL."""
        import pyarrow as pa
        import pyarrow.compute as pc

        fields = {f["name"]: f for f in self.schemas[key]}
        sent = rows.schema
        problems = [f"no such field: {n}" for n in sent.names if n not in fields]
        problems += [
            f"field {n} is Arrow {sent.field(n).type}, the table's is "
            f"{fields[n].get('mode', 'NULLABLE')} {fields[n]['type']}"
            for n in sent.names
            if n in fields and not _arrow_fits(sent.field(n).type, fields[n])
        ]
        missing = [n for n in fields if n not in sent.names]
        problems += [
            f"missing required field: {n}"
            for n in missing
            if fields[n].get("mode") == "REQUIRED"
            and not (defaults and "defaultValueExpression" in fields[n])
        ]
        if problems:
            return "; ".join(problems), []
        required = [n for n in sent.names if fields[n].get("mode") == "REQUIRED"]
        nulls = pa.array([False] * rows.num_rows)
        for n in required:
            nulls = pc.or_(nulls, pc.is_null(rows.column(n)))
        bad = [i for i, null in enumerate(nulls.to_pylist()) if null]
        if bad:
            return "", bad
        nulled = [n for n in missing if not (defaults and "defaultValueExpression" in fields[n])]
        names = ", ".join(f'"{n}"' for n in [*sent.names, *nulled])
        values = ", ".join([*(f'"{n}"' for n in sent.names), *("NULL" for _ in nulled)])
        with self.lock, self.db.cursor() as cursor:  # a cursor of its own to register on
            cursor.register("_appended", rows)
            cursor.execute(
                f'INSERT INTO "{self._name(*key)}" ({names}) SELECT {values} FROM _appended'
            )
        return "", []

    def count(self, key: tuple[str, str, str]) -> int:
        with self.lock:
            row = self.db.execute(f'SELECT count(*) FROM "{self._name(*key)}"').fetchone()
        return int(row[0]) if row else 0

    def query(self, sql: str, parameters: list[dict[str, Any]]) -> tuple[list[dict], list[list]]:
        """Runs BigQuery standard SQL that names declared tables; unknown tables are errors."""

        def table(match: re.Match[str]) -> str:
            key = (match.group(1), match.group(2), match.group(3))
            if key not in self.schemas:
                raise LookupError(f"Not found: Table {'.'.join(key)}")
            return f'"{self._name(*key)}"'

        translated = _TABLE.sub(table, sql)
        for pattern, replacement in _DIALECT:
            translated = pattern.sub(replacement, translated)
        values = {p["name"]: _parameter(p) for p in parameters}
        with self.lock:
            cursor = self.db.execute(translated, values)
            rows = cursor.fetchall()
            description = cursor.description
        schema = [_field(name, str(kind)) for name, kind, *_ in description]
        return schema, [list(r) for r in rows]


def _arrow_fits(kind: Any, field: dict[str, Any]) -> bool:
    """Whether an Arrow column of type `kind` can be written to the BigQuery `field`."""
    import pyarrow as pa

    if field.get("mode") == "REPEATED":
        if not pa.types.is_list(kind):
            return False
        kind = kind.value_type
    checks = {
        "STRING": pa.types.is_string,
        "INT64": pa.types.is_int64,
        "INTEGER": pa.types.is_int64,
        "FLOAT64": pa.types.is_float64,
        "FLOAT": pa.types.is_float64,
        "TIMESTAMP": pa.types.is_timestamp,
        "BOOL": pa.types.is_boolean,
        "BOOLEAN": pa.types.is_boolean,
    }
    return checks[field["type"]](kind)


def _column(field: dict[str, Any]) -> str:
    kind = _DUCKDB_TYPES[field["type"]] + ("[]" if field.get("mode") == "REPEATED" else "")
    default = field.get("defaultValueExpression")
    if default is not None:
        kind += f" DEFAULT {_DEFAULTS[default]}"
    return f'"{field["name"]}" {kind}'


def _parameter(parameter: dict[str, Any]) -> Any:
    kind = parameter["parameterType"]["type"]
    value = parameter["parameterValue"].get("value")
    if value is None:
        return None
    if kind == "TIMESTAMP":
        return datetime.fromisoformat(value)
    if kind in ("INT64", "INTEGER"):
        return int(value)
    if kind in ("FLOAT64", "FLOAT"):
        return float(value)
    return value


def _field(name: str, duckdb_type: str) -> dict[str, str]:
    repeated = duckdb_type.endswith("[]")
    base = duckdb_type.removesuffix("[]")
    return {
        "name": name,
        "type": _BIGQUERY_TYPES.get(base, "STRING"),
        "mode": "REPEATED" if repeated else "NULLABLE",
    }


def _cell(value: Any) -> Any:
    """A value as getQueryResults encodes it (timestamps: int64 microseconds, as the client
    asks with formatOptions.useInt64Timestamp)."""
    if value is None:
        return None
    if isinstance(value, list):
        return [{"v": _cell(v)} for v in value]
    if isinstance(value, datetime):
        return str(round(value.timestamp() * 1_000_000))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class GoogleApis:
    """The fake services, one HTTP server; `requests` is everything they received."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.tables = BigQueryTables()
        self.objects: dict[tuple[str, str], bytes] = {}
        self.models: dict[str, dict[str, Any]] = {}
        self.deployments: dict[str, Deployment] = {}  # endpoint name → what serves it
        self.predictor_url: str | None = None  # where the deployed model's container listens
        self._ids = itertools.count(1)
        self._jobs: dict[str, tuple[list[dict], list[list]]] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.write = fakes.FakeBigQueryWrite(answer=self._append)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def metadata_host(self, account: str) -> str:
        """GCE_METADATA_HOST for a process running as `account`."""
        return f"{self.address}/as/{account}"

    @property
    def write_host(self) -> str:
        """Where the Storage Write API fake listens (warehouse.write_api_emulator_host)."""
        return self.write.host

    @contextlib.contextmanager
    def serving(self) -> Iterator[GoogleApis]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            with self.write.serving():
                yield self
        finally:
            self._server.shutdown()
            self._server.server_close()

    def received(self, api: str, method: str, suffix: str) -> list[Request]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.api == api and r.method == method and r.path.endswith(suffix)
            ]

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _next_id(self) -> str:
        return str(next(self._ids))

    # -- Vertex AI ----------------------------------------------------------------------------
    def vertex(self, method: str, parent: str, rest: str, query: dict[str, str], body: Any):
        if method == "GET" and rest.startswith("endpoints/"):
            return 200, self._endpoint(f"{parent}/{rest}")
        if method == "POST" and rest.endswith(":predict"):
            return self._predict(f"{parent}/{rest.removesuffix(':predict')}", body)
        if method == "GET" and rest == "models":
            return 200, {"models": []}  # a first deployment: no earlier version registered
        if method == "POST" and rest == "models:upload":
            name = f"{parent}/models/{self._next_id()}"
            # A custom container model supports dedicated resources (machine type, replicas).
            model = {
                **body.get("model", {}),
                "name": name,
                "versionId": "1",
                "supportedDeploymentResourcesTypes": ["DEDICATED_RESOURCES"],
            }
            self.models[name] = model
            return 200, _operation(
                parent, "UploadModelResponse", {"model": name, "modelVersionId": "1"}
            )
        if method == "GET" and rest.startswith("models/"):
            name = f"{parent}/{rest.split('@')[0]}"
            if name not in self.models:
                return 404, _error(404, f"model {name} not found")
            return 200, self.models[name]
        if method == "POST" and rest.endswith(":deployModel"):
            endpoint = f"{parent}/{rest.removesuffix(':deployModel')}"
            deployed = {**body.get("deployedModel", {}), "id": self._next_id()}
            known = self.models.get(deployed.get("model", "").split("@")[0])
            if known is None:
                return 400, _error(400, f"deployModel names unknown model {deployed.get('model')}")
            self.deployments[endpoint] = Deployment(known, deployed)
            return 200, _operation(parent, "DeployModelResponse", {"deployedModel": deployed})
        if method == "POST" and rest.endswith(":undeployModel"):
            return 200, _operation(parent, "UndeployModelResponse", {})
        if method == "GET" and rest == "pipelineJobs":
            return 200, {"pipelineJobs": []}  # none running
        if method == "POST" and rest == "pipelineJobs":
            job_id = query.get("pipelineJobId") or f"job-{self._next_id()}"
            job = {
                **body,
                "name": f"{parent}/pipelineJobs/{job_id}",
                "state": "PIPELINE_STATE_PENDING",
            }
            return 200, job
        if method == "GET" and rest.startswith("operations/"):
            return 200, {"name": f"{parent}/{rest}", "done": True}
        return 404, _error(404, f"the rehearsal's Vertex AI fake has no {method} {rest}")

    def _endpoint(self, name: str) -> dict[str, Any]:
        deployment = self.deployments.get(name)
        deployed = [deployment.deployed_model] if deployment else []
        return {
            "name": name,
            "displayName": name.rsplit("/", 1)[-1],
            "deployedModels": deployed,
            "trafficSplit": {d["id"]: 100 for d in deployed},
        }

    def _predict(self, endpoint: str, body: Any) -> tuple[int, Any]:
        deployment = self.deployments.get(endpoint)
        if deployment is None or self.predictor_url is None:
            return 400, _error(
                400, f"endpoint {endpoint} has no deployed model", "FAILED_PRECONDITION"
            )
        route = deployment.model.get("containerSpec", {}).get("predictRoute", "/predict")
        try:
            response = httpx.post(self.predictor_url + route, json=body, timeout=30)
        except httpx.HTTPError as err:
            return 503, _error(503, f"the deployed model does not answer: {err}", "UNAVAILABLE")
        if response.status_code != 200:
            return response.status_code, _error(response.status_code, response.text)
        return 200, {
            "predictions": response.json().get("predictions", []),
            "deployedModelId": deployment.deployed_model["id"],
            "model": deployment.model["name"],
            "modelVersionId": "1",
        }

    # -- BigQuery -----------------------------------------------------------------------------
    def _append(self, append: fakes.Append) -> Any:
        """One AppendRowsRequest to a table's default stream, recorded with its caller."""
        from google.cloud.bigquery_storage_v1 import types

        request = append.request
        token = append.token or ""
        caller = token.split(TOKEN_PREFIX, 1)[1] if TOKEN_PREFIX in token else None
        wanted = types.AppendRowsRequest.MissingValueInterpretation.DEFAULT_VALUE
        defaults = request.default_missing_value_interpretation == wanted
        rows = append.rows()
        body = {
            "rows": rows.num_rows,
            "columns": rows.schema.names,
            "missing_values": request.default_missing_value_interpretation.name,
        }
        self._record(
            Request("bigquery-write", "AppendRows", request.write_stream, {}, body, caller)
        )
        m = WRITE_STREAM.match(request.write_stream)
        if m is None or (key := (m.group(1), m.group(2), m.group(3))) not in self.tables.schemas:
            return fakes.refused(5, f"Not found: write stream {request.write_stream}")
        problem, bad = self.tables.append(key, rows, defaults)
        if problem:
            return fakes.refused(3, f"Input schema does not fit {'.'.join(key)}: {problem}")
        if bad:
            return fakes.row_errors(*bad, message="a REQUIRED field is NULL")
        return fakes.accepted()

    def bigquery(self, method: str, path: str, query: dict[str, str], body: Any):
        if method == "POST" and (m := _BQ_JOBS.match(path)):
            reference = body.get("jobReference") or {}
            job_id = reference.get("jobId") or f"job_{self._next_id()}"
            config = body.get("configuration", {}).get("query", {})
            try:
                self._jobs[job_id] = self.tables.query(
                    config.get("query", ""), config.get("queryParameters", [])
                )
            except (LookupError, duckdb.Error) as err:
                return 400, _error(400, str(err), "invalidQuery")
            return 200, self._job(m.group(1), job_id, reference.get("location"), body)
        if method == "GET" and (m := _BQ_JOB.match(path)):
            job_id = m.group(2)
            if job_id not in self._jobs:
                return 404, _error(404, f"Not found: Job {job_id}")
            if "/queries/" not in path:
                return 200, self._job(m.group(1), job_id, query.get("location"), {})
            schema, rows = self._jobs[job_id]
            return 200, {
                "kind": "bigquery#getQueryResultsResponse",
                "jobReference": {"projectId": m.group(1), "jobId": job_id},
                "jobComplete": True,
                "schema": {"fields": schema},
                "totalRows": str(len(rows)),
                "rows": [{"f": [{"v": _cell(v)} for v in row]} for row in rows],
            }
        return 404, _error(404, f"the rehearsal's BigQuery fake has no {method} {path}")

    @staticmethod
    def _job(project: str, job_id: str, location: str | None, body: dict[str, Any]):
        return {
            "kind": "bigquery#job",
            "id": f"{project}:{location}.{job_id}",
            "jobReference": {"projectId": project, "jobId": job_id, "location": location},
            "configuration": body.get("configuration", {"query": {}, "jobType": "QUERY"}),
            "status": {"state": "DONE"},
            "statistics": {"query": {"statementType": "SELECT"}},
        }

    # -- Cloud Storage ------------------------------------------------------------------------
    def storage(self, method: str, path: str, query: dict[str, str]):
        m = GCS_OBJECT.match(path)
        if method == "GET" and (found := re.fullmatch(r"/storage/v1/b/([^/]+)", path)):
            return 200, {"name": found.group(1), "projectNumber": PROJECT_NUMBER}
        if method != "GET" or m is None:
            return 404, _error(404, f"the rehearsal's Cloud Storage fake has no {method} {path}")
        bucket, name = m.group(1), urllib.parse.unquote(m.group(2))
        data = self.objects.get((bucket, name))
        if data is None:
            return 404, _error(404, f"No such object: {bucket}/{name}")
        if query.get("alt") == "media" or path.startswith("/download/"):
            return 200, data
        return 200, {"bucket": bucket, "name": name, "size": str(len(data)), "generation": "1"}


def _operation(parent: str, response_type: str, response: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": f"{parent}/operations/{abs(hash(json.dumps(response, sort_keys=True)))}",
        "done": True,
        "response": {
            "@type": f"type.googleapis.com/google.cloud.aiplatform.v1.{response_type}",
            **response,
        },
    }


def _error(code: int, message: str, status: str = "NOT_FOUND") -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}


def _handler(apis: GoogleApis) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: what matters is recorded in `apis.requests`."""

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def _serve(self, method: str) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else {}
            except json.JSONDecodeError:
                body = raw.decode(errors="replace")
            if url.path.startswith("/as/"):
                self._metadata(url.path, query)
                return
            auth = self.headers.get("authorization", "")
            caller = auth.split(TOKEN_PREFIX, 1)[1] if TOKEN_PREFIX in auth else None
            try:
                api, status, payload = self._route(method, url.path, query, body)
            except Exception as err:  # a fake's own failure: an answer, never a dropped request
                api, status, payload = "unknown", 500, _error(500, repr(err), "INTERNAL")
            apis._record(Request(api, method, url.path, query, body, caller))
            self._send(status, payload)

        @staticmethod
        def _route(method: str, path: str, query: dict[str, str], body: Any):
            if m := _VERTEX.match(path):
                return ("vertex", *apis.vertex(method, m.group(1), m.group(2), query, body))
            if path.startswith("/bigquery/"):
                return ("bigquery", *apis.bigquery(method, path, query, body))
            if m := re.fullmatch(r"/v3/projects/([^/]+)", path):
                project = {"name": f"projects/{PROJECT_NUMBER}", "projectId": m.group(1)}
                return ("resourcemanager", 200, {**project, "state": "ACTIVE"})
            if path.startswith(("/storage/", "/download/storage/")):
                return ("storage", *apis.storage(method, path, query))
            return ("unknown", 404, _error(404, f"no fake serves {method} {path}"))

        def _metadata(self, path: str, query: dict[str, str]) -> None:
            """The metadata server, for the process that runs as the account in the path."""
            _, _, account, *rest = path.split("/", 3)
            # The SDKs ask for "default" first, then by the email it turned out to be.
            item = (rest[0] if rest else "").replace(f"/{account}/", "/default/")
            project = account.split("@", 1)[-1].split(".", 1)[0]
            headers = {"Metadata-Flavor": "Google"}
            answers: dict[str, Any] = {
                "": "ok",
                "computeMetadata/v1/project/project-id": project,
                "computeMetadata/v1/instance/service-accounts/default/email": account,
                "computeMetadata/v1/instance/service-accounts/default/": {
                    "email": account,
                    "aliases": ["default"],
                    "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
                },
                "computeMetadata/v1/instance/service-accounts/default/token": {
                    "access_token": TOKEN_PREFIX + account,
                    "expires_in": 3600,
                    "token_type": "Bearer",
                },
                "computeMetadata/v1/universe/universe-domain": "googleapis.com",
            }
            if item not in answers:
                self._send(404, "not found", headers)
            else:
                self._send(200, answers[item], headers)

        def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            if isinstance(payload, bytes):
                data, kind = payload, "application/octet-stream"
            elif isinstance(payload, str):
                data, kind = payload.encode(), "text/plain"
            else:
                data, kind = json.dumps(payload).encode(), "application/json"
            self.send_response(status)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler
