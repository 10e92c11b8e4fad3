"""Read a topic from the beginning to its current end: for demos, tests and audits."""

from __future__ import annotations

import time
from collections.abc import Callable

from aiokafka import ConsumerRecord, TopicPartition

from connectors.kafka.consumer import make_consumer
from connectors.kafka.metadata import topic_partitions
from connectors.kafka.settings import KafkaConnection


async def read_to_end(
    kafka: KafkaConnection,
    topic: str,
    timeout_s: float = 30.0,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[ConsumerRecord]:
    """Every record now on `topic`, without joining a consumer group.

    `on_progress(read, total)` after each batch, for a progress bar.
    """
    consumer = make_consumer(kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await topic_partitions(consumer, topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        records: list[ConsumerRecord] = []
        remaining = {tp for tp in tps if end[tp] > 0}
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            batch = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, messages in batch.items():
                records.extend(messages)
                if messages and messages[-1].offset + 1 >= end[tp]:
                    remaining.discard(tp)
            if on_progress is not None:
                on_progress(len(records), sum(end.values()))
        if remaining:
            unread = sorted(t.partition for t in remaining)
            raise TimeoutError(f"{topic}: partitions {unread} not read to end")
        return records
    finally:
        await consumer.stop()
