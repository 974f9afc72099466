"""Asking the serving endpoint for predictions: the local predictor over HTTP, or Vertex AI."""

from __future__ import annotations

from typing import Any, Protocol

import httpx

from app.config import Settings


class Endpoint(Protocol):
    def predict(self, observations: list[list[float]]) -> list[dict[str, Any]]: ...


class HttpEndpoint:
    def __init__(self, url: str, timeout: float = 30):
        self.url, self.timeout = url, timeout

    def predict(self, observations: list[list[float]]) -> list[dict[str, Any]]:
        body = {"instances": [{"observation": o} for o in observations]}
        response = httpx.post(self.url, json=body, timeout=self.timeout)
        response.raise_for_status()
        return list(response.json()["predictions"])


class VertexEndpoint:
    """Vertex hands predictions back as protobuf Values, in which every number is a double:
    the integer fields are restored (an action of 3.0 cannot index anything).
    Proved by tests/test_rehearse.py::test_vertex_endpoint_restores_integer_fields."""

    INTEGER_FIELDS = ("action", "movie_id", "instance_index")

    def __init__(self, endpoint_name: str, project: str | None, region: str):
        from google.cloud import aiplatform

        self.endpoint = aiplatform.Endpoint(endpoint_name, project=project, location=region)

    def predict(self, observations: list[list[float]]) -> list[dict[str, Any]]:
        response = self.endpoint.predict(instances=[{"observation": o} for o in observations])
        return [
            {k: int(v) if k in self.INTEGER_FIELDS else v for k, v in dict(p).items()}
            for p in response.predictions
        ]


def endpoint_from(settings: Settings) -> Endpoint:
    loop = settings.loop
    if loop.vertex_endpoint:
        return VertexEndpoint(
            loop.vertex_endpoint, settings.cloud.project_id, settings.cloud.region
        )
    if loop.endpoint_url:
        return HttpEndpoint(loop.endpoint_url)
    raise ValueError("set loop.endpoint_url (local predictor) or loop.vertex_endpoint (Vertex AI)")
