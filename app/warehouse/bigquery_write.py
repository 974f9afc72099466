"""Rows into BigQuery through the Storage Write API's default stream, as Arrow record batches.

One AppendRows call per table per write: the rows go as one Arrow record batch (split only
where a request would pass the API's 10 MB limit), their writer schema generated from
app/schemas.py like every other schema, the table's server defaults (`ingested_at`) left to
BigQuery. The default stream is at-least-once
(https://cloud.google.com/bigquery/docs/write-api-streaming): an append retried after a
failure may store its rows twice, which the ledger's reads deduplicate by key
(docs/reliability.md). A response with row errors or an error status appends nothing of
its request and raises RowsRejected. Asserted on the wire by a real gRPC server
(tests/test_bigquery_write.py).
"""

from __future__ import annotations

from typing import Any

from app.schemas import REPEATED, TableSchema, arrow_schema

DEFAULT_STREAM = "_default"
TIMEOUT_S = 60.0  # the client's own default for AppendRows is a day
MAX_REQUEST_BYTES = 8_000_000  # under AppendRows' 10 MB per request, with room for framing


class RowsRejected(RuntimeError):
    """BigQuery refused an append (row errors or an error status): none of its rows stored."""


def stream_name(project: str, dataset: str, table: TableSchema) -> str:
    return f"projects/{project}/datasets/{dataset}/tables/{table.name}/streams/{DEFAULT_STREAM}"


def writer_columns(table: TableSchema) -> list[str]:
    """The columns a writer sends: all but those BigQuery fills in (a server default)."""
    return [c.name for c in table.columns if c.default is None]


def writer_schema(table: TableSchema):
    return arrow_schema(table, writer_columns(table))


def client(emulator_host: str | None = None) -> Any:
    """The BigQueryWriteClient: Google's endpoint, or (warehouse.write_api_emulator_host) a
    stand-in on this machine, reached over gRPC's local-connection credentials — no TLS, but
    the token of the process's own credentials still rides on every call, as it does to
    Google, so `make rehearse` sees who wrote."""
    from google.cloud.bigquery_storage_v1 import BigQueryWriteClient

    if not emulator_host:
        return BigQueryWriteClient()
    import grpc
    from google.cloud.bigquery_storage_v1.services.big_query_write.transports import (
        BigQueryWriteGrpcTransport,
    )

    local = grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
    transport = BigQueryWriteGrpcTransport(host=emulator_host, ssl_channel_credentials=local)
    return BigQueryWriteClient(transport=transport)


def requests(stream: str, table: TableSchema, columns: dict[str, list[Any]]) -> list[Any]:
    """The AppendRowsRequests for `columns` (a LogBatch's, or any record's fields by name)."""
    import pyarrow as pa
    from google.cloud.bigquery_storage_v1 import types

    schema = writer_schema(table)
    repeated = {c.name for c in table.columns if c.mode == REPEATED}
    # A REPEATED column holds no NULL in BigQuery: an absent list is the empty one.
    data = {
        name: [[] if v is None else v for v in columns[name]] if name in repeated else columns[name]
        for name in schema.names
    }
    batch = pa.RecordBatch.from_pydict(data, schema=schema)
    serialized_schema = schema.serialize().to_pybytes()
    pieces = max(1, -(-batch.nbytes // MAX_REQUEST_BYTES))
    step = max(1, -(-batch.num_rows // pieces))
    return [
        types.AppendRowsRequest(
            write_stream=stream,
            arrow_rows=types.AppendRowsRequest.ArrowData(
                writer_schema=types.ArrowSchema(serialized_schema=serialized_schema),
                rows=types.ArrowRecordBatch(
                    serialized_record_batch=piece.serialize().to_pybytes(),
                    row_count=piece.num_rows,
                ),
            ),
            # Columns left out (ingested_at) take the table's default, not NULL.
            default_missing_value_interpretation=(
                types.AppendRowsRequest.MissingValueInterpretation.DEFAULT_VALUE
            ),
        )
        for piece in (batch.slice(start, step) for start in range(0, batch.num_rows, step))
    ]


def append(write_client: Any, stream: str, table: TableSchema, columns: dict[str, list[Any]]):
    """Appends the rows on one AppendRows stream and checks every response. Not retried
    here: a failure raises (RowsRejected, or the API's error), and the Logger's message is
    delivered again."""
    sent = requests(stream, table, columns)
    if not sent:
        return
    responses = write_client.append_rows(iter(sent), retry=None, timeout=TIMEOUT_S)
    answered = 0
    for response in responses:
        answered += 1
        if response.row_errors:
            first = response.row_errors[0]
            raise RowsRejected(
                f"BigQuery rejected {len(response.row_errors)} rows of an append to "
                f"{table.name} (row {first.index}: {first.message}); none of them is stored"
            )
        if response.error.code:
            raise RowsRejected(
                f"BigQuery refused an append to {table.name} (status {response.error.code}: "
                f"{response.error.message})"
            )
    if answered < len(sent):
        raise RowsRejected(
            f"BigQuery answered {answered} of {len(sent)} appends to {table.name}; "
            "the rest are not known to be stored"
        )
