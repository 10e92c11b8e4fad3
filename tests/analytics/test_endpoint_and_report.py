"""Readers reach the numbers through the store owner's endpoint, or the store when none runs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from clickhouse_connect.driver.client import Client
from typer.testing import CliRunner

from connectors.clickhouse.endpoint import (
    ENDPOINT_FILE,
    QueryService,
    build_app,
    publish,
    serve,
    unpublish,
)
from connectors.clickhouse.queries import load_queries, run_query
from connectors.clickhouse.store import Target
from tests.analytics.conftest import count, store_dir
from tests.helpers import analytics_dataset as ds
from tokenpools_cli.main import app

RANGE = {name: str(t) for name, t in ds.SPAN.items()}
runner = CliRunner()


def flat(text: str) -> str:
    """Rich wraps long lines at the terminal width; compare words, not layout."""
    return " ".join(text.split())


def report(target: Target, *extra: str):
    args = [
        "report",
        "--store",
        str(store_dir(target)),
        "--from",
        RANGE["start"],
        "--to",
        datetime.fromtimestamp(float(RANGE["end"]), UTC).isoformat(),
        *extra,
    ]
    return runner.invoke(app, args)


async def test_endpoint_serves_named_queries_like_the_store(loaded: Client, store_target) -> None:
    server, url = await serve(build_app(QueryService(loaded), store_target))
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            listed = (await http.get("/queries")).json()
            assert {q["name"] for q in listed} == set(load_queries())
            got = (await http.get("/query/admission", params={**RANGE, "window_s": 300})).json()
            direct = run_query(
                loaded,
                load_queries()["admission"],
                {**ds.SPAN, "window_s": 300},
            )
            assert got["columns"] == direct.columns
            assert [r[3:6] for r in got["rows"]] == [r[3:6] for r in direct.rows]
            injected = await http.get(
                "/query/chargeback", params={**RANGE, "entitlement": "x' OR 1=1 --"}
            )
            assert injected.status_code == 200 and injected.json()["rows"] == []
            assert (await http.get("/query/requests", params=RANGE)).status_code == 404
            bad = await http.get("/query/admission", params={**RANGE, "window_s": "1 OR 1"})
            assert bad.status_code == 400 and "window_s" in bad.json()["error"]["message"]
            health = (await http.get("/healthz")).json()
            assert health["store"] == str(store_target.store_path)
    finally:
        await server.cleanup()
    assert count(loaded) > 0


def test_report_prints_every_query_and_writes_figures(
    loaded: Client, store_target: Target, tmp_path: Path
) -> None:
    result = report(store_target, "--window", "600")
    assert result.exit_code == 0, result.output
    for name in load_queries():
        assert name in result.output
    some = ["-q", "latency", "-q", "chargeback", "-q", "slo_attainment"]
    result = report(store_target, *some, "--plot", str(tmp_path / "figs"))
    assert result.exit_code == 0, result.output
    pngs = sorted(p.name for p in (tmp_path / "figs").glob("*.png"))
    assert "latency.png" in pngs and "chargeback.png" in pngs and "slo_attainment.png" in pngs
    assert all((tmp_path / "figs" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_report_with_an_injection_attempt_finds_nothing_and_drops_nothing(
    loaded: Client, store_target: Target
) -> None:
    before = count(loaded)
    result = report(
        store_target, "--entitlement", "x' OR 1=1 --", "-q", "admission", "-q", "latency"
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("(no rows in this range)") == 2
    assert count(loaded) == before


async def test_report_asks_the_running_sink_when_it_serves_the_store(
    loaded: Client, store_target: Target
) -> None:
    server, url = await serve(build_app(QueryService(loaded), store_target))
    publish(store_dir(store_target), url)
    try:
        result = await asyncio.to_thread(report, store_target, "-q", "chargeback")
    finally:
        unpublish(store_dir(store_target))
        await server.cleanup()
    assert result.exit_code == 0, result.output
    assert f"sink endpoint {url}" in flat(result.output)
    assert "chargeback" in result.output and "(no rows in this range)" not in result.output


def test_a_stale_endpoint_file_falls_back_to_the_store(
    loaded: Client, store_target: Target
) -> None:
    (store_dir(store_target) / ENDPOINT_FILE).write_text('{"url": "http://127.0.0.1:9", "pid": 1}')
    try:
        result = report(store_target, "-q", "scaling")
    finally:
        unpublish(store_dir(store_target))
    assert result.exit_code == 0, result.output
    assert "embedded chDB" in flat(result.output) and "sink endpoint" not in flat(result.output)


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["-q", "no_such_query"], 2),
        (["--window", "0"], 2),
        (["--from", "not a time"], 2),
    ],
)
def test_report_usage_errors_exit_2(store_target: Target, args: list[str], code: int) -> None:
    result = runner.invoke(app, ["report", "--store", str(store_dir(store_target)), *args])
    assert result.exit_code == code, result.output


@pytest.mark.parametrize("where", ["store", "url"])
def test_report_without_a_readable_store_fails_with_1(tmp_path: Path, where: str) -> None:
    flag = (
        ["--store", str(tmp_path / "none")] if where == "store" else ["--url", "http://127.0.0.1:9"]
    )
    result = runner.invoke(app, ["report", *flag, "-q", "scaling"])
    assert result.exit_code == 1, result.output
    assert not (tmp_path / "none").exists()  # reading never creates a store
