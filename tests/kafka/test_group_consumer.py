"""The sink's librdkafka consumer (`GroupConsumer`) on the real broker: it hands out every
record column by column, commits only what it is told, tells its listener of rebalances,
and never blocks the event loop while librdkafka waits."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition

from connectors.kafka.admin import ensure_topics
from connectors.kafka.group_consumer import GroupConsumer, Polled
from tests.helpers.kafka_io import lag
from tokenpools.topics import Topics
from tokenpools_cli.local.waiting import wait_for

pytestmark = pytest.mark.kafka
PARTITIONS = 3


class Listener:
    """What the group told its member, in order."""

    def __init__(self) -> None:
        self.told: list[tuple[str, set[TopicPartition]]] = []

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.told.append(("revoked", set(revoked)))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.told.append(("assigned", set(assigned)))


async def produce(bootstrap: str, topic: str, n: int) -> list[bytes | None]:
    """`n` values over every partition (keys vary), a tombstone among them."""
    from connectors.kafka.producer import make_producer

    values: list[bytes | None] = [f"v{i}".encode() for i in range(n)]
    values[n // 2] = None
    producer = make_producer(bootstrap, linger_ms=5)
    await producer.start()
    try:
        for i, value in enumerate(values):
            await producer.send(topic, value, key=f"k{i}".encode())
        await producer.flush()
    finally:
        await producer.stop()
    return values


async def read(consumer: GroupConsumer, n: int) -> list[Polled]:
    """Polls until `n` records were handed out."""
    polls: list[Polled] = []

    async def got_all() -> bool:
        polls.append(await consumer.poll(200, 1000))
        return sum(map(len, polls)) >= n

    await wait_for(got_all, 60, f"{n} records")
    return polls


async def test_a_member_hands_out_every_record_and_commits_only_what_it_is_told(
    kafka_bootstrap: str, topics: Topics
) -> None:
    await ensure_topics(kafka_bootstrap, topics, partitions=PARTITIONS)
    topic, group = topics.requests, f"{topics.namespace}.g"
    values = await produce(kafka_bootstrap, topic, 300)
    listener = Listener()
    consumer = GroupConsumer(kafka_bootstrap, group, topic, listener)
    await consumer.start()
    try:
        polls = await read(consumer, len(values))
        got = [v for p in polls for v in p.values]
        assert sorted(got, key=repr) == sorted(values, key=repr), "each record once, as sent"
        ends: dict[int, int] = {}
        for poll in polls:
            for partition, offset in zip(poll.partitions, poll.offsets, strict=True):
                ends[partition] = max(ends.get(partition, -1), offset + 1)
        assert consumer.positions() == {TopicPartition(topic, p): e for p, e in ends.items()}
        every = {TopicPartition(topic, p) for p in range(PARTITIONS)}
        assert listener.told == [("assigned", every)] and consumer.assignment() == every
        tombstone = next(poll for poll in polls if None in poll.values)
        assert None not in tombstone.without_tombstones().values
        i = tombstone.values.index(None)
        record = tombstone.record(i)
        assert (record.value, record.offset) == (None, tombstone.offsets[i])
        assert record.key == f"k{values.index(None)}".encode() and record.timestamp > 0

        assert await lag(kafka_bootstrap, group, topic) == len(values), "nothing committed yet"
        await consumer.commit(consumer.positions())
        assert await lag(kafka_bootstrap, group, topic) == 0
        first = TopicPartition(topic, 0)
        assert await consumer.committed(first) == ends[0]
    finally:
        await consumer.stop()


async def test_the_event_loop_runs_while_a_poll_waits(kafka_bootstrap: str, topics: Topics) -> None:
    """librdkafka's blocking wait runs in a thread: on the loop it would stop this ticker."""
    await ensure_topics(kafka_bootstrap, topics, partitions=1)
    consumer = GroupConsumer(kafka_bootstrap, f"{topics.namespace}.g", topics.requests, Listener())
    await consumer.start()
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        await asyncio.sleep(0.05)
        before = ticks
        polled = await consumer.poll(1500, 100)  # an empty topic: it waits the whole timeout
        assert len(polled) == 0
        assert ticks - before >= 10, f"the loop ticked {ticks - before} times in a 1.5 s poll"
    finally:
        ticker.cancel()
        await consumer.stop()


async def test_a_second_member_takes_partitions_and_the_first_is_told(
    kafka_bootstrap: str, topics: Topics
) -> None:
    await ensure_topics(kafka_bootstrap, topics, partitions=PARTITIONS)
    topic, group = topics.requests, f"{topics.namespace}.g"
    values = await produce(kafka_bootstrap, topic, 60)
    first, second = Listener(), Listener()
    a = GroupConsumer(kafka_bootstrap, group, topic, first)
    b = GroupConsumer(kafka_bootstrap, group, topic, second)
    await a.start()
    try:
        await read(a, len(values))
        await b.start()

        async def split() -> bool:
            await asyncio.gather(a.poll(100, 100), b.poll(100, 100))
            return bool(a.assignment()) and bool(b.assignment())

        await wait_for(split, 60, "both members to own partitions")
        assert a.assignment() | b.assignment() == {
            TopicPartition(topic, p) for p in range(PARTITIONS)
        }
        assert not a.assignment() & b.assignment()
        assert ("revoked", {TopicPartition(topic, p) for p in range(PARTITIONS)}) in first.told
        assert set(a.positions()) <= a.assignment(), "no position kept for a revoked partition"
    finally:
        await asyncio.gather(a.stop(), b.stop())
