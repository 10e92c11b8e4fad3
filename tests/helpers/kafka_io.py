"""Producing the known event set to real topics, and waiting for the store to catch up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, TopicPartition

from connectors.kafka.consumer import make_consumer
from connectors.kafka.metadata import topic_partitions
from connectors.kafka.producer import make_producer, send_record
from tests.helpers.analytics_dataset import POOL, Dataset
from tokenpools.schemas import EngineSample
from tokenpools.schemas.codec import encode
from tokenpools.topics import Topics, config_key

BAD_RECORDS = 2  # what `produce(..., bad=True)` adds that must end on the DLQ


async def produce(bootstrap: str, topics: Topics, data: Dataset, bad: bool = False) -> None:
    """Every record keyed by pool, like the real producers; `bad` adds two bad ones, a tombstone."""
    producer = make_producer(bootstrap, linger_ms=20)
    await producer.start()
    try:
        for topic, records in data.by_topic(topics).items():
            key = config_key(POOL) if topic == topics.config else POOL
            for record in records:
                await send_record(producer, topic, key, record)
        if bad:
            await producer.send(topics.requests, value=b"{not json", key=POOL.encode())
            wrong = EngineSample(time=1.0, pool=POOL, backend="x")  # an engine sample on requests
            await producer.send(topics.requests, value=encode(wrong), key=POOL.encode())
            await send_record(producer, topics.config, config_key("gone-pool"), None)  # tombstone
        await producer.flush()
    finally:
        await producer.stop()


async def produce_values(
    bootstrap: str, topic: str, values: list[bytes | None], key: bytes = b"p"
) -> None:
    """Raw values (bad ones and tombstones included) to one topic under one key, in order."""
    producer = make_producer(bootstrap, linger_ms=5)
    await producer.start()
    try:
        for value in values:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


@asynccontextmanager
async def group_member(
    bootstrap: str, group: str, topic: str
) -> AsyncIterator[tuple[AIOKafkaConsumer, list[TopicPartition]]]:
    """A consumer of `group` that joins nothing, with the partitions of `topic`."""
    consumer = make_consumer(bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await topic_partitions(consumer, topic) or set()
        yield consumer, [TopicPartition(topic, p) for p in sorted(partitions)]
    finally:
        await consumer.stop()


async def rewind(bootstrap: str, group: str, topic: str) -> None:
    """Commit offset 0 for every partition of `topic` in `group`: the next run replays it all."""
    async with group_member(bootstrap, group, topic) as (consumer, partitions):
        consumer.assign(partitions)
        await consumer.commit(dict.fromkeys(partitions, 0))


async def lag(bootstrap: str, group: str, topic: str) -> int:
    """Records of `topic` that `group` has not committed yet (its consumer lag)."""
    async with group_member(bootstrap, group, topic) as (consumer, partitions):
        ends = await consumer.end_offsets(partitions)
        return sum([ends[tp] - (await consumer.committed(tp) or 0) for tp in partitions])
