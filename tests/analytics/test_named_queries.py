"""The named queries return exactly the numbers of a known event set, and nothing else."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from connectors.clickhouse.queries import (
    NamedQuery,
    QueryError,
    QueryResult,
    load_queries,
    run_query,
)
from tests.analytics.conftest import count
from tests.helpers import analytics_dataset as ds

QUERIES = load_queries()


def run(client: Client, name: str, **values) -> QueryResult:
    values = {**ds.SPAN, **values}
    return run_query(client, QUERIES[name], QUERIES[name].declared_values(values))


def by(result: QueryResult, *keys: str) -> dict[tuple, dict]:
    out = {}
    for row in result.rows:
        record = dict(zip(result.columns, row, strict=True))
        key = tuple(
            int(record[k].timestamp()) if isinstance(record[k], datetime) else record[k]
            for k in keys
        )
        out[key] = record
    return out


def test_every_named_query_declares_typed_parameters_and_a_description() -> None:
    assert set(QUERIES) >= {
        "latency",
        "admission",
        "engine_queue",
        "slot_utilization",
        "debt_priority",
        "chargeback",
        "slo_attainment",
    }
    for query in QUERIES.values():
        assert query.description
        names = {p.name for p in query.parameters}
        assert {"start", "end"} <= names
        assert "%" not in query.sql and ".format" not in query.sql


@pytest.mark.parametrize("window_s", [60, 300])
def test_admission_counts_per_entitlement_per_window_are_exact(
    loaded: Client, dataset: ds.Dataset, window_s: int
) -> None:
    got = by(run(loaded, "admission", window_s=window_s), "window_start", "entitlement")
    want = ds.expected_admission(dataset, window_s)
    assert {k: (r["admitted"], r["rejected"]) for k, r in got.items()} == want
    for (_, _), r in got.items():
        assert r["denial_ratio"] == pytest.approx(r["rejected"] / r["arrivals"])


def test_latency_and_ttft_quantiles_per_window_are_exact(
    loaded: Client, dataset: ds.Dataset
) -> None:
    got = by(run(loaded, "latency", window_s=600), "window_start", "entitlement")
    want = ds.expected_latency(dataset, 600)
    assert set(got) == set(want)
    for key, (n, lat50, lat99, ttft50, ttft99) in want.items():
        r = got[key]
        assert (r["completed"], r["latency_p50_ms"], r["latency_p99_ms"]) == (n, lat50, lat99)
        assert (r["ttft_p50_ms"], r["ttft_p99_ms"]) == (ttft50, ttft99)


def test_chargeback_sums_tokens_per_tenant_per_hour(loaded: Client, dataset: ds.Dataset) -> None:
    got = by(run(loaded, "chargeback"), "window_start", "entitlement")
    want = ds.expected_chargeback(dataset)
    assert {
        k: (r["requests"], r["prompt_tokens"], r["completion_tokens"]) for k, r in got.items()
    } == want
    assert all(
        r["total_tokens"] == r["prompt_tokens"] + r["completion_tokens"] for r in got.values()
    )


def test_slo_attainment_uses_the_configured_targets(loaded: Client, dataset: ds.Dataset) -> None:
    got = by(run(loaded, "slo_attainment"), "entitlement")
    for name, (decided, in_time, with_ttft, met) in ds.expected_slo(dataset).items():
        r = got[(name,)]
        assert (r["decided"], r["with_ttft"]) == (decided, with_ttft)
        if in_time is None:  # spot has no SLO: no attainment, rather than a made-up one
            assert r["admission_attainment"] is None and r["ttft_attainment"] is None
        else:
            assert r["admitted_in_time"] == in_time and r["ttft_met"] == met
            assert r["admission_attainment"] == pytest.approx(in_time / decided)
            assert r["ttft_attainment"] == pytest.approx(met / with_ttft)


def test_debt_priority_and_slots_follow_the_pool_state(loaded: Client, dataset: ds.Dataset) -> None:
    want = ds.expected_debt(dataset, 300)
    debt = by(run(loaded, "debt_priority", window_s=300), "window_start", "entitlement")
    slots = by(run(loaded, "slot_utilization", window_s=300), "window_start", "entitlement")
    assert set(debt) == set(want) == set(slots)
    for key, (debt_max, served_avg) in want.items():
        assert debt[key]["debt_max"] == pytest.approx(debt_max)
        assert slots[key]["slots_in_use"] == pytest.approx(served_avg)
        assert slots[key]["pool_share"] == pytest.approx(served_avg / 32)


def test_engine_queue_depth_per_backend(loaded: Client, dataset: ds.Dataset) -> None:
    got = by(run(loaded, "engine_queue", window_s=120), "window_start", "backend")
    want = ds.expected_waiting_max(dataset, 120)
    assert {k: r["waiting_max"] for k, r in got.items()} == want


def test_scaling_decisions_are_listed_in_order(loaded: Client) -> None:
    rows = run(loaded, "scaling").rows
    assert [(r[2], r[3]) for r in rows] == [(1, 2), (2, 1)]


def test_rollup_per_minute_agrees_with_the_raw_events(loaded: Client, dataset: ds.Dataset) -> None:
    got = by(run(loaded, "traffic_per_minute"), "window_start", "entitlement")
    want = ds.expected_admission(dataset, 60)
    assert {k: (r["admitted"], r["rejected"]) for k, r in got.items()} == want


def test_filters_narrow_to_one_entitlement_and_range(loaded: Client, dataset: ds.Dataset) -> None:
    start = datetime.fromtimestamp(ds.T0 + 600, UTC)
    end = datetime.fromtimestamp(ds.T0 + 1200, UTC).isoformat()
    got = by(
        run(loaded, "admission", start=start, end=end, entitlement="spot", window_s=60),
        "window_start",
        "entitlement",
    )
    want = {
        k: v
        for k, v in ds.expected_admission(dataset, 60).items()
        if k[1] == "spot" and ds.T0 + 600 <= k[0] < ds.T0 + 1200
    }
    assert {k: (r["admitted"], r["rejected"]) for k, r in got.items()} == want
    assert run(loaded, "admission", pool="no-such-pool").rows == []


INJECTIONS = [
    "x' OR 1=1 --",
    "spot' OR '1'='1",
    "'; DROP TABLE requests; --",
    "spot\\' OR 1=1 --",
    "spot} OR 1=1 --",
    "{entitlement:String}",
]


@pytest.mark.parametrize("attempt", INJECTIONS)
def test_sql_injection_through_parameters_is_inert(loaded: Client, attempt: str) -> None:
    before = count(loaded)
    for name in ("admission", "latency", "chargeback", "slo_attainment"):
        assert run(loaded, name, entitlement=attempt).rows == []
        assert run(loaded, name, pool=attempt).rows == []
    tables = {r[0] for r in loaded.query("SHOW TABLES").result_rows}
    assert {"requests", "pool_state", "requests_per_minute"} <= tables
    assert count(loaded) == before


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"start": "yesterday", "end": ds.T0}, "start"),
        ({"start": 1e300, "end": ds.T0}, "start"),
        ({"start": ds.T0, "end": ds.T0 + 1, "window_s": 0}, "window_s"),
        ({"start": ds.T0, "end": ds.T0 + 1, "window_s": "60; DROP TABLE requests"}, "window_s"),
        ({"start": ds.T0, "end": ds.T0 + 1, "table": "requests"}, "unknown parameter"),
        ({"end": ds.T0}, "start"),
    ],
)
def test_bad_parameters_are_refused_before_reaching_clickhouse(
    loaded: Client, values: dict, message: str
) -> None:
    with pytest.raises(QueryError, match=message):
        run_query(loaded, QUERIES["admission"], values)


def test_a_query_takes_from_shared_values_only_those_it_declares() -> None:
    shared = {"start": ds.T0, "end": ds.T0 + 60, "window_s": 60, "table": "requests"}
    assert QUERIES["admission"].declared_values(shared) == {
        "start": ds.T0,
        "end": ds.T0 + 60,
        "window_s": 60,
    }
    assert "window_s" not in QUERIES["chargeback"].declared_values(shared)


def test_results_carry_utc_times_and_no_nan(loaded: Client) -> None:
    """run_query converts by column type: naive datetimes become UTC, NaN and ±inf None."""
    sql = (
        "SELECT toDateTime(number * 60, 'UTC') AS t, if(number = 1, nan, number / 2) AS f, "
        "if(number = 2, NULL, if(number = 0, -inf, toNullable(1.5))) AS g, "
        "toFloat32(number) AS h FROM numbers(3) ORDER BY number"
    )
    rows = run_query(loaded, NamedQuery("probe", "", sql, ()), {}).rows
    assert [r[0] for r in rows] == [datetime.fromtimestamp(60 * i, UTC) for i in range(3)]
    assert [r[1:] for r in rows] == [[0.0, None, 0.0], [None, 1.5, 1.0], [1.0, None, 2.0]]


def test_fragments_are_included_where_a_query_names_them(tmp_path: Path) -> None:
    served = [q for q in QUERIES.values() if "requests_minute" in q.sql]
    assert {q.name for q in served} >= {"admission", "latency", "slo_attainment", "chargeback"}
    for query in served:
        assert "-- include:" not in query.sql and "AS rollup_whole," in query.sql, query.name
    (tmp_path / "broken.sql").write_text("-- a query\nWITH\n    -- include: nowhere\nSELECT 1\n")
    with pytest.raises(QueryError, match=r"broken\.sql: no fragment 'nowhere'"):
        load_queries(tmp_path)
