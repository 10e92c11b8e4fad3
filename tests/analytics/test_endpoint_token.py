"""Issue 11, item 9: the sink's query endpoint takes a bearer token (`TOKENPOOLS_SINK_TOKEN`)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from clickhouse_connect.driver.client import Client

from connectors.clickhouse.endpoint import (
    QueryService,
    build_app,
    endpoint_token,
    publish,
    serve,
    unpublish,
)
from connectors.clickhouse.source import open_source
from connectors.clickhouse.store import Target
from tests.analytics.conftest import store_dir
from tests.helpers import analytics_dataset as ds

TOKEN = "s3cret-sink-token"
RANGE = {name: str(t) for name, t in ds.SPAN.items()}


async def test_with_a_token_every_route_but_healthz_wants_it(
    loaded: Client, store_target: Target
) -> None:
    server, url = await serve(build_app(QueryService(loaded), store_target, token=TOKEN))
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            assert (await http.get("/healthz")).status_code == 200
            for path in ("/queries", "/query/admission", "/metrics"):
                for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                    refused = await http.get(path, headers=headers, params=RANGE)
                    assert refused.status_code == 401, (path, headers)
                    assert refused.json()["error"]["code"] == "invalid_token"
                    assert TOKEN not in refused.text
            good = {"Authorization": f"Bearer {TOKEN}"}
            assert (await http.get("/queries", headers=good)).status_code == 200
            got = await http.get("/query/chargeback", headers=good, params=RANGE)
            assert got.status_code == 200 and got.json()["rows"]
    finally:
        await server.cleanup()


def test_the_token_comes_from_the_environment() -> None:
    assert endpoint_token({"TOKENPOOLS_SINK_TOKEN": TOKEN}) == TOKEN
    assert endpoint_token({"TOKENPOOLS_SINK_TOKEN": ""}) is None
    assert endpoint_token({}) is None


async def test_readers_send_the_token_from_the_same_variable(
    loaded: Client, store_target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, url = await serve(build_app(QueryService(loaded), store_target, token=TOKEN))
    store = store_dir(store_target)
    publish(store, url)
    try:
        monkeypatch.setenv("TOKENPOOLS_SINK_TOKEN", TOKEN)

        def read() -> tuple[str, int]:  # a blocking reader, off the loop that serves
            with open_source(store_target) as source:
                return source.description, len(source.run("chargeback", ds.SPAN).rows)

        description, rows = await asyncio.to_thread(read)
        assert description.startswith("sink endpoint") and rows > 0
    finally:
        unpublish(store)
        await server.cleanup()
