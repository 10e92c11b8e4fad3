"""One request never stops ClickHouse ingestion; the sink stops on SIGTERM even while retrying.

Issue 11, items 1 and 8, on the real broker and a real chDB store. Before the
fix the record made by `"max_tokens": 1000000000000` (estimate_tokens 1e12)
was accepted by the schema, refused by the UInt32 column, and its batch was
retried every ≤ 30 s for good; nothing was dead-lettered; and `stop()` (what
SIGTERM calls) did not end a retrying sink.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
from pydantic import Field

from connectors.clickhouse.migrations import migrate
from connectors.clickhouse.rows import REQUESTS
from connectors.clickhouse.sink import ClickHouseSink, SinkMetrics, SinkSettings, TopicSink
from connectors.clickhouse.store import Target, connect
from connectors.clickhouse.writer import TableWriter
from connectors.kafka.admin import ensure_topics
from connectors.kafka.dead_letter import DLQ_ERROR_HEADER, DLQ_OFFSET_HEADER
from connectors.kafka.producer import make_producer
from connectors.kafka.topic_reader import read_to_end
from tests.helpers.kafka_io import lag, produce_values
from tests.helpers.sink_runs import drain_requests
from tokenpools.schemas.events import RequestEvent
from tokenpools.topics import Topics
from tokenpools_cli.local.waiting import wait_for

pytestmark = pytest.mark.kafka
FAST = SinkSettings(batch_rows=400, flush_interval_s=0.2, backoff_max_s=30.0)
NOW = time.time()  # the tables drop rows older than their TTL


def request(i: int, **fields: object) -> bytes:
    return orjson.dumps(
        {
            "type": "request",
            "id": f"r{i}",
            "time": NOW + i,
            "pool": "p",
            "entitlement": "e",
            "phase": "admitted",
            "estimate_tokens": 100,
            **fields,
        }
    )


def stored(client, table: str = "requests") -> int:
    return int(client.query(f"SELECT count() FROM {table}").result_rows[0][0])


async def test_the_issues_max_tokens_record_is_dead_lettered_once_and_the_rest_is_stored(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    await ensure_topics(kafka_bootstrap, topics, partitions=1)
    values = [request(i) for i in range(20)]
    values.insert(7, request(99, estimate_tokens=1_000_000_000_000))  # issue 11's request
    await produce_values(kafka_bootstrap, topics.requests, values)
    await produce_values(kafka_bootstrap, topics.requests, [request(i) for i in range(20, 30)])
    target = Target.embedded(tmp_path / "store")
    client = connect(target)
    try:
        migrate(client)
        sink = ClickHouseSink(kafka_bootstrap, topics, TableWriter(client), settings=FAST)
        await drain_requests(sink, kafka_bootstrap, topics)
        assert stored(client) == 30
        dlq = await read_to_end(kafka_bootstrap, topics.dlq)
        assert [m.value for m in dlq] == [values[7]]
        headers = dict(dlq[0].headers)
        assert b"estimate_tokens" in headers[DLQ_ERROR_HEADER]
        assert headers[DLQ_OFFSET_HEADER] == b"7"
    finally:
        client.close()


class LooseRequest(RequestEvent):
    """The request schema as it was before the bounds: any non-negative count."""

    estimate_tokens: int = Field(default=0, ge=0)  # type: ignore[assignment]  # main's looser field


async def test_a_row_clickhouse_refuses_is_isolated_dead_lettered_and_the_batch_inserted(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    """Defence in depth: were a schema ever looser than its table again, one row is parked
    (with ClickHouse's reason) and the other rows of its batch are stored."""
    await ensure_topics(kafka_bootstrap, topics, partitions=1)
    values = [request(i) for i in range(40)]
    values[13] = request(13, estimate_tokens=2**40)
    values[31] = request(31, estimate_tokens=2**33)
    await produce_values(kafka_bootstrap, topics.requests, values)
    client = connect(Target.embedded(tmp_path / "store"))
    producer = make_producer(kafka_bootstrap)
    await producer.start()
    try:
        migrate(client)
        mapping = REQUESTS.__class__(
            REQUESTS.table, LooseRequest, REQUESTS.columns, REQUESTS.rows, REQUESTS.queue
        )
        metrics = SinkMetrics()
        sink = TopicSink(
            kafka_bootstrap,
            f"{topics.namespace}.loose",
            topics.requests,
            mapping,
            TableWriter(client),
            (producer, topics.dlq),
            FAST,
            metrics,
        )
        task = asyncio.create_task(sink.run())

        async def caught_up() -> bool:
            return await lag(kafka_bootstrap, f"{topics.namespace}.loose", topics.requests) == 0

        await wait_for(caught_up, 30, "the sink to commit past the refused rows")
        sink.stop()
        await asyncio.wait_for(task, 30)
        assert stored(client) == 38
        dlq = await read_to_end(kafka_bootstrap, topics.dlq)
        assert sorted(m.value for m in dlq) == sorted([values[13], values[31]])
        assert all(b"ClickHouse" in dict(m.headers)[DLQ_ERROR_HEADER] for m in dlq)
        assert metrics.dead_letters.count == 2
    finally:
        await producer.stop()
        client.close()


@pytest.mark.parametrize("failing", ["insert", "watermark"])
async def test_stop_ends_a_sink_that_is_retrying_a_failing_store_at_once(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path, failing: str
) -> None:
    """SIGTERM calls `stop()` (connectors/clickhouse/service.py); backoff is up to 30 s.

    `insert`: the table goes away while the sink runs (its batch inserts are retried);
    `watermark`: it is gone from the start (the replay watermark read is retried).
    """
    await ensure_topics(kafka_bootstrap, topics, partitions=1)
    target = Target.embedded(tmp_path / "store")
    client, operator = connect(target), connect(target)
    try:
        migrate(client)
        if failing == "watermark":
            operator.command("DETACH TABLE requests")
        sink = ClickHouseSink(kafka_bootstrap, topics, TableWriter(client), settings=FAST)
        task = asyncio.create_task(sink.run())
        if failing == "insert":
            await produce_values(kafka_bootstrap, topics.requests, [request(100)])
            # The sink's count, not the table's: a part is visible before the table's views have
            # run, and a DETACH then would fail that insert after its row landed (and leave it
            # uncommitted, so the lag below would count it).
            inserted = sink.metrics.rows.labels("requests")
            await wait_for(lambda: inserted._value.get() == 1, 30, "the first record stored")
            operator.command("DETACH TABLE requests")
        await produce_values(kafka_bootstrap, topics.requests, [request(i) for i in range(5)])
        await asyncio.sleep(4)  # the backoff reaches 1.6 s and doubles on: 0.2+0.4+0.8+1.6+…
        assert not task.done()
        stopped_at = time.monotonic()
        sink.stop()
        await asyncio.wait_for(task, 10)
        elapsed = time.monotonic() - stopped_at
        print(f"\nsink stopped {elapsed:.2f}s after stop() while retrying ({failing})")
        assert elapsed < 3
        operator.command("ATTACH TABLE requests")
        assert await lag(kafka_bootstrap, sink.group_of(REQUESTS), topics.requests) == 5, (
            "nothing written, so nothing may be committed: a restart re-reads the records"
        )
    finally:
        operator.close()
        client.close()
