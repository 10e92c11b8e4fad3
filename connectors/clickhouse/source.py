"""Where a reader gets named-query results: the store owner's endpoint, or the store itself.

With an embedded store, the sink process holds it and answers over HTTP;
when no sink runs, the reader opens the store directly. With a ClickHouse
server, the reader simply connects.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

import httpx

from connectors.clickhouse.endpoint import (
    QueryService,
    auth_headers,
    endpoint_token,
    published_url,
)
from connectors.clickhouse.queries import QueryError, QueryResult, load_queries
from connectors.clickhouse.store import Target, connect


class QuerySource(Protocol):
    description: str

    def run(self, name: str, values: Mapping[str, Any]) -> QueryResult: ...


class DirectSource:
    """Runs named queries on a client of its own."""

    def __init__(self, service: QueryService, description: str) -> None:
        self._service = service
        self.description = description

    def run(self, name: str, values: Mapping[str, Any]) -> QueryResult:
        return QueryResult.from_json(self._service.run(name, values))


class EndpointSource:
    """Asks the process that owns the store."""

    def __init__(self, http: httpx.Client, description: str) -> None:
        self._http = http
        self.description = description

    def run(self, name: str, values: Mapping[str, Any]) -> QueryResult:
        params = {k: str(v) for k, v in values.items() if v is not None}
        response = self._http.get(f"/query/{name}", params=params)
        if response.status_code in (400, 404):
            raise QueryError(response.json()["error"]["message"])
        response.raise_for_status()
        return QueryResult.from_json(response.json())


def live_endpoint(target: Target, timeout_s: float = 2.0) -> str | None:
    """The URL of the sink serving `target`'s embedded store, if one answers."""
    store = target.store_path
    url = published_url(store) if store is not None else None
    if url is None:
        return None
    try:
        health = httpx.get(f"{url}/healthz", timeout=timeout_s).json()
    except (httpx.HTTPError, ValueError):
        return None
    same = health.get("store") == str(store) and health.get("database") == target.database
    return url if same else None


@contextmanager
def open_source(target: Target, timeout_s: float = 120.0) -> Iterator[QuerySource]:
    """The endpoint of the running sink if there is one, else a direct connection."""
    url = live_endpoint(target) if target.is_embedded else None
    if url is not None:
        headers = auth_headers(endpoint_token())
        with httpx.Client(base_url=url, timeout=timeout_s, headers=headers) as http:
            yield EndpointSource(http, f"sink endpoint {url} ({target.describe()})")
        return
    client = connect(target, create_database=False)
    try:
        yield DirectSource(QueryService(client, load_queries()), target.describe())
    finally:
        client.close()
