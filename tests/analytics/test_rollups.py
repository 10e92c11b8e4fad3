"""The queries served from the per-minute rollup answer exactly what the raw table answers.

The store here is filled after the migration, so the rollup is the materialized view's; the
backfill of rows stored before it is in `test_rollup_backfill.py`.
"""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.client import Client

from connectors.clickhouse.writer import TableWriter
from tests.analytics.conftest import LOADED_TOPICS, write_directly
from tests.analytics.rollup_cases import RAW, SERVED, answers, assert_every_case_same, assert_same
from tests.helpers import analytics_dataset as ds
from tokenpools.schemas import Phase, RequestEvent


def test_every_rollup_served_query_has_its_raw_reference() -> None:
    assert set(RAW) == {"admission", "latency", "slo_attainment", "chargeback"}
    for name, raw in RAW.items():
        assert "requests_minute" in SERVED[name].sql and "requests FINAL" in SERVED[name].sql
        assert "requests_minute" not in raw.sql
        assert {p.name for p in SERVED[name].parameters} == {p.name for p in raw.parameters}


@pytest.mark.parametrize("name", sorted(RAW))
def test_rollup_answers_equal_the_raw_table(loaded: Client, name: str) -> None:
    assert_every_case_same(loaded, name)


def test_whole_minutes_are_read_from_the_rollup_and_the_rest_from_the_raw_table(
    loaded: Client,
) -> None:
    """A row added to the rollup alone shows in whole-minute windows only: the routing. (It adds
    no `rows`, so the rollup still holds as many rows as the raw table and is used.)"""
    minute = ds.T0 + 600  # a whole minute inside the span
    values = {"start": ds.T0, "end": ds.T0 + 1200, "entitlement": "spot", "window_s": 60}
    before = answers(loaded, "admission", values)[0].rows
    loaded.command(
        "INSERT INTO requests_minute (minute, pool, entitlement, rows, rejected) "
        "VALUES (toDateTime({m:Float64}, 'UTC'), {p:String}, 'spot', 0, 1000)",
        parameters={"m": minute, "p": ds.POOL},
    )
    try:
        served, raw = answers(loaded, "admission", values)
        changed = [(a, b) for a, b in zip(served.rows, raw.rows, strict=True) if a != b]
        assert [a[0].timestamp() for a, _ in changed] == [minute]
        rejected = served.columns.index("rejected")
        assert changed[0][0][rejected] == changed[0][1][rejected] + 1000
        assert_same(loaded, "admission", {**values, "window_s": 90})  # not whole minutes: raw
        assert_same(loaded, "admission", {**values, "start": minute + 0.5})  # minute cut: raw
    finally:
        loaded.command(
            "ALTER TABLE requests_minute DELETE WHERE rows = 0 SETTINGS mutations_sync = 1"
        )
    assert answers(loaded, "admission", values)[0].rows == before


def test_completions_without_timings_give_the_raw_quantiles(loaded: Client) -> None:
    """quantilesExactIf over no values is 0, not NULL; the rollup's window of such rows too."""
    at = ds.T0 + ds.SPAN_S + 3600 + 30  # a minute of its own, after the event set
    bare = RequestEvent(
        id="no-timings",
        time=at,
        pool=ds.POOL,
        entitlement="spot",
        phase=Phase.COMPLETED,
        prompt_tokens=10,
        completion_tokens=5,
    )
    only_bare = ds.Dataset(config=[], requests=[bare])
    write_directly(TableWriter(loaded), only_bare, LOADED_TOPICS, offset0=10**6)
    for window_s in (60, 90):
        values = {"start": at - 30, "end": at + 60, "window_s": window_s}
        assert_same(loaded, "latency", values)
        (row,) = answers(loaded, "latency", values)[0].rows
        assert row[3:] == [1, 0.0, 0.0, 0.0, 0.0]


def shifted(data: ds.Dataset, by_s: float, tag: str) -> ds.Dataset:
    """The event set's requests moved `by_s` later, under new ids (their own minutes)."""
    moved = [r.model_copy(update={"time": r.time + by_s, "id": r.id + tag}) for r in data.requests]
    return ds.Dataset(config=[], requests=moved)


def rollup_and_raw_rows(client: Client, start: float, end: float) -> tuple[int, int]:
    rollup = client.query(
        "SELECT sum(rows) FROM requests_minute WHERE minute >= toDateTime({s:Float64}, 'UTC') "
        "AND minute < toDateTime({e:Float64}, 'UTC')",
        parameters={"s": start, "e": end},
    ).result_rows[0][0]
    raw = client.query(
        "SELECT count() FROM requests WHERE time >= toDateTime64({s:Float64}, 3, 'UTC') "
        "AND time < toDateTime64({e:Float64}, 3, 'UTC')",
        parameters={"s": start, "e": end},
    ).result_rows[0][0]
    return rollup, raw


@pytest.mark.parametrize(("shift_h", "case"), [(4, "view-missed"), (8, "merged-duplicates")])
def test_a_rollup_that_disagrees_with_the_raw_rows_is_not_used(
    loaded: Client, dataset: ds.Dataset, shift_h: int, case: str
) -> None:
    """A crash between the raw part and the view's (the view missed a batch), or duplicates the
    raw table has merged away (the view counted both): the range is read from the raw table."""
    start, end = ds.T0 + shift_h * 3600, ds.T0 + shift_h * 3600 + ds.SPAN_S + 60
    batch = shifted(dataset, shift_h * 3600, case)
    writer = TableWriter(loaded)
    if case == "view-missed":
        loaded.command("DETACH TABLE requests_minute_feed_mv")
        try:
            write_directly(writer, batch, LOADED_TOPICS, offset0=2 * 10**6)
        finally:
            loaded.command("ATTACH TABLE requests_minute_feed_mv")
        assert rollup_and_raw_rows(loaded, start, end) == (0, len(batch.requests))
    else:
        write_directly(writer, batch, LOADED_TOPICS, offset0=3 * 10**6)
        write_directly(writer, batch, LOADED_TOPICS, offset0=4 * 10**6)
        loaded.command("OPTIMIZE TABLE requests FINAL")
        n = len(batch.requests)
        assert rollup_and_raw_rows(loaded, start, end) == (2 * n, n)
    for name in sorted(RAW):
        for window_s in (60, 300):
            assert_same(loaded, name, {"start": start, "end": end, "window_s": window_s})
