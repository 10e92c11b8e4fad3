"""A producer that fails every batch while the broker is fine (an idempotent producer left in a
state no retry leaves, here simply a closed one) is replaced, and the spooled events arrive."""

from __future__ import annotations

import asyncio
import time

import pytest

from connectors.kafka.admin import ensure_topics
from connectors.kafka.producer import make_producer
from connectors.kafka.topic_reader import read_to_end
from connectors.sidecar.reporter import EventReporter, SpoolSettings
from tokenpools.schemas import Phase, RequestEvent, decode_as
from tokenpools.topics import Topics

pytestmark = pytest.mark.kafka


def _event(i: int) -> dict[str, object]:
    return {"id": f"r-{i}", "time": time.time(), "entitlement": "gold", "phase": Phase.QUEUED}


async def test_a_producer_that_keeps_failing_is_replaced_and_nothing_is_lost(
    kafka_bootstrap: str, topics: Topics, tmp_path
) -> None:
    await ensure_topics(kafka_bootstrap, topics, partitions=1)
    producer = make_producer(kafka_bootstrap)
    await producer.start()
    reporter = EventReporter(
        producer,
        topics.requests,
        "p",
        "me",
        spool=SpoolSettings(tmp_path / "spool"),
        producer_factory=lambda: make_producer(kafka_bootstrap),
    )
    reporter.start()
    loop = asyncio.get_running_loop()
    try:
        for i in range(10):
            reporter.report(_event(i))  # type: ignore[arg-type]  # test events, few fields
        deadline = loop.time() + 20
        while reporter.sent < 10 and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await producer.stop()  # from now on every batch fails, the broker being fine
        for i in range(10, 60):
            reporter.report(_event(i))  # type: ignore[arg-type]
            await asyncio.sleep(0.01)
        deadline = loop.time() + 30
        while (reporter.buffered or reporter.spooled) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        renewals = reporter.producer_renewals
    finally:
        await reporter.stop()
    records = await read_to_end(kafka_bootstrap, topics.requests)
    ids = [decode_as(r.value, RequestEvent).id for r in records]
    assert renewals >= 1
    assert sorted(set(ids), key=lambda i: int(i[2:])) == [f"r-{i}" for i in range(60)]
    assert ids == sorted(ids, key=lambda i: int(i[2:]))  # in order, none twice
