"""The production Kafka-engine variant (sql/kafka_engine) parses records like the sink does.

chDB has no running Kafka engine, so the queue tables are stood in for by Null
tables of the same shape (`connectors/clickhouse/queues.py`: the record in
`raw`, plus the `_topic`, `_partition` and `_offset` columns the Kafka engine
provides); the views under test are the real ones from sql/kafka_engine/views.sql.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.resources.abc import Traversable

import orjson
import pytest
from clickhouse_connect.driver.client import Client

from connectors.clickhouse.migrations import migrate
from connectors.clickhouse.queries import load_queries, run_query
from connectors.clickhouse.queues import install
from connectors.clickhouse.rows import state_rows
from connectors.clickhouse.sql_files import sql_root
from connectors.clickhouse.store import Target, connect
from tests.analytics.conftest import count
from tests.helpers import analytics_dataset as ds
from tokenpools.schemas import PoolState
from tokenpools.schemas.codec import encode

QUEUES = ("requests_queue", "engine_queue", "state_queue", "limits_queue", "scaling_queue")
BAD = ['{"type": "request", "id": "x"', '{"type": "engine", "pool": "p", "backend": "b"}', "[1, 2]"]


def rows_form(state: PoolState) -> str:
    """A snapshot as workers wrote it before the columns: one object per entitlement."""
    wire = orjson.loads(encode(state))
    wire["entitlements"] = [e.model_dump(mode="json") for e in state.entitlements]
    return orjson.dumps(wire).decode()


def unequal_columns(state: PoolState) -> str:
    """A columnar snapshot one of whose columns is a value short."""
    wire = orjson.loads(encode(state))
    wire["entitlements"]["demand"]["kv"].pop()
    return orjson.dumps(wire).decode()


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, ds.Dataset]]:
    data = ds.build(150)
    client = connect(Target.embedded(tmp_path_factory.mktemp("kafka-engine") / "store"))
    try:
        migrate(client)
        install(client)  # the Null stand-ins the sink's --parse-in-clickhouse mode uses
        feeds = {
            "requests_queue": [encode(r).decode() for r in data.requests] + BAD,
            "engine_queue": [encode(r).decode() for r in data.engine],
            "state_queue": [encode(r).decode() for r in data.state[1:]]
            + [rows_form(data.state[0]), unequal_columns(data.state[1])],
            "limits_queue": [encode(r).decode() for r in data.limits],
            "scaling_queue": [encode(r).decode() for r in data.scaling],
        }
        for queue, raws in feeds.items():
            rows = [[raw, f"topic-{queue}", 0, i] for i, raw in enumerate(raws)]
            client.insert(queue, rows, column_names=["raw", "_topic", "_partition", "_offset"])
        yield client, data
    finally:
        client.close()


def test_the_queue_definitions_are_kafka_engine_tables_with_placeholders() -> None:
    text = (sql_root() / "kafka_engine" / "queues.sql").read_text()
    assert text.count("ENGINE = Kafka") == len(QUEUES)
    assert "${KAFKA_BROKERS}" in text and "PRODUCTION VARIANT" in text


def test_views_store_every_valid_record_once_and_dead_letter_the_rest(fed) -> None:
    client, data = fed
    assert count(client, final=False) == len(data.requests)
    assert count(client, "pool_state", final=False) == sum(len(s.entitlements) for s in data.state)
    assert count(client, "engine_samples", final=False) == len(data.engine)
    assert count(client, "limits", final=False) == len(data.limits)
    predicted = client.query("SELECT epoch, predicted_output_tokens FROM limits").result_rows
    assert sorted(predicted) == sorted((u.epoch, u.predicted_output_tokens) for u in data.limits)
    dead = client.query("SELECT raw FROM kafka_dead_letters ORDER BY kafka_offset").result_rows
    assert sorted(r[0] for r in dead) == sorted([*BAD, unequal_columns(data.state[1])])


def test_a_snapshot_goes_to_the_table_or_whole_to_the_dead_letters_by_its_columns(fed) -> None:
    """Equal columns reach pool_state; unequal ones only the dead letters, whole, with offsets."""
    client, data = fed
    topic = "topic-state_queue"
    unequal_offset = len(data.state)  # fed last, after the other snapshots and the row form
    stored = client.query(
        "SELECT kafka_offset, count() FROM pool_state WHERE kafka_topic = {t:String}"
        " GROUP BY kafka_offset",
        parameters={"t": topic},
    ).result_rows
    expected = {i: len(s.entitlements) for i, s in enumerate(data.state[1:])}
    expected[len(data.state) - 1] = len(data.state[0].entitlements)  # the row form
    assert dict(stored) == expected
    dead = client.query(
        "SELECT kafka_partition, kafka_offset, error, raw FROM kafka_dead_letters"
        " WHERE kafka_topic = {t:String}",
        parameters={"t": topic},
    ).result_rows
    assert dead == [(0, unequal_offset, "invalid pool state", unequal_columns(data.state[1]))]


def test_state_snapshots_become_the_rows_the_sink_writes_in_either_form(fed) -> None:
    """Columns (what workers write) and rows (earlier workers): the sink's rows for both."""
    client, data = fed
    columns = "pool, epoch, replicas, capacity_tps, capacity_kv, capacity_conc, entitlement, tier"
    stored = client.query(
        f"SELECT {columns}, demand_tps, demand_kv, demand_conc, allocation_tps, allocation_kv,"
        " allocation_conc, limit_tps, limit_kv, limit_conc, served_tps, served_kv, served_conc,"
        " debt, priority FROM pool_state"
    ).result_rows
    expected = [row[1:] for s in data.state for row in state_rows(s, 0)]  # all but the time
    assert len(data.state[0].entitlements) > 1
    assert sorted(stored) == sorted(expected)


def test_named_queries_over_kafka_engine_rows_match_the_events(fed) -> None:
    client, data = fed
    queries = load_queries()
    span = ds.SPAN
    admission = run_query(client, queries["admission"], {**span, "window_s": 300}).rows
    assert {(int(r[0].timestamp()), r[2]): (r[4], r[5]) for r in admission} == (
        ds.expected_admission(data, 300)
    )
    chargeback = run_query(client, queries["chargeback"], span).rows
    assert {(int(r[0].timestamp()), r[2]): (r[4], r[5], r[6]) for r in chargeback} == (
        ds.expected_chargeback(data)
    )
    latency = run_query(client, queries["latency"], {**span, "window_s": 300}).rows
    assert {(int(r[0].timestamp()), r[2]): tuple(r[3:8]) for r in latency} == (
        ds.expected_latency(data, 300)
    )
    debt = run_query(client, queries["debt_priority"], {**span, "window_s": 300}).rows
    want = ds.expected_debt(data, 300)
    assert {(int(r[0].timestamp()), r[2]): r[5] for r in debt} == pytest.approx(
        {k: v[0] for k, v in want.items()}
    )


def all_sql(directory: Traversable) -> Iterator[Traversable]:
    for entry in directory.iterdir():
        if entry.is_dir():
            yield from all_sql(entry)
        elif entry.name.endswith(".sql"):
            yield entry


def test_sql_files_hold_no_formatted_values() -> None:
    paths = list(all_sql(sql_root()))
    assert len(paths) > 10
    for path in paths:
        text = path.read_text()
        assert "%s" not in text and "{0}" not in text, path
