"""The batch reader rebuilds windows by replaying the last window of the requests topic."""

from __future__ import annotations

import asyncio
import time

import pytest

from connectors.kafka.admin import ensure_topics
from connectors.kafka.producer import make_producer
from streams.requests_reader import PartitionCountMismatch, RequestReader
from tokenpools.topics import Topics
from tokenpools_cli.local.waiting import wait_for

pytestmark = [pytest.mark.kafka]


async def test_new_partitions_are_replayed_from_the_last_window_and_then_caught_up(
    kafka_bootstrap: str, topics: Topics
) -> None:
    await ensure_topics(kafka_bootstrap, topics, partitions=2)
    producer = make_producer(kafka_bootstrap)
    await producer.start()
    now_ms = int(time.time() * 1000)
    for i in range(5):  # older than the window: never replayed
        await producer.send(
            topics.requests, b"old%d" % i, partition=0, timestamp_ms=now_ms - 60_000
        )
    for i in range(7):
        await producer.send(topics.requests, b"new%d" % i, partition=0, timestamp_ms=now_ms - 5_000)
    await producer.flush()
    seen: list[bytes] = []

    async def handler(records) -> None:
        seen.extend(r.value for r in records)

    reader = RequestReader(kafka_bootstrap, topics.requests, 2, handler, max_records=3)
    await reader.start()
    task = asyncio.create_task(reader.run())
    try:
        reader.follow(frozenset({0}), rewind_s=30)
        assert reader.caught_up() == frozenset(), "nothing is caught up before the replay"
        await wait_for(lambda: len(seen) >= 7, 15, "the replay")
        await wait_for(lambda: reader.caught_up() == {0}, 5, "partition 0 to be caught up")
        assert seen == [b"new%d" % i for i in range(7)]
        await producer.send(topics.requests, b"live", partition=0)
        await producer.send(topics.requests, b"other", partition=1)
        await producer.flush()
        await wait_for(lambda: b"live" in seen, 10, "a live record")
        assert b"other" not in seen, "partition 1 is not ours"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await reader.stop()
        await producer.stop()


async def test_a_requests_topic_with_another_partition_count_is_refused(
    kafka_bootstrap: str, topics: Topics
) -> None:
    await ensure_topics(kafka_bootstrap, topics, partitions=2)

    async def handler(records) -> None:
        return None

    reader = RequestReader(kafka_bootstrap, topics.requests, 6, handler)
    try:
        with pytest.raises(PartitionCountMismatch, match="2 partitions"):
            await reader.start()
    finally:
        await reader.stop()
