"""The store owner's query endpoint: named queries over HTTP on 127.0.0.1.

An embedded chDB store is held by one process, the sink; `tokenpools report`
and anything else that wants numbers asks that process. The endpoint serves
named queries only (`/query/<name>?param=value`), never SQL text, and binds to
loopback. Its address is written next to the store (`ENDPOINT_FILE`) so a
reader finds it; a stale file after a crash is harmless because readers
check `/healthz` before trusting it.

Loopback is not a boundary on a shared host, so the endpoint also takes a
bearer token (`TOKENPOOLS_SINK_TOKEN`): when one is set, every route but
`/healthz` wants `Authorization: Bearer <token>`, compared in constant time,
and the readers in this package send it from the same variable.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from clickhouse_connect.driver.client import Client
from prometheus_client import CollectorRegistry, generate_latest

from connectors.clickhouse.queries import NamedQuery, QueryError, load_queries, run_query
from connectors.clickhouse.store import Target

ENDPOINT_FILE = "tokenpools-sink.json"
TOKEN_ENV = "TOKENPOOLS_SINK_TOKEN"
_OPEN_PATHS = frozenset({"/healthz"})  # probes and readers locating the store need no token


def endpoint_token(environ: Mapping[str, str] | None = None) -> str | None:
    """The query endpoint's bearer token from `TOKENPOOLS_SINK_TOKEN` (None: no token)."""
    env = os.environ if environ is None else environ
    return env.get(TOKEN_ENV) or None


def auth_headers(token: str | None) -> dict[str, str]:
    """What a reader sends to an endpoint that wants `token`."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def _bearer_guard(token: str) -> Any:
    """Middleware: 401 unless the request carries `Bearer <token>` (constant-time compare)."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path not in _OPEN_PATHS:
            given = request.headers.get("Authorization", "").encode("utf-8", "replace")
            if not hmac.compare_digest(given, expected):
                body = {"error": {"message": "a valid bearer token is required", "type":
                        "invalid_request_error", "code": "invalid_token"}}  # fmt: skip
                return _json(body, 401)
        response: web.StreamResponse = await handler(request)
        return response

    return guard


class QueryService:
    """Runs named queries on one client, one at a time, off the event loop."""

    def __init__(self, client: Client, queries: Mapping[str, NamedQuery] | None = None) -> None:
        self._client = client
        self._lock = threading.Lock()
        self.queries = dict(queries) if queries is not None else load_queries()

    def run(self, name: str, values: Mapping[str, Any]) -> dict[str, Any]:
        query = self.queries.get(name)
        if query is None:
            raise QueryError(f"no query named {name!r}")
        with self._lock:
            return run_query(self._client, query, values).to_json()


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def build_app(
    service: QueryService,
    target: Target,
    registry: CollectorRegistry | None = None,
    token: str | None = None,
) -> web.Application:
    """The aiohttp application: /healthz, /queries, /query/{name}, /metrics.

    With `token`, every route but /healthz wants it as a bearer token.
    """

    async def healthz(_: web.Request) -> web.Response:
        store = target.store_path
        return _json(
            {
                "status": "ok",
                "pid": os.getpid(),
                "database": target.database,
                "store": str(store) if store else None,
            }
        )

    async def list_queries(_: web.Request) -> web.Response:
        return _json(
            [
                {
                    "name": q.name,
                    "description": q.description,
                    "parameters": [{"name": p.name, "type": p.type} for p in q.parameters],
                }
                for q in service.queries.values()
            ]
        )

    async def query(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in service.queries:
            return _json({"error": {"message": f"no query named {name!r}"}}, 404)
        values = dict(request.query)
        try:
            result = await asyncio.to_thread(service.run, name, values)
        except QueryError as exc:
            return _json({"error": {"message": str(exc)}}, 400)
        except Exception as exc:  # a ClickHouse error: report it, keep serving
            return _json({"error": {"message": f"query {name} failed: {exc}"}}, 500)
        return _json(result)

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry) if registry is not None else b""
        return web.Response(body=body, content_type="text/plain", charset="utf-8")

    app = web.Application(middlewares=[_bearer_guard(token)] if token else [])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/queries", list_queries)
    app.router.add_get("/query/{name}", query)
    app.router.add_get("/metrics", metrics)
    return app


async def serve(app: web.Application, port: int = 0) -> tuple[web.AppRunner, str]:
    """Start serving on 127.0.0.1:`port` (0 = any free port); returns the runner and base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]  # (host, port, ...) of the socket bound: port 0 picks one
    return runner, f"http://127.0.0.1:{bound}"


def publish(store: Path, url: str) -> Path:
    """Write the endpoint's address next to the store it serves."""
    path = store / ENDPOINT_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps({"url": url, "pid": os.getpid()}))
    tmp.replace(path)
    return path


def unpublish(store: Path) -> None:
    (store / ENDPOINT_FILE).unlink(missing_ok=True)


def published_url(store: Path) -> str | None:
    """The address a running sink published for `store`, if any (may be stale)."""
    try:
        url = orjson.loads((store / ENDPOINT_FILE).read_bytes())["url"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return url if isinstance(url, str) else None
