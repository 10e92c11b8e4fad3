"""Served (rollup) and raw (reference) answers of the named queries, and the cases compared.

Each named query that reads the per-minute rollup `requests_minute` has its reference in
`sql/queries/raw/`: the same query over `requests FINAL`. The cases cover ranges on and off
minute boundaries (at either end, both, inside one minute, past the data), windows of whole
minutes (from the rollup) and not (from the raw table), and the pool/entitlement filters.
"""

from __future__ import annotations

from collections.abc import Iterator

from clickhouse_connect.driver.client import Client

from connectors.clickhouse.queries import QueryResult, load_queries, run_query
from connectors.clickhouse.sql_files import sql_root
from tests.helpers import analytics_dataset as ds

SERVED = load_queries()
RAW = load_queries(sql_root() / "queries" / "raw")
ROLLUP_VERSION = "0009"

RANGES = [  # (start, end) in seconds after T0
    (0, ds.SPAN_S + 60),
    (12.345, ds.SPAN_S + 60),
    (0, 3000.5),
    (59.999, 3061.001),
    (600.25, 600.75),
    (ds.SPAN_S + 120, ds.SPAN_S + 600),
]
WINDOWS = [60, 300, 3600, 90, 1]
FILTERS = [{}, {"entitlement": "spot"}, {"pool": ds.POOL, "entitlement": "guaranteed-a"}]


def answers(client: Client, name: str, values: dict) -> tuple[QueryResult, QueryResult]:
    """(served, raw) results of query `name` for `values`."""
    served, raw = SERVED[name], RAW[name]
    return (
        run_query(client, served, served.declared_values(values)),
        run_query(client, raw, raw.declared_values(values)),
    )


def assert_same(client: Client, name: str, values: dict) -> None:
    """Same columns, same ClickHouse types, same rows in the same order, value for value."""
    served, raw = answers(client, name, values)
    assert (served.columns, served.types) == (raw.columns, raw.types), values
    assert served.rows == raw.rows, values


def cases() -> Iterator[dict]:
    for start, end in RANGES:
        for window_s in WINDOWS:
            for filters in FILTERS:
                yield {"start": ds.T0 + start, "end": ds.T0 + end, "window_s": window_s, **filters}


def assert_every_case_same(client: Client, name: str) -> None:
    """Every case the same, and the full span not empty (the comparison is not vacuous)."""
    checked = 0
    for values in cases():
        assert_same(client, name, values)
        checked += 1
    assert checked == len(RANGES) * len(WINDOWS) * len(FILTERS)
    full = {**ds.SPAN, "window_s": 60}
    assert run_query(client, SERVED[name], SERVED[name].declared_values(full)).rows
