"""The columnar sink stores exactly what the row-by-row path stored, and parks the same records.

The row path is written out here as it was before the sink went columnar:
every record decoded into its model (`decode_as`), the refused dead-lettered
with the codec's error, one tuple per row (`request_rows` plus the Kafka
coordinates) and a plain clickhouse-connect columnar insert with the types
clickhouse-connect reads from the table. Its rows go into a copy of the table;
the sink's into the table itself, from the same records on a real broker.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from clickhouse_connect.driver.client import Client

from connectors.clickhouse.migrations import migrate
from connectors.clickhouse.rows import REQUESTS, request_rows
from connectors.clickhouse.sink import ClickHouseSink, SinkSettings
from connectors.clickhouse.store import Target, connect
from connectors.clickhouse.writer import TableWriter
from connectors.kafka.admin import ensure_topics
from connectors.kafka.dead_letter import DLQ_ERROR_HEADER, DLQ_OFFSET_HEADER
from connectors.kafka.topic_reader import read_to_end
from tests.helpers.kafka_io import produce_values
from tests.helpers.sink_runs import drain_requests
from tokenpools.schemas import DecodeError, EngineSample, decode_as
from tokenpools.schemas.bounds import MAX_TIME_S, UINT32_MAX
from tokenpools.schemas.codec import encode
from tokenpools.schemas.events import RequestEvent
from tokenpools.topics import Topics

pytestmark = pytest.mark.kafka
NOW = time.time()  # the table drops rows older than its TTL
# batches smaller than the records, so several inserts and buffer appends are compared
SETTINGS = SinkSettings(batch_rows=7, flush_interval_s=0.2, max_poll_records=5)


def request(i: int, **fields: object) -> dict[str, object]:
    return {
        "type": "request",
        "id": f"r{i}",
        "time": NOW + i,
        "pool": "p",
        "entitlement": f"e{i % 3}",
        "phase": "admitted",
        **fields,
    }


def mixed_values() -> list[bytes | None]:
    """Valid records in every shape, records out of the columns' range, undecodable ones."""
    valid: list[dict[str, object]] = [
        request(0),
        request(1, tier="guaranteed", instance="sc-1", key_hash="hs256:" + "ab" * 32),
        request(2, phase="completed", ttft_ms=12, latency_ms=340.5, completion_tokens=77),
        request(3, phase="rejected", status=429, reason="over limit", tier="spot"),
        request(4, stream=True, queue_delay_ms=0.25, estimate_tokens=UINT32_MAX),
        request(5, time=int(NOW) + 5, prompt_tokens=0, reason=None, key_hash=None),
        request(6, tier=None, phase="queued", v=1),
        request(7, pool="p-2", entitlement="ünïcode ✓", id="id with spaces", instance=""),
        request(8, phase="failed", status=500, reason="engine down", latency_ms=0),
        request(9, phase="cancelled", ttft_ms=None, latency_ms=1e6),
    ]
    values: list[bytes | None] = [orjson.dumps(v) for v in valid]
    values[3:3] = [
        orjson.dumps(request(100, estimate_tokens=UINT32_MAX + 1)),  # out of range: UInt32
        orjson.dumps(request(101, time=MAX_TIME_S + 1)),
        orjson.dumps(request(102, prompt_tokens=-1)),
    ]
    values[8:8] = [
        b"{not json",
        encode(EngineSample(time=1.0, pool="p", backend="x")),  # another topic's record
        b"[]",
        orjson.dumps(request(103, unknown_field=1)),  # fast decoder refuses, the schema takes
        orjson.dumps(request(104, phase="no-such-phase")),
        None,  # a null value on a topic that is not compacted
    ]
    values += [orjson.dumps(request(i, phase="completed", ttft_ms=i)) for i in range(10, 30)]
    return values


def row_path_insert(client: Client, table: str, topic: str, messages: list) -> list[tuple]:
    """The sink's row path, as it was: `(offset, error)` of each record it would park."""
    rows, refused = [], []
    for m in messages:
        try:
            record = decode_as(m.value, RequestEvent)
        except DecodeError as exc:
            refused.append((m.offset, str(exc)))
            continue
        rows += [(*row, topic, m.partition, m.offset) for row in request_rows(record, m.timestamp)]
    columns = [list(column) for column in zip(*rows, strict=True)]
    client.insert(table, columns, column_names=list(REQUESTS.insert_columns), column_oriented=True)
    return refused


def stored(client: Client, table: str) -> list[tuple]:
    return client.query(
        f"SELECT * EXCEPT ingested_at FROM {table} ORDER BY kafka_partition, kafka_offset"
    ).result_rows


async def test_the_columnar_sink_stores_the_row_paths_rows_and_parks_the_same_records(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    await ensure_topics(kafka_bootstrap, topics, partitions=1)
    values = mixed_values()
    await produce_values(kafka_bootstrap, topics.requests, values)
    client = connect(Target.embedded(tmp_path / "store"))
    try:
        migrate(client)
        client.command("CREATE TABLE requests_row_path AS requests")
        messages = await read_to_end(kafka_bootstrap, topics.requests)
        assert len(messages) == len(values)
        refused = row_path_insert(client, "requests_row_path", topics.requests, messages)
        assert len(refused) == 8  # all but the one with an unknown field

        sink = ClickHouseSink(kafka_bootstrap, topics, TableWriter(client), settings=SETTINGS)
        await drain_requests(sink, kafka_bootstrap, topics)

        expected = stored(client, "requests_row_path")
        assert len(expected) == len(values) - len(refused)
        assert stored(client, "requests") == expected
        dlq = await read_to_end(kafka_bootstrap, topics.dlq)
        parked = [
            (int(dict(m.headers)[DLQ_OFFSET_HEADER]), dict(m.headers)[DLQ_ERROR_HEADER].decode())
            for m in dlq
        ]
        assert parked == refused
        assert [m.value for m in dlq] == [values[offset] for offset, _ in refused]
    finally:
        client.close()
